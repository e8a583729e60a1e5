"""``deblur-bench restore``: deblur a user's own images (any size) with one method.

Every input is read and checked before the first file is written, so a bad input (unreadable,
too small for the kernel) stops the command with nothing half done; outputs never replace an
input, never go into (or under) an input folder, and replace existing outputs only with
``--overwrite``.  The restored images are written under temporary names and renamed into place
together at the end: a command that fails (a full disk) or is interrupted leaves ``--out`` as
it was, with no empty folder made for it.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from benchmarks.degradation import degradation_from_flags
from benchmarks.errors import UserError
from benchmarks.figures import write_png
from benchmarks.images import image_files, read_or_warn, read_picture, suffixes_text
from benchmarks.io_utils import FileBatch
from benchmarks.methods import MethodContext, check_options, get_method
from benchmarks.presets import get_preset
from benchmarks.run_dir import mixing_refusal
from benchmarks.run_info import resolve_device


def collect_inputs(items: list[str]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of image files."""
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = image_files(p)
            if not found:
                raise UserError(f"no images ({suffixes_text()}) found under {p}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return files


def check_out_folder(out: Path, items: list[str]) -> None:
    """Refuse an ``--out`` that is an input folder or inside one: a later command reading that
    folder (``run --data-dir``, ``restore``) would take the restorations for images (the rule
    of `benchmarks.run_dir.refusal` for ``run``'s data folder)."""
    target = out.expanduser().resolve()
    for item in items:
        if Path(item).is_dir():
            why = mixing_refusal(target, item, f"input folder {item}", "input folder")
            if why:
                raise UserError(f"--out {out} refused: {why}")


def output_paths(files: list[Path], out: Path, overwrite: bool) -> list[Path]:
    """``<out>/<stem>.png`` per input; refuses clashes, inputs as outputs and, without
    ``overwrite``, existing files."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a folder")
    targets = [out / (f.stem + ".png") for f in files]
    if len(set(targets)) != len(targets):
        raise UserError("two inputs share a file name; restore them into separate --out folders")
    inputs = {f.resolve() for f in files}
    own = [t for t in targets if t.resolve() in inputs]
    if own:
        raise UserError(
            f"--out {out} would replace the input {own[0]} with its restoration; "
            f"choose another --out"
        )
    clash = [t for t in targets if t.exists()]
    if clash and not overwrite:
        raise FileExistsError(
            f"{clash[0]} exists ({len(clash)} output files would be replaced); pass --overwrite"
        )
    return targets


def check_inputs(files: list[Path], *, gray: bool, blur, sees_psf: bool) -> list[int]:
    """Read every input once; returns the indices of the readable ones (others warned about).

    Raises `UserError` when none is readable or an image is too small for the kernel.
    """
    ok = []
    for i, f in enumerate(files):
        pic = read_or_warn(f, gray=gray)
        if pic is None:
            continue
        if sees_psf:
            w, h = pic.size
            blur.check_image_size(h, w, what=f"image {f}")
        ok.append(i)
    if not ok:
        raise UserError(
            f"none of the {len(files)} input image(s) could be read "
            f"({', '.join(map(str, files[:3]))}{' ...' if len(files) > 3 else ''}); "
            f"nothing was restored"
        )
    return ok


def restore_files(args: argparse.Namespace) -> list[Path]:
    """Restore every input image and write ``<out>/<stem>.png``; returns the written paths."""
    cls = get_method(args.method)
    if cls.learns and not args.checkpoint:
        raise UserError(
            f"method {args.method!r} is learned: pass --checkpoint PATH "
            f"(made by `deblur-bench run` or `deblur-bench train`)"
        )
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    device = resolve_device(args.device)
    # The user's images: their kernel from the flags, their noise level not known.
    degradation = degradation_from_flags(args)
    blur = degradation.blur
    options = {"tta": True} if getattr(args, "tta", False) else {}
    if not cls.trainable_cnn:  # a CNN's --tta is checked against its training kernel at load;
        check_options(options, blur)  # the images' kernel only describes them to a blind model
    files = collect_inputs(args.inputs)
    out = Path(args.out)
    targets = output_paths(files, out, args.overwrite)
    check_out_folder(out, args.inputs)
    ctx = MethodContext(
        preset=get_preset("fast"),
        device=device,
        quiet=args.quiet,
        blur_meta=degradation.meta(),  # a trained model warns when it differs
        options=options,
    )
    method = cls(ctx)
    if args.checkpoint:
        method.load(args.checkpoint)
    for attr, value in (("balance", args.balance), ("n_iter", args.iterations)):
        if value is not None:
            if not hasattr(method, attr):
                raise UserError(f"method {args.method!r} has no parameter {attr!r}")
            setattr(method, attr, value)
    readable = check_inputs(files, gray=args.gray, blur=blur, sees_psf=cls.sees_psf)
    with FileBatch() as batch:  # all the outputs appear at the end, or none
        for i in tqdm(readable, desc=f"restore {args.method}", disable=args.quiet):
            x = torch.from_numpy(read_picture(files[i], gray=args.gray).array()[None])
            with torch.no_grad():
                x_hat = method.restore(x, blur)
            batch.write(targets[i], functools.partial(write_png, img=x_hat[0]))
        written = batch.commit()
    if not args.quiet:
        skipped = len(files) - len(readable)
        note = f" ({skipped} unreadable input(s) skipped, named above)" if skipped else ""
        print(f"wrote {len(written)} restored images to {out}{note}", file=sys.stderr)
    return written
