"""What the ``python -m perf.<tool>`` commands share: flag types, output checks, the error line.

The perf tools are commands people run, held to the standard of ``deblur-bench``:

* a bad flag value is refused while parsing, naming the flag (``prog: error: argument --flag:
  ...``, exit 2), with the types of `benchmarks.cli_types` and the ones below, so the
  refusal comes before any work;
* outputs are checked before anything is computed or created: `output_folder` and
  `output_file` refuse a path that cannot be written (a file where a folder is wanted, a
  folder, link or device where a file is wanted, a folder this process cannot write in);
* an input found wrong once read (a face folder without a readable image, a file that is not
  JSON) ends in one ``prog: error: ...`` line and exit 1 (`refusing`), before any output
  exists; a full disk while writing ends the same way;
* outputs are written atomically (`benchmarks.io_utils`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.cli import USER_ERRORS
from benchmarks.cli_types import (
    device_name,
    finite_nonneg_float,
    finite_positive_float,
    nonneg_int,
    positive_int,
    seed,
)
from benchmarks.errors import UserError, disk_error_message, is_disk_error
from benchmarks.io_utils import new_temp_file
from dnmf._io import check_writable_target

__all__ = [
    "UserError",
    "description",
    "device_name",
    "existing_folder",
    "finite_nonneg_float",
    "finite_positive_float",
    "fraction",
    "nonneg_int",
    "output_file",
    "output_folder",
    "output_json_and_md",
    "positive_int",
    "read_json_object",
    "refusing",
    "seed",
]


def description(doc: str | None) -> str:
    """The first paragraph of a module docstring as ``--help``'s description: whole sentences
    (its first line alone can stop mid-sentence), without reST's double backquotes."""
    return " ".join((doc or "").strip().split("\n\n")[0].replace("``", "").split())


def fraction(text: str) -> float:
    """A number in (0, 1] (a share of entries)."""
    value = finite_positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def existing_folder(text: str) -> Path:
    """A folder that exists (an input)."""
    p = Path(text)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"no folder at {text!r}")
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return p


def output_folder(text: str) -> Path:
    """A folder the results go into: an existing folder, or one that can be created (it is
    made only when the first result is written)."""
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder")
    _check_can_write_in(p)
    return p


def output_file(text: str) -> Path:
    """A file a result is written to (atomically): nothing there yet, or a regular file to
    replace; its folder exists or can be created."""
    p = Path(text)
    _check_can_write_in(p.parent)
    try:
        check_writable_target(p)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return p


def output_json_and_md(text: str) -> Path:
    """A JSON file written with a markdown table beside it (the same name ending in ``.md``):
    both must be writable, and they must be two files."""
    p = output_file(text)
    if p.suffix.lower() == ".md":
        raise argparse.ArgumentTypeError(
            f"{text!r} ends in .md, the name of the table written beside the JSON; give the "
            "JSON file's name (e.g. result.json)"
        )
    output_file(str(p.with_suffix(".md")))
    return p


def _check_can_write_in(folder: Path) -> None:
    """Create and remove a file in ``folder``, or in the nearest folder above it that exists
    (where the missing ones would be made): permissions, a read-only file system or a file in
    the way are found now, not after the run."""
    base = folder
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise argparse.ArgumentTypeError(f"{str(base)!r} is a file, not a folder")
    try:
        new_temp_file(base / ".perf-write-check").unlink()
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            f"cannot write in {str(base)!r}: {exc.strerror or exc}"
        ) from None


def read_json_object(path: Path, flag: str) -> dict[str, Any]:
    """The JSON object in ``path`` (given as ``flag``), or a `UserError` naming both."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot read it ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{flag} {path} is not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{flag} {path} must hold a JSON object, got a {type(data).__name__}")
    return data


@contextmanager
def refusing(parser: argparse.ArgumentParser) -> Iterator[None]:
    """Inside it, a user error (`benchmarks.cli.USER_ERRORS`: a bad input file or folder, a
    value a library refuses) or a full disk ends the command with one ``prog: error: ...``
    line and exit 1, as ``deblur-bench`` does; anything else keeps its traceback."""
    try:
        yield
    except USER_ERRORS as exc:
        _exit(parser, str(exc))
    except OSError as exc:
        if not is_disk_error(exc):
            raise
        _exit(parser, disk_error_message(exc))


def _exit(parser: argparse.ArgumentParser, message: str) -> None:
    print(f"{parser.prog}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)
