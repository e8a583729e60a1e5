"""Per-image metrics, one definition everywhere.

Every function takes ``(x_hat, x)`` batches ``(N, C, H, W)`` and returns a ``(N,)`` float64
tensor.  Outputs are clipped to [0, 1] first; the data range is 1.  SSIM reproduces
``skimage.metrics.structural_similarity(data_range=1, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, channel_axis=...)``: mean over channels of the mean SSIM map
with the 5-pixel border (half the 11-tap window) cropped, as scikit-image does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5  # scipy.ndimage.gaussian_filter default, used by scikit-image
_K1, _K2 = 0.01, 0.03
PSNR_CAP_DB = 120.0  # identical images would give inf; cap so means stay finite


def _prep(x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x_hat.shape != x.shape:
        raise ValueError(f"shape mismatch: {tuple(x_hat.shape)} vs {tuple(x.shape)}")
    if x.ndim != 4:
        raise ValueError(f"metrics take (N, C, H, W) batches, got {tuple(x.shape)}")
    return (
        x_hat.detach().to(torch.float64).clamp(0.0, 1.0),
        x.detach().to(torch.float64).clamp(0.0, 1.0),
    )


def mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error over pixels and channels, per image."""
    a, b = _prep(x_hat, x)
    return ((a - b) ** 2).flatten(1).mean(1)


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """PSNR = 10·log10(1 / MSE) per image, capped at ``PSNR_CAP_DB``."""
    m = mse(x_hat, x).clamp_min(10 ** (-PSNR_CAP_DB / 10))
    return -10.0 * torch.log10(m)


def _gauss_taps(device: torch.device) -> torch.Tensor:
    radius = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (t / _SSIM_SIGMA) ** 2)
    return g / g.sum()


def ssim(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """SSIM per image, matching scikit-image's Gaussian-weighted SSIM (see module doc)."""
    a, b = _prep(x_hat, x)
    n, c, h, w = a.shape
    g = _gauss_taps(a.device)
    win = g.numel()
    if h < win or w < win:
        raise ValueError(f"SSIM needs images of at least {win}x{win} px, got {h}x{w}")
    # scikit-image filters the whole image and crops (win-1)/2 px; a valid convolution
    # computes exactly the kept region, so no padding mode is involved.
    kv = g.view(1, 1, win, 1).expand(5 * c, 1, win, 1)
    kh = g.view(1, 1, 1, win).expand(5 * c, 1, 1, win)
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    f = F.conv2d(F.conv2d(stack, kv, groups=5 * c), kh, groups=5 * c)
    ux, uy, uxx, uyy, uxy = f.split(c, dim=1)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = _K1**2, _K2**2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(dim=1)


METRICS = {"mse": mse, "psnr": psnr, "ssim": ssim}


def all_metrics(x_hat: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """All three metrics per image as float64 CPU tensors."""
    return {k: f(x_hat, x).cpu() for k, f in METRICS.items()}


def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the two-sided t confidence interval of the mean."""
    import numpy as np
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), math.nan
    half = stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean()), float(half)
