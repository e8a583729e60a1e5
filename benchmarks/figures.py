"""Figures of a run: example restorations (rows: sharp, blurred, each method), atom grids."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.io_utils import atomic_write  # noqa: E402


def to_hwc(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor in [0, 1] -> (H, W[, 3]) array for imshow/imsave."""
    a = img.detach().cpu().float().clamp(0, 1).numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def examples_figure(
    path: Path, rows: dict[str, torch.Tensor], psnrs: dict[str, list[float]]
) -> Path:
    """Grid of images: one row per entry of ``rows`` (each (K, C, H, W)), K columns."""
    names = list(rows)
    k = min(int(v.shape[0]) for v in rows.values())
    fig, axes = plt.subplots(
        len(names), k, figsize=(1.6 * k + 1.2, 1.6 * len(names)), squeeze=False
    )
    for i, name in enumerate(names):
        for j in range(k):
            ax = axes[i][j]
            img = to_hwc(rows[name][j])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if name in psnrs:
                ax.set_title(f"{psnrs[name][j]:.2f} dB", fontsize=7)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()

    def write(p: Path) -> None:
        fig.savefig(p, dpi=110, format="png")

    atomic_write(path, write)
    plt.close(fig)
    return path


def write_png(path: Path, img: torch.Tensor) -> None:
    """Write one (C, H, W) image in [0, 1] as an 8-bit PNG at ``path`` itself (the writer of
    `save_png` and of ``restore``'s batch of files)."""
    from PIL import Image

    a = np.round(to_hwc(img) * 255.0).astype(np.uint8)
    Image.fromarray(a).save(path, format="PNG")


def save_png(path: Path, img: torch.Tensor) -> Path:
    """Write one (C, H, W) image in [0, 1] as an 8-bit PNG (atomically; a full disk raises
    an ``OSError`` that names ``path``)."""
    return atomic_write(path, lambda p: write_png(p, img))


def _scaled(a: np.ndarray, normalise: str) -> np.ndarray:
    if normalise == "max":  # nonnegative atoms: zero stays black
        hi = float(a.max())
        return a / hi if hi > 0 else a
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def tile_atoms(atoms: np.ndarray, *, normalise: str = "minmax", pad: int = 1) -> np.ndarray:
    """Images ``atoms`` ``(n, H, W)`` or ``(n, H, W, C)`` as one RGB grid ``(rows, cols, 3)``,
    about square, with white ``pad``-pixel gaps.

    Each atom is scaled on its own: ``"minmax"`` maps its range onto [0, 1] (signed atoms),
    ``"max"`` divides by its maximum (nonnegative atoms).
    """
    if normalise not in ("minmax", "max"):
        raise ValueError(f"normalise must be 'minmax' or 'max', got {normalise!r}")
    a = np.asarray(atoms, dtype=np.float32)
    a = a[..., None] if a.ndim == 3 else a
    n, h, w, c = a.shape
    cols = max(1, int(np.ceil(np.sqrt(n))))
    rows = max(1, int(np.ceil(n / cols)))
    out = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), dtype=np.float32)
    for j in range(n):
        img = _scaled(a[j], normalise)
        r, col = divmod(j, cols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y : y + h, x : x + w] = np.repeat(img, 3, axis=2) if c == 1 else img
    return out
