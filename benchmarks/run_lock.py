"""The lock of a run folder: ``fcntl.flock`` on ``.<name>.lock`` beside it.

A second command writing into the same ``--out`` at the same time is refused with a message
that names the holder's pid. `benchmarks.run_dir.RunFolder` takes it first.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from benchmarks.errors import UserError


class FolderLock:
    """``fcntl.flock`` on ``.<name>.lock`` beside the run folder, refused when held."""

    def __init__(self, target: Path, shown: str) -> None:
        self.path = target.parent / f".{target.name}.lock"
        self.shown = shown
        self.fd: int | None = None

    def acquire(self) -> None:
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise UserError(
                    f"--out {self.shown}: another deblur-bench command"
                    f"{f' (pid {holder})' if holder else ''} is writing this run folder; "
                    f"wait for it to finish or choose another --out"
                ) from None
            except BaseException:  # a signal before the flock: not ours, never unlinked
                os.close(fd)
                raise
            if self._take(fd):
                return
            os.close(fd)
        raise UserError(f"--out {self.shown}: could not lock {self.path}")

    def _take(self, fd: int) -> bool:
        """Record this pid in the locked file; False if the file was removed meanwhile.

        A write that fails (a full disk) or a signal here gives the lock up again and removes
        the file, so that no ``.<name>.lock`` is left behind.
        """
        try:  # the holder before us may have removed the file: lock the current one
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False
        if not same:
            return False
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException as exc:
            self.release()
            if isinstance(exc, OSError) and exc.filename is None:
                exc.filename = str(self.path)
            raise
        return True

    def release(self) -> None:
        if self.fd is None:
            return
        try:  # unlink while still holding it, so that no one locks a file about to vanish
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = None


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
