"""Continue a CNN from a checkpoint's weights with flip/transpose augmentation.

``deblur-bench train`` feeds the loop the training pairs as they are.  With 525 training
faces (35 people) convae-unet overfits after about 8 minutes on this CPU (validation loss
rises while training loss falls).  The degradation is an isotropic Gaussian with a symmetric
kernel, reflect boundaries and per-pixel rounding, so it commutes with the 8 flips and
transposes of a square image: a transformed pair is an exact training pair.  This script
draws one of them per image and step (a ``Dataset`` passed to the shared
:func:`convae.train`; nothing of the loop is copied) and starts from the weights of a
checkpoint (e.g. the run's ``best.pt``) with a fresh Adam::

    python -m experiments.unet_finetune --data-dir ../shared/data/gt_faces \\
        --size 128 --init runs/unet/best.pt --minutes 15 --lr 5e-4 --batch-size 16 \\
        --threads 1 --out runs/unet-aug

The folder gets ``best.pt``/``last.pt``/``training_curve.png`` like ``deblur-bench train``
(same blur meta, so ``deblur-bench run --checkpoint convae-unet=.../best.pt`` loads it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import Dataset

import convae
from convae.tta import dihedral
from experiments._cnn_setup import add_data_args, face_splits, write_result


class DihedralPairs(Dataset):
    """(blurred, sharp) pairs, each returned under one random flip/transpose (same for both)."""

    def __init__(self, blurred: torch.Tensor, sharp: torch.Tensor) -> None:
        if blurred.shape != sharp.shape or blurred.shape[-1] != blurred.shape[-2]:
            raise ValueError("pairs must be square (N, C, S, S) tensors of one shape")
        self.blurred, self.sharp = blurred, sharp

    def __len__(self) -> int:
        return len(self.blurred)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = int(torch.randint(8, (1,)))
        return (
            dihedral(self.blurred[i], k).contiguous(),
            dihedral(self.sharp[i], k).contiguous(),
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(p)
    p.add_argument("--init", required=True, help="checkpoint whose weights to start from")
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    _, meta, splits = face_splits(args)
    model = convae.load_model(args.init, expect_meta=meta).train()
    init_val = convae.evaluate(model, splits.val, batch_size=32)["loss"]
    out = Path(args.out)
    cfg = convae.TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_minutes=args.minutes, seed=0
    )
    r = convae.train(
        model,
        DihedralPairs(splits.train.blurred, splits.train.sharp),
        splits.val,
        cfg,
        checkpoint_dir=out,
        meta=meta,
    )
    convae.plot_history(
        r.history,
        out / "training_curve.png",
        title=f"{convae.architecture_of(model)[0]}: flip/transpose fine-tune",
    )
    print(f"init val loss {init_val:.5f}")
    write_result(out / "finetune.json", r, init=args.init, init_val_loss=init_val)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
