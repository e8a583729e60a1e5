"""Full-depth decoding of the 16-bit colour PNGs that Pillow reads at 8 bits.

Pillow opens a PNG with 16 bits per sample and colour (RGB, RGBA) or gray + alpha as an
8-bit image (it keeps the high byte).  `read_png16` decodes those files itself: zlib
inflate, the five PNG row filters and Adam7 interlacing, returning the samples as ``uint16``.
Only this narrow case is handled here; every other image goes through Pillow.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type -> samples per pixel, for the colour types handled here
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
#: Adam7 passes: (x0, y0, dx, dy)
_ADAM7: tuple[tuple[int, int, int, int], ...] = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


class PNGError(ValueError):
    """A PNG that cannot be decoded (truncated, corrupt or of a kind not handled here)."""


def png_header(path: str | Path) -> tuple[int, int, int, int, int] | None:
    """``(width, height, bit depth, colour type, interlace)`` of a PNG, or None if not a PNG."""
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
        return None
    w, h, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return w, h, depth, ctype, interlace


def needs_png16(path: str | Path) -> bool:
    """True for a 16-bit PNG with more than one sample per pixel (Pillow would keep 8 bits)."""
    try:
        head = png_header(path)
    except OSError:
        return False
    return head is not None and head[2] == 16 and head[3] in (2, 4, 6)


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos + 8 <= len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + n]
        if len(body) < n:
            raise PNGError(f"chunk {kind!r} is truncated")
        out.append((kind, body))
        pos += 12 + n
        if kind == b"IEND":
            break
    return out


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def unfilter(raw: np.ndarray, height: int, width: int, bpp: int) -> np.ndarray:
    """Undo the PNG row filters of ``height`` rows of ``width`` pixels of ``bpp`` bytes.

    ``raw`` holds each row's filter-type byte followed by its bytes.  A pixel depends on its
    left, upper and upper-left neighbours only, so the pixels of one anti-diagonal are
    independent: the loop runs over ``height + width - 1`` diagonals, vectorised along each.
    """
    stride = width * bpp
    rows = raw[: height * (stride + 1)].reshape(height, stride + 1)
    types = rows[:, 0].astype(np.int32)
    if (types > 4).any():
        raise PNGError(f"unknown PNG row filter {int(types.max())}")
    f = rows[:, 1:].reshape(height, width, bpp).astype(np.int32)
    r = np.zeros((height + 1, width + 1, bpp), dtype=np.int32)  # zero row/column in front
    for d in range(height + width - 1):
        ys = np.arange(max(0, d - width + 1), min(height, d + 1))
        xs = d - ys
        a, b, c = r[ys + 1, xs], r[ys, xs + 1], r[ys, xs]
        t = types[ys][:, None]
        pred = np.select(
            [t == 1, t == 2, t == 3, t == 4], [a, b, (a + b) >> 1, _paeth(a, b, c)], default=0
        )
        r[ys + 1, xs + 1] = (f[ys, xs] + pred) & 0xFF
    return r[1:, 1:].astype(np.uint8).reshape(height, stride)


def read_png16(path: str | Path) -> np.ndarray:
    """The samples of a 16-bit PNG as ``uint16`` ``(H, W, C)`` (C = 1, 2, 3 or 4)."""
    data = Path(path).read_bytes()
    if data[:8] != SIGNATURE:
        raise PNGError("not a PNG file")
    chunks = _chunks(data)
    if not chunks or chunks[0][0] != b"IHDR":
        raise PNGError("no IHDR chunk")
    w, h, depth, ctype, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1][:13])
    if depth != 16 or ctype not in CHANNELS or comp != 0 or filt != 0 or interlace > 1:
        raise PNGError(f"not a 16-bit gray/colour PNG (depth {depth}, colour type {ctype})")
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT")), "u1")
    except zlib.error as exc:
        raise PNGError(f"corrupt image data ({exc})") from None
    ch = CHANNELS[ctype]
    bpp = 2 * ch
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    out = np.zeros((h, w, ch), dtype=np.uint16)
    pos = 0
    for x0, y0, dx, dy in passes:
        pw, ph = -(-(w - x0) // dx), -(-(h - y0) // dy)
        if pw <= 0 or ph <= 0:
            continue
        n = ph * (pw * bpp + 1)
        if pos + n > raw.size:
            raise PNGError("image data are truncated")
        rows = unfilter(raw[pos : pos + n], ph, pw, bpp)
        out[y0::dy, x0::dx] = rows.view(">u2").reshape(ph, pw, ch)
        pos += n
    return out
