"""Files dnmf writes: one atomic ``.npz`` writer with a content checksum, and its reader.

Every ``.npz`` dnmf writes (`dnmf.FactorizationResult.save` and the models of
`dnmf.deblur`) goes through `save_npz_atomic`, which stores a SHA-256 of the arrays under
`CHECKSUM_KEY`; `read_npz` reads such a file back and refuses it when the arrays no longer
match (zeroed or flipped bytes inside an array, which a zip reader does not always notice).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

#: The entry holding the SHA-256 (hex) of every other entry's name, dtype, shape and bytes.
CHECKSUM_KEY = "content_sha256"


class DamagedFileError(ValueError):
    """A file whose content does not match the checksum stored when it was written."""


def content_checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 (hex) of the arrays, in name order: each entry's name, dtype, shape and bytes.

    The dtype and shape are hashed with the bytes, so an array reinterpreted (say, read as
    another dtype or reshaped) does not match either. `CHECKSUM_KEY` itself is left out.
    """
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name == CHECKSUM_KEY:
            continue
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.reshape(-1).view(np.uint8).data)  # the bytes in place, no copy
    return h.hexdigest()


def check_writable_target(path: str | os.PathLike) -> None:
    """Refuse to replace anything at ``path`` but a regular file.

    A symbolic link would be replaced by a regular file (its target never written) and a device
    node, FIFO or socket would be replaced outright (``os.replace`` renames over it), so both
    are refused: save to the link's target, or to another name.
    """
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise ValueError(
            f"refusing to write {p}: it is a symbolic link (to {os.readlink(p)}); dnmf does not "
            "replace links: save to the link's target or to another name"
        )
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(
            f"refusing to write {p}: it is {_kind(st.st_mode)}, not a regular file; save to "
            "another name"
        )


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def save_npz_atomic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` and their checksum to the ``.npz`` file ``path`` atomically.

    The archive is written to a new file beside ``path`` and renamed over it (``os.replace``)
    only once complete and flushed to disk, so a reader (or a crash) sees the old file or the
    new one, never a part. The file is created with mode ``0o666`` less the process's umask,
    as ``open()`` would make it (``tempfile.mkstemp`` would give 0600, which colleagues sharing
    a results folder cannot read). ``path`` is used as given (no ``.npz`` is appended) and its
    folder must exist. Object arrays are refused (``.npz`` files are read without pickle).
    A SHA-256 of the arrays is stored under `CHECKSUM_KEY` (`content_checksum`), which
    `read_npz` verifies.

    Parameters
    ----------
    path : str or os.PathLike
        Where the archive goes. An existing regular file there is replaced; a symbolic link, a
        folder, a device node, a FIFO or a socket there is refused with a ``ValueError``
        (`check_writable_target`), before anything is written.
    arrays : mapping of str to numpy.ndarray
        The archive's entries, by name (`CHECKSUM_KEY` is reserved).
    """
    path = Path(path)
    if CHECKSUM_KEY in arrays:
        raise ValueError(f"{CHECKSUM_KEY!r} is reserved for the checksum dnmf adds")
    check_writable_target(path)
    entries = {name: np.asarray(a) for name, a in arrays.items()}
    if any(a.dtype.hasobject for a in entries.values()):
        raise ValueError("object arrays cannot be saved: .npz files are read without pickle")
    entries[CHECKSUM_KEY] = np.asarray(content_checksum(entries))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    # O_EXCL: never write into a file that someone else made; mode 0o666 minus the umask.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, allow_pickle=False, **entries)
            fh.flush()
            os.fsync(fh.fileno())
        check_writable_target(path)  # again: something may have appeared there meanwhile
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_npz(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], bool]:
    """Every array of an ``.npz`` file (read without pickle), its checksum verified.

    Returns the arrays (without `CHECKSUM_KEY`) and whether the file had a checksum. A file
    with a `CHECKSUM_KEY` entry must match it; a file without one (written before dnmf stored
    checksums) is read as it is, and the caller decides whether its format may lack one. A
    damaged file raises `DamagedFileError` (a ``ValueError``) naming ``path``: a stored checksum
    that does not match, or an entry whose zip CRC fails. A single ``.npy`` array is a
    ``ValueError``; other failures (a missing file, a file that is not an ``.npz``) are numpy's
    and zipfile's own exceptions, for the caller to word.
    """
    loaded = np.load(os.fspath(path), allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError("a single .npy array, not an .npz")
    with loaded as z:
        arrays = {}
        for name in z.files:
            try:
                arrays[name] = z[name]
            except zipfile.BadZipFile as exc:
                if "CRC" not in str(exc):
                    raise
                raise DamagedFileError(
                    f"checksum mismatch in {path}: entry {name!r} fails its CRC-32; the file is "
                    "damaged"
                ) from None
    stored = arrays.pop(CHECKSUM_KEY, None)
    if stored is None:
        return arrays, False
    if stored.shape != () or stored.dtype.kind != "U" or str(stored) != content_checksum(arrays):
        raise DamagedFileError(
            f"checksum mismatch in {path}: its arrays no longer match the SHA-256 stored when it "
            "was written; the file is damaged"
        )
    return arrays, True


__all__ = [
    "CHECKSUM_KEY",
    "DamagedFileError",
    "check_writable_target",
    "content_checksum",
    "read_npz",
    "save_npz_atomic",
]
