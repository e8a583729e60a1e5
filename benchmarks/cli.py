"""``deblur-bench``: one ``cmd_<name>(args)`` function per subcommand (pyperf's habit)."""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmarks import __version__
from benchmarks.cli_types import (
    device_name,
    finite_nonneg_float,
    finite_positive_float,
    nonneg_int,
    positive_int,
)
from benchmarks.errors import UserError
from benchmarks.presets import PRESETS, add_protocol_args


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="fast",
        help="data size and training budget (default: fast)",
    )
    p.add_argument(
        "--data-dir",
        help="folder of face images, searched recursively, or builtin:faces / builtin:photos "
        "(default: the shipped face set)",
    )
    p.add_argument(
        "--size", type=positive_int, help="square image side in px (overrides the preset)"
    )
    p.add_argument("--gray", action="store_true", default=None, help="grayscale instead of RGB")
    p.add_argument(
        "--max-images",
        type=nonneg_int,
        help="cap on images loaded (overrides the preset; 0 = all)",
    )
    p.add_argument("--seed", type=nonneg_int, default=0, help="split / noise / training seed")
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads")


def _blur_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sigma", type=finite_positive_float, help="Gaussian blur sigma (default 3)")
    p.add_argument("--kernel-size", type=positive_int, help="Gaussian kernel side (default 25)")
    p.add_argument("--psf", help="user PSF (.npy or grayscale image), replaces the Gaussian")


