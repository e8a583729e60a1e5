"""Files dnmf writes: one atomic ``.npz`` writer that respects the umask."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def save_npz_atomic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically.

    The archive is written to a new file beside ``path`` and renamed over it (``os.replace``)
    only once complete and flushed to disk, so a reader (or a crash) sees the old file or the
    new one, never a part. The file is created with mode ``0o666`` less the process's umask,
    as ``open()`` would make it (``tempfile.mkstemp`` would give 0600, which colleagues sharing
    a results folder cannot read). ``path`` is used as given (no ``.npz`` is appended) and its
    folder must exist. Object arrays are refused (``.npz`` files are read without pickle).

    Parameters
    ----------
    path : str or os.PathLike
        Where the archive goes; an existing file there is replaced.
    arrays : mapping of str to numpy.ndarray
        The archive's entries, by name.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    # O_EXCL: never write into a file that someone else made; mode 0o666 minus the umask.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, allow_pickle=False, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["save_npz_atomic"]
