"""Loss and MSE of a model over pairs (what `convae.train` validates with)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from convae.data import PairData
from convae.loss import DEFAULT_SSIM_WEIGHT, mse_ssim_loss

BEST_NAME = "best.pt"
LAST_NAME = "last.pt"


@torch.no_grad()
def _eval_sums(
    model: nn.Module,
    pairs: PairData,
    indices: torch.Tensor,
    batch_size: int,
    ssim_weight: float,
    dev: torch.device,
) -> torch.Tensor:
    """float64 ``[sum of loss, sum of MSE, count]`` over ``pairs[indices]`` (eval mode)."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=dev)
    for b, s in pairs.batches(indices.split(batch_size) if len(indices) else [], dev):
        out = model(b).float()
        sums[0] += mse_ssim_loss(out, s, ssim_weight=ssim_weight, reduction="none").sum()
        sums[1] += (out - s).pow(2).flatten(1).mean(1).sum()
        sums[2] += len(b)
    return sums


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    *,
    batch_size: int = 64,
    ssim_weight: float = DEFAULT_SSIM_WEIGHT,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Mean loss and MSE of ``model`` over ``data`` (same forms as `train` takes).

    Returns ``{"loss": ..., "mse": ...}`` averaged per image.  The model is put in eval
    mode and left there.  Runs on this process alone (no collectives).
    """
    pairs = data if isinstance(data, PairData) else PairData(data, "data")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    sums = _eval_sums(model, pairs, torch.arange(pairs.n), batch_size, ssim_weight, dev)
    return {"loss": sums[0].item() / pairs.n, "mse": sums[1].item() / pairs.n}
