"""convae-unet at width 32, 128 px, trained for 13 minutes: the ``docs/results/unet128-w32`` run.

The shared loop (:func:`convae.train`) on the seed-0 training people with the benchmark's
degradation, the best epoch chosen on the validation people; the model is seeded without
touching the global RNG, as ``deblur-bench`` builds it::

    python -m experiments.unet128_w32 --data-dir ../shared/data/gt_faces --threads 1 \\
        --out runs/unet32

``best.pt`` carries the benchmark's blur metadata, so ``deblur-bench run --checkpoint
convae-unet=runs/unet32/best.pt`` scores it next to the other methods (how the kept
``docs/results/unet128-w32`` table was made).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import convae
from experiments._cnn_setup import add_data_args, face_splits


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(p)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--minutes", type=float, default=13.0)
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", required=True, help="checkpoint folder")
    args = p.parse_args(argv)
    _, meta, splits = face_splits(args)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = convae.build_model("convae-unet", in_channels=3, width=args.width)
    cfg = convae.TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, max_minutes=args.minutes, seed=0
    )
    out = Path(args.out)
    r = convae.train(model, splits.train, splits.val, cfg, checkpoint_dir=out, meta=meta)
    convae.plot_history(
        r.history, out / "training_curve.png", title=f"convae-unet width {args.width}"
    )
    print("best", r.best_val_loss, r.best_epoch, r.epochs_completed, r.images_per_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
