"""Shared plumbing of the adapters whose model is fitted on the training images: the Deep NMF
ones (``nmf-coupled``, ``dnmf-coupled``, ``dnmf-prior``) and ``epll``.

The models live in `dnmf.deblur` and `benchmarks.gmm_prior`; this file caches a fitted model in
the run's work folder (keyed by its settings, the training data and the blur), loads a
``--checkpoint`` with one clear error, lightens the settings for the small presets, and draws
the Deep NMF loss curves and atoms.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import figures
from benchmarks.errors import UserError
from benchmarks.methods.base import MethodContext

LOSS_FIG = "dnmf_loss.png"
ATOMS_FIG = "dnmf_atoms.png"


def data_key(*tensors: torch.Tensor) -> str:
    """A short fingerprint of training tensors (shape and a few moments)."""
    h = hashlib.sha1()
    for t in tensors:
        t = t.detach().to("cpu", torch.float64)
        h.update(str(tuple(t.shape)).encode())
        h.update(
            np.asarray(
                [
                    float(t.sum()),
                    float(t.square().sum()),
                    float(t.flatten()[:: max(1, t.numel() // 997)].sum()),
                ]
            ).tobytes()
        )
    return h.hexdigest()[:12]


def cache_path(ctx: MethodContext, name: str, settings: dict[str, Any], key: str) -> Path | None:
    """Where a fitted model with these settings is cached (``None`` without a work dir)."""
    if ctx.work_dir is None:
        return None
    blob = json.dumps(
        {"settings": settings, "data": key, "blur": ctx.blur_meta}, sort_keys=True, default=str
    )
    digest = hashlib.sha1(blob.encode()).hexdigest()[:12]
    return Path(ctx.work_dir) / f"{name}-dictionary-{digest}.npz"


def load_or_fit(
    ctx: MethodContext,
    name: str,
    model_cls: Any,
    settings: dict[str, Any],
    key: str,
    fit: Callable[[Any], Any],
) -> tuple[Any, Path | None, bool]:
    """The cached model for these settings and data, or a fresh ``model_cls`` fitted by
    ``fit(model)`` and cached. Returns ``(model, cache path or None, whether it was cached)``."""
    dev = torch.device(ctx.device)
    path = cache_path(ctx, name, {**settings, "seed": ctx.seed}, key)
    if path is not None and path.is_file():
        return model_cls.load(path, device=dev), path, True
    model = model_cls(**settings, seed=ctx.seed, device=dev)
    fit(model)
    if path is not None:
        model.save(path)
    return model, path, False


def load_model_file(model_cls: Any, path: str | Path, device: torch.device, what: str) -> Any:
    """``model_cls.load(path)`` for ``--checkpoint``: a file that is not one of ``what``'s
    saved models fails with one clear error naming it instead of numpy's or zipfile's."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return model_cls.load(path, device=device)
    except (
        OSError,
        EOFError,
        KeyError,
        IndexError,
        TypeError,
        ValueError,
        zipfile.BadZipFile,
    ) as e:
        # numpy refuses pickled data (ValueError), a foreign .npz lacks keys (KeyError), ...
        why = f"{type(e).__name__}: {e}"
    raise UserError(f"not a checkpoint: {path} (not a saved {what} model; {why})")


def preset_settings(
    ctx: MethodContext, name: str, full: dict[str, Any], tiny: dict[str, Any], small: dict[str, Any]
) -> dict[str, Any]:
    """Model settings for the run's preset: ``full`` at 128 px and up, lightened by ``small``
    at <= 64 px (the fast preset's few-minute budget) or ``tiny`` in the smoke preset, then
    the ``<name>_settings`` entry of ``ctx.options``."""
    s = dict(full)
    if ctx.preset.tiny:
        s.update(tiny)
    elif ctx.preset.size <= 64:
        s.update(small)
    s.update(ctx.options.get(f"{name}_settings", {}))
    return s


# ---------------------------------------------------------------------------- figures
def plot_losses(
    path: Path, title: str, joint: np.ndarray | None, pretrain: list[np.ndarray]
) -> Path | None:
    """Loss curves: layer-wise pretraining (if any) and the joint fine-tuning."""
    if joint is None or len(np.atleast_1d(joint)) == 0:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, h in enumerate(pretrain):
        h = np.asarray(h).reshape(-1)
        if h.size:
            ax.plot(np.arange(1, h.size + 1), h, lw=1, ls="--", label=f"pretrain layer {i + 1}")
    j = np.asarray(joint).reshape(-1)
    ax.plot(np.arange(1, j.size + 1), j, lw=1.5, color="k", label="joint (W1…Wk, H)")
    ax.set_yscale("log")
    ax.set_xlabel("recorded iteration")
    ax.set_ylabel("½‖V − W1…Wk H‖² (+ penalties)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def tile_atoms(W: torch.Tensor, channels: int, side: int, max_atoms: int = 64) -> np.ndarray:
    """First ``max_atoms`` columns of ``W`` (C·side² rows) as a grid image, each in [0, 1]."""
    W = W.detach().to("cpu", torch.float32)[: channels * side * side, :max_atoms]
    atoms = W.T.reshape(-1, channels, side, side).permute(0, 2, 3, 1).numpy()
    return figures.tile_atoms(atoms, normalise="minmax")


def plot_atoms(path: Path, panels: list[tuple[str, np.ndarray]], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (name, img) in zip(axes[0], panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
