"""The one exception type for mistakes in what the user asked for, and the other failures the
CLI reports in one line: a full (or failing) disk, and a termination signal.

The CLI prints a `UserError` as ``error: <message>`` and exits 1; anything else that is
not about the user's own files or flags (``TypeError``, ``RuntimeError``, ...) is a bug and keeps
its traceback.  It subclasses ``ValueError`` so that library callers that already catch
``ValueError`` for bad arguments keep working.
"""

from __future__ import annotations

import errno
import os
import signal

#: ``OSError`` numbers of a file system that cannot take the write (full, over quota, a file
#: over its size limit, mounted read-only) or failed under it (``EIO``: a failing disk or
#: network file system).  None is a bug of this program, so none gets a traceback.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


class UserError(ValueError):
    """A bad flag value, input file or output folder, with a message that names it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C's ``KeyboardInterrupt`` so that the same clean-up
    runs (staging folder removed, lock released); ``signum`` says which signal it was."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def is_disk_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an ``OSError`` of a full or failing file system (`DISK_ERRNOS`)."""
    return isinstance(exc, OSError) and exc.errno in DISK_ERRNOS


def disk_error_message(exc: OSError, fallback: str | None = None) -> str:
    """One line for a full or failing disk, naming the path: ``cannot write PATH: no space
    left on device``.  ``fallback`` names the output when the error carries no file name."""
    reason = os.strerror(exc.errno) if exc.errno is not None else str(exc)
    reason = reason[:1].lower() + reason[1:]
    where = exc.filename if exc.filename is not None else fallback
    if exc.errno == errno.EIO:
        return f"{reason} on {where or 'a file'} (a failing disk or network file system)"
    return f"cannot write {where or 'the output'}: {reason}"
