"""The training curve of a `convae.train` history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def plot_history(
    history: Sequence[Mapping[str, Any]], path: str | Path, *, title: str | None = None
) -> Path:
    """Plot train/val loss per epoch to a PNG (matplotlib, Agg backend); returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(ep, [h["train_loss"] for h in history], "o-", label="train", ms=3)
    val = [(h["epoch"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val), "s-", label="validation", ms=3)
        be, bl = min(val, key=lambda t: t[1])
        ax.plot([be], [bl], "k*", ms=10, label=f"best (epoch {be})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss  (MSE + λ(1 − SSIM))")
    losses = [h["train_loss"] for h in history] + [v for _, v in val]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 5:  # log only if it helps
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title or "training curve")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
