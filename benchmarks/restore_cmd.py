"""``deblur-bench restore``: deblur a user's own images (any size) with one method."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.blur import make_blur
from benchmarks.faces import IMAGE_SUFFIXES, _read
from benchmarks.figures import save_png
from benchmarks.methods import MethodContext, get_method
from benchmarks.presets import get_preset
from benchmarks.runner import check_tta, resolve_device


def collect_inputs(items: list[str]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of image files."""
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise ValueError(f"no images (.jpg/.jpeg/.png/.pgm) found under {p}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return files


def restore_files(args: argparse.Namespace) -> list[Path]:
    """Restore every input image and write ``<out>/<stem>.png``; returns the written paths."""
    cls = get_method(args.method)
    if cls.learns and not args.checkpoint:
        raise ValueError(
            f"method {args.method!r} is learned: pass --checkpoint PATH "
            f"(made by `deblur-bench run` or `deblur-bench train`)"
        )
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    device = resolve_device(args.device)
    blur = make_blur(kernel_size=args.kernel_size, sigma=args.sigma, psf=args.psf)
    tta = bool(getattr(args, "tta", False))
    check_tta(tta, blur)
    ctx = MethodContext(
        preset=get_preset("fast"),
        device=device,
        quiet=args.quiet,
        blur_meta={**blur.meta(), "quantization": "8-bit"},
        options={"tta": True} if tta else {},
    )
    method = cls(ctx)
    if args.checkpoint:
        method.load(args.checkpoint)
    for attr, value in (("balance", args.balance), ("n_iter", args.iterations)):
        if value is not None:
            if not hasattr(method, attr):
                raise ValueError(f"method {args.method!r} has no parameter {attr!r}")
            setattr(method, attr, value)
    files = collect_inputs(args.inputs)
    out = Path(args.out)
    targets = [out / (f.stem + ".png") for f in files]
    if len(set(targets)) != len(targets):
        raise ValueError("two inputs share a file name; restore them into separate --out folders")
    clash = [t for t in targets if t.exists()]
    if clash and not args.overwrite:
        raise FileExistsError(
            f"{clash[0]} exists ({len(clash)} output files would be replaced); pass --overwrite"
        )
    written = []
    for f, target in tqdm(
        list(zip(files, targets)), desc=f"restore {args.method}", disable=args.quiet
    ):
        im = _read(f)
        if im is None:
            continue
        im = im.convert("L" if args.gray else "RGB")
        a = np.asarray(im, dtype=np.float32) / 255.0
        x = torch.from_numpy(a[None, None] if a.ndim == 2 else a.transpose(2, 0, 1)[None].copy())
        with torch.no_grad():
            x_hat = method.restore(x, blur)
        written.append(save_png(target, x_hat[0]))
    if not args.quiet:
        print(f"wrote {len(written)} restored images to {out}", file=sys.stderr)
    return written
