"""Training loss ``MSE + λ·(1 − SSIM)``, with the benchmark's SSIM definition.

SSIM comes from ``pytorch_msssim.ssim`` with ``data_range=1.0`` (its default of 255 would
make the SSIM term almost constant), an 11-tap Gaussian window with sigma 1.5 and
K = (0.01, 0.03), computed on the valid region only.  That is the benchmark's SSIM definition
(scikit-image ``structural_similarity(data_range=1, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``), averaged over channels; ``tests/convae/test_loss.py`` checks
the match.
"""

from __future__ import annotations

import math

import torch
from pytorch_msssim import ssim as _pm_ssim
from torch import nn

DEFAULT_SSIM_WEIGHT = 0.1
DEFAULT_WIN_SIZE = 11
DEFAULT_WIN_SIGMA = 1.5


def _check_weight(ssim_weight: float) -> None:
    # ``nan < 0`` is False: without the finiteness test a NaN weight passed and, failing the
    # ``> 0`` test too, silently gave plain MSE
    if isinstance(ssim_weight, bool) or not (
        isinstance(ssim_weight, (int, float)) and math.isfinite(ssim_weight) and ssim_weight >= 0
    ):
        raise ValueError(f"ssim_weight must be a finite number >= 0, got {ssim_weight!r}")


def _check_pair(x_hat: torch.Tensor, x: torch.Tensor, win_size: int) -> None:
    if x_hat.shape != x.shape:
        raise ValueError(f"prediction {tuple(x_hat.shape)} and target {tuple(x.shape)} differ")
    if x.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) tensors, got {tuple(x.shape)}")
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size must be a positive odd int, got {win_size!r}")
    h, w = x.shape[-2:]
    if h < win_size or w < win_size:
        # pytorch_msssim would silently skip smoothing along that axis and return a
        # different quantity; refuse instead.
        raise ValueError(
            f"images of {h}x{w} are smaller than the SSIM window ({win_size}); "
            f"use larger images or pass a smaller odd win_size"
        )


def ssim(
    x_hat: torch.Tensor,
    x: torch.Tensor,
    *,
    win_size: int = DEFAULT_WIN_SIZE,
    win_sigma: float = DEFAULT_WIN_SIGMA,
) -> torch.Tensor:
    """Per-image SSIM ``(N,)`` of two (N, C, H, W) batches in [0, 1] (data range 1).

    Differentiable; computed in float32 even under mixed precision.
    """
    _check_pair(x_hat, x, win_size)
    if isinstance(win_sigma, bool) or not (
        isinstance(win_sigma, (int, float)) and math.isfinite(win_sigma) and win_sigma > 0
    ):
        raise ValueError(f"win_sigma must be a finite number > 0, got {win_sigma!r}")
    return _pm_ssim(
        x_hat.float(),
        x.float(),
        data_range=1.0,
        size_average=False,
        win_size=win_size,
        win_sigma=win_sigma,
    )


def mse_ssim_loss(
    x_hat: torch.Tensor,
    x: torch.Tensor,
    *,
    ssim_weight: float = DEFAULT_SSIM_WEIGHT,
    win_size: int = DEFAULT_WIN_SIZE,
    reduction: str = "mean",
) -> torch.Tensor:
    """``MSE + ssim_weight * (1 - SSIM)`` per image, reduced by ``reduction``.

    ``reduction`` is ``"mean"`` (scalar, the batch mean) or ``"none"`` (shape ``(N,)``).
    With ``ssim_weight=0`` no SSIM is computed (and no minimum image size applies).
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    _check_weight(ssim_weight)
    if x_hat.shape != x.shape:
        raise ValueError(f"prediction {tuple(x_hat.shape)} and target {tuple(x.shape)} differ")
    mse = (x_hat.float() - x.float()).pow(2).flatten(1).mean(1)
    loss = mse
    if ssim_weight > 0:
        loss = mse + ssim_weight * (1.0 - ssim(x_hat, x, win_size=win_size))
    return loss.mean() if reduction == "mean" else loss


class MSESSIMLoss(nn.Module):
    """Module form of `mse_ssim_loss` (mean over the batch)."""

    def __init__(
        self, ssim_weight: float = DEFAULT_SSIM_WEIGHT, win_size: int = DEFAULT_WIN_SIZE
    ) -> None:
        super().__init__()
        _check_weight(ssim_weight)
        self.ssim_weight = ssim_weight
        self.win_size = win_size

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return mse_ssim_loss(x_hat, x, ssim_weight=self.ssim_weight, win_size=self.win_size)
