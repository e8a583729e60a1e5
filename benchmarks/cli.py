"""``deblur-bench``: one ``cmd_<name>(args)`` function per subcommand (pyperf's habit).

The flags of every subcommand are declared once, in `benchmarks.cli_args`; this module
builds the parser from them, runs the chosen command and turns the user's mistakes, a full
disk and a termination signal into one line each on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from benchmarks import __version__, cli_args
from benchmarks.errors import Terminated, UserError, disk_error_message, is_disk_error
from benchmarks.presets import PRESETS


# --------------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    from benchmarks.runner import RunConfig, run_benchmark

    run_benchmark(RunConfig.from_args(args))
    return 0


# --------------------------------------------------------------------------- sweep
def cmd_sweep(args: argparse.Namespace) -> int:
    from benchmarks.sweep_cmd import run_sweep

    run_sweep(args)
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
        (
            "sweep",
            "score each method over a grid of degradations (blurs and noise levels)",
            cli_args.sweep_flags,
            cmd_sweep,
        ),
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


#: Signals handled like Ctrl-C: the command's clean-up runs, then it exits with 128 + signum.
TERMINATING = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While the command runs, SIGTERM and SIGHUP raise `Terminated` (a ``KeyboardInterrupt``)
    as SIGINT does, so that the same clean-up runs: the staging folder and the lock of a run
    are removed instead of being left for the next command.  A second such signal during the
    clean-up is ignored; SIGKILL still stops everything.  Only the main thread can do this."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, frame: object) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in TERMINATING}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _terminate_as_interrupt():
            return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if not is_disk_error(exc):
            raise
        print(f"error: {disk_error_message(exc, getattr(args, 'out', None))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        name = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        print(f"interrupted{name}", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
