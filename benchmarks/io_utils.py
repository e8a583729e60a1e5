"""Small file helpers: atomic writes that respect the umask.

Run folders (marker, lock, replace-by-swap) live in `benchmarks.run_dir`.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any


def new_temp_file(path: str | Path) -> Path:
    """Create an empty, uniquely named hidden file beside ``path`` and return its name.

    It is created with ``os.open(..., 0o666)`` so that the kernel applies the umask (and any
    default ACL) exactly as for a file the user made; ``tempfile.mkstemp`` would make it 0600
    and a shared results folder unreadable to colleagues.  The suffix of ``path`` is kept
    because some writers choose the format from it.
    """
    path = Path(path)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{path.suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


def atomic_write(path: str | Path, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp_path)`` then rename onto ``path``: readers never see half a file.

    The file gets the mode a plain ``open(path, "w")`` would give (``0o666 & ~umask``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_temp_file(path)
    try:
        writer(tmp)
        with open(tmp, "rb") as f:  # the data reach the disk before the name does
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)