def _parse_checkpoints(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--checkpoint expects METHOD=PATH, got {item!r}")
        out[name] = path
    return out


# --------------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    from benchmarks.runner import RunConfig, run_benchmark

    cfg = RunConfig(
        preset=args.preset,
        data_dir=args.data_dir,
        size=args.size,
        gray=args.gray,
        methods=args.methods,
        sigma=args.sigma,
        kernel_size=args.kernel_size,
        psf=args.psf,
        noise=args.noise,
        seed=args.seed,
        out=args.out,
        overwrite=args.overwrite,
        device=args.device,
        threads=args.threads,
        checkpoints=_parse_checkpoints(args.checkpoint),
        save_images=args.save_images,
        quiet=args.quiet,
        epochs=args.epochs,
        max_minutes=args.max_minutes,
        max_images=args.max_images,
        batch_size=args.batch_size,
        tta=args.tta,
        extra_photos=args.extra_photos,
        augment_photos=args.augment_photos,
        augment_faces=args.augment_faces,
        lr_schedule=args.lr_schedule,
        jpeg_quality=args.jpeg_quality,
        ssim_weight=args.ssim_weight,
    )
    run_benchmark(cfg)
    return 0


# --------------------------------------------------------------------------- restore
def cmd_restore(args: argparse.Namespace) -> int:
    from benchmarks.restore_cmd import restore_files

    restore_files(args)
    return 0


# --------------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    from benchmarks.merge import check_report_target, merge_runs

    if args.out:
        check_report_target(args.out)  # before the work: never replace a user's own file
    md = merge_runs(args.runs, baseline=args.baseline)
    if args.out:
        from benchmarks.io_utils import write_text

        write_text(args.out, md)
    print(md)
    return 0


# --------------------------------------------------------------------------- list
def cmd_list(args: argparse.Namespace) -> int:
    from benchmarks.methods import registry

    print("methods:")
    print(f"  {'name':18s} {'sees PSF':9s} {'learns':7s} description")
    for name, cls in registry().items():
        print(
            f"  {name:18s} {'yes' if cls.sees_psf else 'no':9s} "
            f"{'yes' if cls.learns else 'no':7s} {cls.description}"
        )
    print("\npresets:")
    for p in PRESETS.values():
        print(
            f"  {p.name:6s} {p.size:4d}px  max images {p.max_images or 'all'}, epochs "
            f"{p.epochs}, max minutes {p.max_minutes or '-'} — {p.description}"
        )
    return 0


# --------------------------------------------------------------------------- delegated
def _delegate(module: str):
    def run(args: argparse.Namespace) -> int:
        return int(importlib.import_module(module).main(args) or 0)

    return run


def _add_delegated(sub, name: str, module: str, help_: str) -> None:
    p = sub.add_parser(name, help=help_)
    _common(p)
    try:
        importlib.import_module(module).add_arguments(p)
    except ImportError as exc:  # keep the rest of the CLI usable
        p.set_defaults(func=lambda a, e=exc: _missing(name, e))
        return
    p.set_defaults(func=_delegate(module))


def _missing(name: str, exc: Exception) -> int:
    print(f"error: {name} is unavailable: {exc}", file=sys.stderr)
    return 2


#: What the CLI reports as ``error: ...`` (exit 1): mistakes in flags and the user's own paths.
#: ``TypeError``, ``RuntimeError`` and the rest are bugs and keep their traceback.
USER_ERRORS = (
    UserError,
    ValueError,  # validation in the libraries (bad parameter values) raises ValueError
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deblur-bench",
        description="Deep NMF vs ConvAE vs classical deconvolution on blurred faces.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run methods on held-out people and write tables")
    _common(p)
    _data_args(p)
    _blur_args(p)
    p.add_argument("--methods", nargs="+", help="methods to run (default: all; see `list`)")
    p.add_argument(
        "--noise",
        type=finite_nonneg_float,
        default=0.0,
        help="Gaussian noise std on the [0, 1] scale, added before quantization",
    )
    p.add_argument("--out", help="run folder (default results/<date-time>-<preset>/)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="METHOD=PATH",
        help="load a trained method instead of training it (repeatable)",
    )
    p.add_argument("--save-images", action="store_true", help="write restored test images")
    p.add_argument("--epochs", type=positive_int, help="CNN training epochs (overrides the preset)")
    p.add_argument(
        "--max-minutes", type=finite_positive_float, help="CNN training time cap per method"
    )
    p.add_argument(
        "--batch-size", type=positive_int, help="CNN training batch (overrides the method's)"
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="CNNs restore with the 8-flip/turn self-ensemble (8x inference time; "
        "needs a blur symmetric under flips and quarter turns)",
    )
    p.add_argument(
        "--extra-photos",
        type=nonneg_int,
        default=0,
        metavar="N",
        help="CNNs trained in this run also see N degraded photo crops (as train)",
    )
    p.add_argument(
        "--augment-photos",
        action="store_true",
        help="flip / turn each extra photo crop before it is degraded",
    )
    p.add_argument(
        "--augment-faces",
        action="store_true",
        help="CNNs also train on the exact flips / turns of the training faces",
    )
    p.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        help="CNN learning-rate schedule (default constant)",
    )
    add_protocol_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("restore", help="deblur your own images with one method")
    _common(p)
    _blur_args(p)
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--method", required=True, help="method name (see `list`)")
    p.add_argument("--checkpoint", help="trained checkpoint for learned methods")
    p.add_argument(
        "--tta",
        action="store_true",
        help="CNNs: average the restorations of the 8 flips/turns (8x slower)",
    )
    p.add_argument("--out", required=True, help="folder for the restored PNGs")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--gray", action="store_true", help="process as grayscale")
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--balance", type=finite_positive_float, help="wiener: regularisation balance (> 0)"
    )
    p.add_argument("--iterations", type=positive_int, help="richardson-lucy: iterations (>= 1)")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("report", help="merge finished runs into one table")
    _common(p)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument(
        "--baseline",
        help="method for paired differences (default: identity, when the runs have it)",
    )
    p.add_argument("--out", help="also write the merged markdown table to this file")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("list", help="show methods and presets")
    _common(p)
    p.set_defaults(func=cmd_list)

    _add_delegated(sub, "train", "benchmarks.train_cmd", "train a CNN (convae, convae-unet)")
    _add_delegated(
        sub,
        "factorize",
        "benchmarks.factorize_faces",
        "Deep NMF of a folder of images, one image per column",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
