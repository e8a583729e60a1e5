"""The JPEG round trip of the source's protocol: images saved as JPEG and read back.

The source repository wrote both the sharp and the blurred faces to disk through PIL at its
default quality (75) before training, so its network learned from, and was scored on, JPEG
copies. ``--jpeg-quality Q`` reproduces that in any preset.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def check_jpeg_quality(quality: int | None) -> int | None:
    """``None`` (no round trip) or an int quality in 1..95, PIL's useful range."""
    if quality is None:
        return None
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
        raise ValueError(f"--jpeg-quality must be an integer from 1 to 95, got {quality!r}")
    return quality


def jpeg_round_trip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode every image of ``x`` (N, C, H, W) in [0, 1] as JPEG at ``quality`` and decode it.

    Pixels are rounded to 8 bits first (as PIL stores them); gray (C = 1) and RGB (C = 3) are
    encoded as PIL's ``L`` and ``RGB`` modes with PIL's default chroma subsampling.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, 1 or 3, H, W) images, got {tuple(x.shape)}")
    u8 = (x.detach().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8)
    out = np.empty(tuple(u8.shape), dtype=np.float32)
    for i, img in enumerate(u8.numpy()):
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as im:
            back = np.asarray(im, dtype=np.float32) / 255.0
        out[i] = back[None] if back.ndim == 2 else back.transpose(2, 0, 1)
    return torch.from_numpy(out).to(x.device)
