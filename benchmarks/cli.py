"""``deblur-bench``: one ``cmd_<name>(args)`` function per subcommand (pyperf's habit).

The flags of every subcommand are declared once, in `benchmarks.cli_args`; this module
builds the parser from them, runs the chosen command and turns the user's mistakes into
``error: ...`` lines.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from benchmarks import __version__, cli_args
from benchmarks.errors import UserError
from benchmarks.presets import PRESETS


# --------------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    from benchmarks.runner import RunConfig, run_benchmark

    run_benchmark(RunConfig.from_args(args))
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
    trainable = [n for n, c in registry().items() if c.trainable_cnn]
    print(f"\n`deblur-bench train` trains: {', '.join(trainable)}")
    print("\npresets:")
    for p in PRESETS.values():
        print(
            f"  {p.name:6s} {p.size:4d}px  max images {p.max_images or 'all'}, epochs "
            f"{p.epochs}, max minutes {p.max_minutes or '-'} — {p.description}"
        )
    return 0


# --------------------------------------------------------------------------- train, factorize
def _missing(name: str, exc: Exception) -> int:
    print(f"error: {name} is unavailable: {exc}", file=sys.stderr)
    return 2


def cmd_train(args: argparse.Namespace) -> int:
    try:
        from benchmarks import train_cmd
    except ImportError as exc:  # keep the rest of the CLI usable
        return _missing("train", exc)
    return int(train_cmd.main(args) or 0)


def cmd_factorize(args: argparse.Namespace) -> int:
    try:
        from benchmarks import factorize_faces
    except ImportError as exc:
        return _missing("factorize", exc)
    return int(factorize_faces.main(args) or 0)


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

Flags = Callable[[argparse.ArgumentParser], None]
Command = Callable[[argparse.Namespace], int]


def _subcommands() -> list[tuple[str, str, Flags, Command]]:
    """(name, help, flags, command) of every subcommand, in the order ``--help`` lists them.

    The ``cmd_*`` functions are looked up when the parser is built, so a test can replace one.
    """
    return [
        ("run", "run methods on held-out people and write tables", cli_args.run_flags, cmd_run),
        ("restore", "deblur your own images with one method", cli_args.restore_flags, cmd_restore),
        ("report", "merge finished runs into one table", cli_args.report_flags, cmd_report),
        ("list", "show methods and presets", cli_args.list_flags, cmd_list),
        ("train", "train a CNN (convae, convae-unet)", cli_args.train_flags, cmd_train),
        (
            "factorize",
            "Deep NMF of a folder of images, one image per column",
            cli_args.factorize_flags,
            cmd_factorize,
        ),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deblur-bench",
        description="Deep NMF vs ConvAE vs classical deconvolution on blurred faces.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_, flags, command in _subcommands():
        p = sub.add_parser(name, help=help_)
        cli_args.add_quiet_arg(p)
        flags(p)
        p.set_defaults(func=command)
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
