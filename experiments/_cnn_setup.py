"""What the CNN experiments share: their data flags and the benchmark's face splits.

Every experiment trains on the training people of the runner's own ``prepare_splits`` (seed 0,
the default Gaussian blur) and chooses on the validation people; the test people are never
loaded into a decision.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

import convae
from benchmarks.blur import BlurOperator, make_blur
from benchmarks.io_utils import write_json
from benchmarks.pipeline import Splits, prepare_splits
from benchmarks.presets import get_preset


def add_data_args(p: argparse.ArgumentParser, *, size: int = 128, max_images: int = 750) -> None:
    """``--data-dir``, ``--size``, ``--max-images`` and ``--threads``, as every experiment takes."""
    p.add_argument("--data-dir", help="face folder (default: the shipped face set)")
    p.add_argument("--size", type=int, default=size)
    p.add_argument("--max-images", type=int, default=max_images)
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy CPU)")


def face_splits(args: argparse.Namespace) -> tuple[BlurOperator, dict[str, Any], Splits]:
    """The blur, its metadata (as ``deblur-bench train`` records it, so ``--checkpoint``
    loads the result) and the seed-0 splits at ``args.size``; sets ``args.threads``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    blur = make_blur()
    meta = {**blur.meta(), "noise": 0.0, "quantization": "8-bit"}
    preset = get_preset("fast").with_overrides(size=args.size, max_images=args.max_images)
    return blur, meta, prepare_splits(preset, args.data_dir, seed=0, blur=blur)


def write_result(path: Path, r: convae.TrainResult, **facts: Any) -> None:
    """``facts`` (the experiment's settings) and what the training returned, as JSON."""
    record = {
        **facts,
        "best_val_loss": r.best_val_loss,
        "best_epoch": r.best_epoch,
        "epochs": r.epochs_completed,
        "images_per_s": r.images_per_s,
        "seconds": r.seconds,
        "config": r.config,
        "history": r.history,
    }
    write_json(path, record)
    print(
        f"best val loss {r.best_val_loss:.5f} at epoch {r.best_epoch} "
        f"({r.epochs_completed} epochs, {r.images_per_s:.1f} images/s)"
    )
