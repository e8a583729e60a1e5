"""Initial factors: NNDSVD and its variants (Boutsidis & Gallopoulos 2008) and random.

All functions work on a matrix ``(m, n)`` or a batch ``(B, m, n)`` and draw random numbers
from a CPU ``torch.Generator`` in float64, so a seed gives the same factors on every device.
"""

from __future__ import annotations

import torch


def _randn(shape: tuple[int, ...], gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(like.device, like.dtype)


def top_svd(
    X: torch.Tensor, r: int, gen: torch.Generator, n_oversamples: int = 10
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Leading ``r`` singular triplets of ``X`` (batched).

    Exact SVD for small matrices; a randomized range finder with power iterations (Halko et al.
    2011, as scikit-learn's ``randomized_svd``) when ``r`` is small next to ``min(m, n)``.
    """
    m, n = X.shape[-2], X.shape[-1]
    p = r + n_oversamples
    if p >= min(m, n) // 2 or min(m, n) <= 256:
        U, S, Vh = torch.linalg.svd(X.double(), full_matrices=False)
        return U[..., :, :r].to(X.dtype), S[..., :r].to(X.dtype), Vh[..., :r, :].to(X.dtype)
    n_iter = 7 if r < 0.1 * min(m, n) else 4
    omega = _randn((*X.shape[:-2], n, p), gen, X)
    Q = torch.linalg.qr(X @ omega).Q
    for _ in range(n_iter):  # QR after each product keeps the power iterations stable
        Q = torch.linalg.qr(X.transpose(-1, -2) @ Q).Q
        Q = torch.linalg.qr(X @ Q).Q
    B = (Q.transpose(-1, -2) @ X).double()
    Ub, S, Vh = torch.linalg.svd(B, full_matrices=False)
    U = Q @ Ub[..., :, :r].to(X.dtype)
    return U, S[..., :r].to(X.dtype), Vh[..., :r, :].to(X.dtype)


def nndsvd(
    X: torch.Tensor, r: int, variant: str, gen: torch.Generator, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """NNDSVD ('nndsvd'), zeros filled with the mean ('nndsvda') or small noise ('nndsvdar')."""
    U, S, Vh = top_svd(X, r, gen)
    W = torch.zeros((*X.shape[:-2], X.shape[-2], r), dtype=X.dtype, device=X.device)
    H = torch.zeros((*X.shape[:-2], r, X.shape[-1]), dtype=X.dtype, device=X.device)
    # The leading singular pair of a nonnegative matrix can be taken nonnegative.
    s0 = S[..., :1].sqrt()
    W[..., :, 0] = s0 * U[..., :, 0].abs()
    H[..., 0, :] = s0 * Vh[..., 0, :].abs()
    if r > 1:
        x, y = U[..., :, 1:], Vh[..., 1:, :]
        xp, xn = x.clamp_min(0), (-x).clamp_min(0)
        yp, yn = y.clamp_min(0), (-y).clamp_min(0)
        xpn, xnn = xp.norm(dim=-2), xn.norm(dim=-2)
        ypn, ynn = yp.norm(dim=-1), yn.norm(dim=-1)
        mp, mn = xpn * ypn, xnn * ynn
        pos = mp > mn  # keep the part (positive or negative) with the larger energy
        tiny = torch.finfo(X.dtype).tiny
        u = torch.where(
            pos.unsqueeze(-2),
            xp / xpn.clamp_min(tiny).unsqueeze(-2),
            xn / xnn.clamp_min(tiny).unsqueeze(-2),
        )
        v = torch.where(
            pos.unsqueeze(-1),
            yp / ypn.clamp_min(tiny).unsqueeze(-1),
            yn / ynn.clamp_min(tiny).unsqueeze(-1),
        )
        lbd = (S[..., 1:] * torch.where(pos, mp, mn)).sqrt()
        W[..., :, 1:] = lbd.unsqueeze(-2) * u
        H[..., 1:, :] = lbd.unsqueeze(-1) * v
    W[W < eps] = 0
    H[H < eps] = 0
    if variant == "nndsvd":
        return W, H
    avg = X.mean(dim=(-2, -1), keepdim=True)
    if variant == "nndsvda":
        W = torch.where(W == 0, avg, W)
        H = torch.where(H == 0, avg, H)
    elif variant == "nndsvdar":
        W = torch.where(W == 0, (avg * _randn(tuple(W.shape), gen, W) / 100).abs(), W)
        H = torch.where(H == 0, (avg * _randn(tuple(H.shape), gen, H) / 100).abs(), H)
    else:
        raise ValueError(f"variant must be 'nndsvd', 'nndsvda' or 'nndsvdar', got {variant!r}")
    return W.contiguous(), H.contiguous()


def random_init(X: torch.Tensor, r: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """|N(0, 1)| scaled by sqrt(mean(X) / r), so that W H has X's mean on average."""
    avg = (X.mean(dim=(-2, -1), keepdim=True) / r).sqrt()
    W = avg * _randn((*X.shape[:-2], X.shape[-2], r), gen, X).abs()
    H = avg * _randn((*X.shape[:-2], r, X.shape[-1]), gen, X).abs()
    return W.contiguous(), H.contiguous()


def init_layer(
    X: torch.Tensor, r: int, init: str, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial ``(W, H)`` with ``X ≈ W H`` and inner rank ``r``."""
    if init == "random":
        return random_init(X, r, gen)
    return nndsvd(X, r, init, gen)


def init_stack(
    X: torch.Tensor, ranks: list[int], init: str, gen: torch.Generator
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Layer-wise initial factors without fitting: ``X ≈ W1 H1``, ``H1 ≈ W2 H2``, ...."""
    Ws = []
    H = X
    for r in ranks:
        W, H = init_layer(H, r, init, gen)
        Ws.append(W)
    return Ws, H
