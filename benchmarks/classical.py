"""Classical non-blind deconvolution, batched over images in torch (FFT).

Both methods avoid circular wrap-around: Wiener pads the blurred image by reflection
before its FFT and crops afterwards; Richardson-Lucy works with the reflect-boundary
operator itself (``A`` and ``A_adjoint``), normalised by ``A_adjoint(1)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from benchmarks.blur import BlurOperator, _reflect_index


def _psf_transfer(kernel: torch.Tensor, ph: int, pw: int, device, dtype) -> torch.Tensor:
    """rFFT of the PSF on a ``ph × pw`` grid with its centre (index k // 2) at the origin."""
    kh, kw = kernel.shape
    k = torch.zeros(ph, pw, dtype=torch.float64)
    k[:kh, :kw] = kernel
    k = torch.roll(k, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
    return torch.fft.rfft2(k).to(device=device, dtype=_complex(dtype))


def _laplacian_transfer(ph: int, pw: int, device, dtype) -> torch.Tensor:
    """rFFT of scikit-image's default regulariser, the 4-neighbour Laplacian."""
    lap = torch.zeros(ph, pw, dtype=torch.float64)
    lap[0, 0] = 4.0
    lap[0, 1] = lap[1, 0] = lap[0, -1] = lap[-1, 0] = -1.0
    return torch.fft.rfft2(lap).to(device=device, dtype=_complex(dtype))


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def wiener_padded(
    y: torch.Tensor, kernel: torch.Tensor, balances: list[float] | float, pad: int | None = None
) -> list[torch.Tensor] | torch.Tensor:
    """Wiener–Hunt deconvolution as ``skimage.restoration.wiener`` (Laplacian regulariser),
    with reflect padding of ``pad`` px (default: the kernel size) around every image.

    Returns one restored batch per balance (or a single batch if ``balances`` is a float).
    """
    single = isinstance(balances, (int, float))
    bal = [float(balances)] if single else [float(b) for b in balances]
    n, c, h, w = y.shape
    kh, kw = kernel.shape
    py = min(pad if pad is not None else kh, h - 1)
    px = min(pad if pad is not None else kw, w - 1)
    iy = _reflect_index(h, py, py).to(y.device)
    ix = _reflect_index(w, px, px).to(y.device)
    z = y.index_select(-2, iy).index_select(-1, ix)
    ph, pw = z.shape[-2:]
    H = _psf_transfer(kernel, ph, pw, y.device, y.dtype)
    L2 = _laplacian_transfer(ph, pw, y.device, y.dtype).abs() ** 2
    H2 = H.abs() ** 2
    Z = torch.fft.rfft2(z)
    outs = []
    for b in bal:
        x = torch.fft.irfft2(Z * (H.conj() / (H2 + b * L2)), s=(ph, pw))
        outs.append(x[..., py : py + h, px : px + w].clamp(0.0, 1.0).contiguous())
    return outs[0] if single else outs


def richardson_lucy(
    y: torch.Tensor,
    blur: BlurOperator,
    n_iter: int,
    *,
    eps: float = 1e-6,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Richardson–Lucy with the reflect-boundary operator, started from the blurred image.

    ``callback(k, x)`` is called after iteration ``k`` (1-based), e.g. to score every step.
    """
    x = y.clamp_min(eps)
    yc = y.clamp_min(0.0)
    norm = blur.A_adjoint(torch.ones_like(y)).clamp_min(eps)
    for k in range(1, n_iter + 1):
        x = x * blur.A_adjoint(yc / blur.A(x).clamp_min(eps)) / norm
        if callback is not None:
            callback(k, x)
    return x.clamp(0.0, 1.0)
