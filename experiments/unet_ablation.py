"""Short convae-unet variants scored on the VALIDATION people (never the test people).

Each variant trains with the shared loop (:func:`convae.train`) for the same wall-clock
budget on the training split of the runner's ``prepare_splits`` and reports its best
validation loss and the validation PSNR of that epoch's weights::

    python -m experiments.unet_ablation --data-dir ../shared/data/gt_faces \\
        --size 128 --minutes 2.5 --threads 1 --out /tmp/unet_ablation.md

Used to pick the defaults of ``convae/unet_model.py`` and the training batch size
(README, "convae-unet" section).  On a shared CPU the budget is wall-clock, so rows are comparable
only when they ran under a similar load (the table records images/s).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

import convae
from benchmarks.metrics import psnr
from experiments._cnn_setup import add_data_args, face_splits

# (label, model kwargs, batch size)
VARIANTS: list[tuple[str, dict[str, Any], int]] = [
    ("width 32, depth 3, unshuffle 2, batch 16", {"width": 32}, 16),
    ("width 32, batch 64 (the preset's)", {"width": 32}, 64),
    ("width 16 (the default since), batch 16", {"width": 16}, 16),
    (
        "full resolution (unshuffle 1), width 16, depth 4, batch 16",
        {"width": 16, "depth": 4, "shuffle": 1, "middle_blocks": 1},
        16,
    ),
]


def val_psnr(model: torch.nn.Module, blurred: torch.Tensor, sharp: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(b).clamp(0, 1) for b in blurred.split(32)])
    return float(psnr(out, sharp).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(p)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--only", type=int, nargs="*", help="variant indices to run")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    _, _, splits = face_splits(args)
    tr, va = splits.train, splits.val
    ident = val_psnr(torch.nn.Identity(), va.blurred, va.sharp)
    rows = [
        "| variant | params | epochs | images/s | best val loss | val PSNR (dB) |",
        "|---|---|---|---|---|---|",
        f"| identity (blurred input) | 0 | – | – | – | {ident:.2f} |",
    ]
    out = Path(args.out)
    for i, (label, kw, bs) in enumerate(VARIANTS):
        if args.only and i not in args.only:
            continue
        torch.manual_seed(0)
        model = convae.build_model("convae-unet", in_channels=int(tr.blurred.shape[1]), **kw)
        t0 = time.perf_counter()
        r = convae.train(
            model,
            tr,
            va,
            convae.TrainConfig(epochs=1000, batch_size=bs, max_minutes=args.minutes),
            progress=False,
        )
        rows.append(
            f"| {label} | {r.parameters:,} | {r.epochs_completed} | "
            f"{r.images_per_s:.1f} | {r.best_val_loss:.5f} | "
            f"{val_psnr(model, va.blurred, va.sharp):.2f} |"
        )
        print(rows[-1], f"({time.perf_counter() - t0:.0f} s)", flush=True)
        out.write_text("\n".join(rows) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
