"""Classical non-blind deconvolution, batched over images in torch (FFT).

Both methods avoid circular wrap-around: Wiener pads the blurred image by reflection
before its FFT and crops afterwards; Richardson-Lucy works with the reflect-boundary
operator itself (``A`` and ``A_adjoint``), normalised by ``A_adjoint(1)``.

Reflect-padding the blurred image is consistent with the blur only for a kernel symmetric
about its centre pixel: the mirror image of ``y`` is the mirror image blurred by the
*flipped* kernel, so for a camera-shake kernel the FFT filter deconvolves the padding with the
wrong kernel and the error reaches a kernel's width into the image (on 64 px faces and a 27 px
Levin kernel, most of it). For such a kernel Wiener–Hunt is solved on the operator itself:
``(AᵀA + b LᵀL) x = Aᵀy`` by conjugate gradients (`wiener_padded`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from benchmarks.blur import BlurOperator, _reflect_index, is_symmetric_kernel
from dnmf.deblur.hqs import CG_ITER, CG_TOL, conjugate_gradients

#: The mean of the four neighbours: ``L = 4 (I − B)`` is the 4-neighbour Laplacian (scikit-
#: image's Wiener–Hunt regulariser) with the operator's reflect boundary and exact adjoint.
_NEIGHBOUR_MEAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]) / 4


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
    y: torch.Tensor,
    kernel: torch.Tensor,
    balances: list[float] | float,
    pad: int | None = None,
    *,
    cg_iter: int = CG_ITER,
    cg_tol: float = CG_TOL,
) -> list[torch.Tensor] | torch.Tensor:
    """Wiener–Hunt deconvolution as ``skimage.restoration.wiener`` (Laplacian regulariser),
    with reflect padding of ``pad`` px (default: the kernel size) around every image.

    With the default padding and a kernel that is not symmetric about its centre pixel
    (`benchmarks.blur.is_symmetric_kernel`), where the padding is inconsistent with the blur,
    the padded solution only starts conjugate gradients on the reflect-boundary operator's
    own Wiener–Hunt equations (`_wiener_exact`, budget ``cg_iter``/``cg_tol``).

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
        outs.append(x[..., py : py + h, px : px + w].contiguous())
    if pad is None and not is_symmetric_kernel(kernel):
        outs = _wiener_exact(y, kernel, bal, outs, cg_iter=cg_iter, cg_tol=cg_tol)
    outs = [x.clamp(0.0, 1.0) for x in outs]
    return outs[0] if single else outs


def _wiener_exact(
    y: torch.Tensor,
    kernel: torch.Tensor,
    balances: list[float],
    starts: list[torch.Tensor],
    *,
    cg_iter: int,
    cg_tol: float,
) -> list[torch.Tensor]:
    """Wiener–Hunt on the reflect-boundary operator ``A`` itself: ``min ‖A x − y‖² +
    b ‖L x‖²``, i.e. ``(AᵀA + b LᵀL) x = Aᵀy``, by conjugate gradients for every balance ``b``.

    The balances are solved from the largest down, each started from the previous solution
    (the largest from its padded FFT solution in ``starts``): neighbouring balances have
    nearby solutions.
    """
    op, lap = BlurOperator(kernel), BlurOperator(_NEIGHBOUR_MEAN)
    aty = op.A_adjoint(y)

    def ltl(v: torch.Tensor) -> torch.Tensor:  # LᵀL v with L = 4 (I − B)
        u = v - lap.A(v)
        return 16.0 * (u - lap.A_adjoint(u))

    outs: list[torch.Tensor] = list(starts)
    x: torch.Tensor | None = None
    for i in sorted(range(len(balances)), key=lambda j: -balances[j]):
        b = balances[i]
        x, _ = conjugate_gradients(
            lambda v, b=b: op.A_adjoint(op.A(v)) + b * ltl(v),
            aty,
            starts[i] if x is None else x,
            max_iter=cg_iter,
            tol=cg_tol,
        )
        outs[i] = x
    return outs


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
