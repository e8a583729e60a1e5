"""Small file helpers: atomic writes that respect the umask, and the names of write failures.

Run folders (marker, lock, replace-by-swap) live in `benchmarks.run_dir`.

A write that fails because the disk is full reaches the caller as an ``OSError`` whose
``filename`` names the file the user asked for (never a hidden temporary name), so that the
CLI can print one ``error:`` line (`benchmarks.errors.disk_error_message`).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
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


@contextmanager
def naming(path: str | Path, *aliases: str | Path) -> Iterator[None]:
    """Give an ``OSError`` raised inside the block ``path`` as its file name.

    Writers (Pillow, matplotlib, ``numpy.savez``, buffered files) raise a full disk as
    ``OSError(ENOSPC)`` with no file name, or with the temporary name they were given
    (``aliases``); the user asked for ``path``.
    """
    try:
        yield
    except OSError as exc:
        if exc.filename is None or str(exc.filename) in {str(a) for a in aliases}:
            exc.filename = str(path)
        raise


def missing_parents(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist yet, deepest first."""
    return [p for p in path.parents if not p.exists()]


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: the ones a failed write made."""
    for p in folders:
        try:
            p.rmdir()
        except OSError:
            break


def _write_temp(path: Path, writer: Callable[[Path], object]) -> Path:
    """``writer(tmp)`` into a new temporary file beside ``path``, synced; removed on error."""
    tmp = new_temp_file(path)
    try:
        with naming(path, tmp):
            writer(tmp)
            with open(tmp, "rb") as f:  # the data reach the disk before the name does
                os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: str | Path, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp_path)`` then rename onto ``path``: readers never see half a file.

    The file gets the mode a plain ``open(path, "w")`` would give (``0o666 & ~umask``).  On
    an error nothing is left: not the temporary file, not the folders made for ``path``.
    """
    path = Path(path)
    made = missing_parents(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _write_temp(path, writer)
        try:
            with naming(path, tmp):
                os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except BaseException:
        remove_empty(made)
        raise
    return path


class FileBatch:
    """Several files written under temporary names and renamed into place together.

    `write` puts each file beside its target under a hidden temporary name; `commit` renames
    them all in; leaving the ``with`` block without `commit` (an error, Ctrl-C, a full disk)
    removes every temporary file and the folders made for them, so the targets (new or
    replaced) are as they were before.  ``restore`` writes its images this way.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []
        self._made: list[Path] = []

    def write(self, path: str | Path, writer: Callable[[Path], object]) -> Path:
        """Write ``path``'s content now (under a temporary name); it appears at `commit`."""
        path = Path(path)
        made = missing_parents(path)
        self._made = made + [p for p in self._made if p not in made]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._pending.append((_write_temp(path, writer), path))
        return path

    def commit(self) -> list[Path]:
        """Rename every written file onto its target; returns the targets."""
        done = []
        while self._pending:
            tmp, path = self._pending[0]
            with naming(path, tmp):
                os.replace(tmp, path)
            self._pending.pop(0)
            done.append(path)
        self._made = []
        return done

    def discard(self) -> None:
        """Remove the files not renamed in yet and the folders made for them."""
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending = []
        remove_empty(sorted(self._made, key=lambda p: len(p.parts), reverse=True))
        self._made = []

    def __enter__(self) -> FileBatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()


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
