"""Does convae-unet gain from more (non-face) training data?  A check of what limits the U-Net.

The 15-minute convae-unet runs overfit the 525 training faces (35 people) after 5–7 minutes.
If data is the limit, adding blurred/sharp pairs that are *not* faces should help on the
validation faces.  Deblurring is local, so generic photographs carry the same edge statistics.
This script adds random 128 px crops of scikit-image's bundled photographs (astronaut, coffee,
chelsea, rocket, ...; grayscale ones repeated over RGB; at full and half scale), degraded by
exactly the benchmark's operator (σ = 3 Gaussian, reflect, 8-bit), to the training faces, and
trains a fresh model with the shared :func:`convae.train` loop.  Validation and test people
are untouched; the choice between runs is made on the validation faces only::

    python -m experiments.unet_extra_data --data-dir ../shared/data/gt_faces \\
        --extra 1050 --minutes 15 --threads 1 --out runs/unet-extra

``best.pt`` carries the benchmark's blur metadata, so ``deblur-bench run --checkpoint
convae-unet=runs/unet-extra/best.pt`` scores it next to the other methods. The same data is
built into ``deblur-bench train --extra-photos N`` (``benchmarks/extra_pairs.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, TensorDataset

import convae
from benchmarks.extra_pairs import photo_pairs
from experiments._cnn_setup import add_data_args, face_splits, write_result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(p)
    p.add_argument(
        "--extra", type=int, default=1050, help="photograph crops added to the training set"
    )
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    blur, meta, splits = face_splits(args)
    parts = [TensorDataset(splits.train.blurred, splits.train.sharp)]
    if args.extra > 0:  # --extra 0 is the faces-only control, trained the same way
        parts.append(TensorDataset(*photo_pairs(args.extra, args.size, blur, seed=1)))
    train = ConcatDataset(parts)
    torch.manual_seed(0)
    model = convae.build_model("convae-unet", in_channels=3, width=args.width)
    cfg = convae.TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, max_minutes=args.minutes, seed=0
    )
    out = Path(args.out)
    r = convae.train(model, train, splits.val, cfg, checkpoint_dir=out, meta=meta)
    convae.plot_history(
        r.history,
        out / "training_curve.png",
        title=f"convae-unet width {args.width}: faces + {args.extra} photo crops",
    )
    write_result(
        out / "extra_data.json",
        r,
        extra=args.extra,
        width=args.width,
        train_faces=len(splits.train.sharp),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
