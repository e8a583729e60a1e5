"""Nonnegative codes of patch batches with a fixed dictionary, through `dnmf.solve_h`.

The deblurring models code many patches of many images with one shared dictionary; this is
the one place that turns such a batch ``(N, m, L)`` into the library's single ``(m, N·L)``
problem (rows contiguous, one BLAS call per sweep) and back.
"""

from __future__ import annotations

import torch

import dnmf

__all__ = ["nonneg_codes", "mu_start"]

EPS = 1e-12


def mu_start(
    V: torch.Tensor, W: torch.Tensor, l1: float = 0.0, *, step: bool = True
) -> torch.Tensor:
    """A constant code matched to the data's scale, then (``step``) one multiplicative step
    from it (a start that already follows the data, for few HALS sweeps)."""
    scale = V.mean(dim=(-2, -1), keepdim=True) / W.sum(0).mean().clamp_min(EPS)
    H = scale.expand(*V.shape[:-2], W.shape[-1], V.shape[-1])
    if not step:
        return H.clamp_min(EPS).contiguous()
    G = W.transpose(-1, -2) @ W
    return H * (W.transpose(-1, -2) @ V).clamp_min(0) / (G @ H + l1 + EPS)


def nonneg_codes(
    V: torch.Tensor,
    W: torch.Tensor,
    *,
    n_iter: int,
    l1: float = 0.0,
    coder: str = "hals",
    H: torch.Tensor | None = None,
) -> torch.Tensor:
    """``H ≥ 0`` with ``V ≈ W H`` for ``½‖V − W H‖² + l1·ΣH`` (``W`` fixed, nonnegative).

    ``V`` is ``(m, n)`` or a batch ``(N, m, L)`` sharing the 2-D ``W``. ``coder="hals"`` runs
    ``n_iter`` exact coordinate-descent sweeps, ``"mu"`` ``n_iter`` multiplicative updates
    (both `dnmf.solve_h`, no early stop); without ``H`` they start from
    `mu_start` (HALS after its multiplicative step, MU from the constant).
    """
    if coder not in ("hals", "mu"):
        raise ValueError(f"coder must be 'hals' or 'mu', got {coder!r}")
    batched = V.ndim == 3
    if batched:
        n, m, L = V.shape
        V = V.permute(1, 0, 2).reshape(m, n * L)
        if H is not None:
            H = H.permute(1, 0, 2).reshape(W.shape[1], n * L)
    H0 = mu_start(V, W, l1, step=coder == "hals") if H is None else H
    res = dnmf.solve_h(
        V,
        [W],
        H=H0,
        solver=coder,
        max_iter=int(n_iter),
        tol=0.0,
        l1=float(l1),
        warn=False,
        check_every=max(1, int(n_iter)),
    )
    out = torch.as_tensor(res.H)
    if batched:
        out = out.reshape(W.shape[1], n, L).permute(1, 0, 2).contiguous()
    return out
