"""Damage a checkpoint the way a disk or a copy does: bytes changed inside one record of the
zip archive ``torch.save`` writes, the archive's own structure left intact (so the file still
opens as a zip and ``torch.load`` still reads it)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path


def records(path: Path) -> dict[str, tuple[int, int]]:
    """``{name: (offset of the first data byte in the file, size)}`` of every archive member.

    ``torch.save`` stores members uncompressed, so the data bytes are the member's bytes.
    """
    out = {}
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_STORED, info
            f.seek(info.header_offset)
            head = f.read(30)  # the local file header: name and extra-field lengths at 26, 28
            assert head[:4] == b"PK\x03\x04"
            n_name, n_extra = struct.unpack("<HH", head[26:30])
            out[info.filename] = (info.header_offset + 30 + n_name + n_extra, info.file_size)
    return out


def tensor_records(path: Path) -> dict[str, tuple[int, int]]:
    """The members holding tensor storages (``<archive>/data/<key>``), largest first."""
    recs = {k: v for k, v in records(path).items() if "/data/" in k}
    return dict(sorted(recs.items(), key=lambda kv: -kv[1][1]))


def zero_bytes(path: Path, n: int, member: str | None = None) -> str:
    """Zero ``n`` bytes in the middle of ``member`` (default: the largest tensor storage),
    checking that some of them were not zero; returns the member's name."""
    recs = tensor_records(path)
    member = member or next(iter(recs))
    offset, size = recs[member]
    assert size >= n, (member, size, n)
    start = offset + (size - n) // 2
    with open(path, "r+b") as f:
        f.seek(start)
        assert f.read(n).count(0) < n, "the bytes were zero already: no damage"
        f.seek(start)
        f.write(bytes(n))
    return member


def flip_byte(path: Path, position: int) -> None:
    """Invert every bit of the byte at ``position`` of the file."""
    with open(path, "r+b") as f:
        f.seek(position)
        b = f.read(1)
        f.seek(position)
        f.write(bytes([b[0] ^ 0xFF]))
