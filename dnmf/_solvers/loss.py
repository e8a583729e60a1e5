"""The objective: β-divergences, ‖V‖² and the L1/L2 penalties, accumulated in float64."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: scikit-learn's floor for Λ and for zero denominators (float32 machine epsilon).
EPSILON = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class Penalties:
    """L1/L2 weights per factor, in the order (W1, …, Wk, H): the objective adds
    ``l1·ΣF + ½·l2·‖F‖²`` for each factor ``F``. The last entry is always ``H``'s; the views
    below name the slices the fits take of them."""

    l1: list[float]
    l2: list[float]

    @classmethod
    def none(cls, n_factors: int) -> Penalties:
        return cls([0.0] * n_factors, [0.0] * n_factors)

    @classmethod
    def codes_only(cls, k: int, l1: float, l2: float) -> Penalties:
        """``l1``/``l2`` on ``H`` and none on the ``k`` factors ``W1…Wk`` (held fixed by an
        H-only solve)."""
        return cls([0.0] * k + [l1], [0.0] * k + [l2])

    def for_layer(self, l: int) -> Penalties:
        """The penalties of layer ``l``'s own one-layer fit ``X ≈ Wl Hl`` (its pretraining):
        ``Wl``'s weights and ``H``'s."""
        return Penalties([self.l1[l], self.l1[-1]], [self.l2[l], self.l2[-1]])

    def for_codes(self) -> Penalties:
        """``H``'s weights alone (one factor): the part of the objective that sums over the
        columns, as column shards compute it."""
        return Penalties([self.l1[-1]], [self.l2[-1]])

    def for_dictionary(self) -> Penalties:
        """The weights of ``W1…Wk``, without ``H``'s."""
        return Penalties(self.l1[:-1], self.l2[:-1])

    def any(self) -> bool:
        """Whether any weight is nonzero."""
        return any(self.l1) or any(self.l2)

    def value(self, factors: Sequence[torch.Tensor]) -> torch.Tensor | float:
        """Σ l1·ΣF + ½·l2·‖F‖² over the factors, in float64 (one value per matrix)."""
        total: torch.Tensor | float = 0.0
        for F, a, b in zip(factors, self.l1, self.l2):
            if a:
                total = total + a * F.sum(dim=(-2, -1), dtype=torch.float64)
            if b:
                total = total + 0.5 * b * F.square().sum(dim=(-2, -1), dtype=torch.float64)
        return total


def _chunk_rows(m: int, n: int, batch: int) -> int:
    return max(1, (1 << 20) // max(1, n * batch))


def squared_norm(V: torch.Tensor) -> torch.Tensor:
    """‖V‖² per matrix in float64, a block of rows at a time (no full-size float64 copy)."""
    step = _chunk_rows(V.shape[-2], V.shape[-1], int(np.prod(V.shape[:-2], dtype=np.int64)))
    total = torch.zeros(V.shape[:-2], dtype=torch.float64, device=V.device)
    for i in range(0, V.shape[-2], step):
        # squares rounded in V's dtype (relative error 2⁻²⁴ each, unbiased), summed in float64
        total += V[..., i : i + step, :].square().sum(dim=(-2, -1), dtype=torch.float64)
    return total


def beta_divergence(
    V: torch.Tensor,
    L: torch.Tensor,
    beta: float,
    mask: torch.Tensor | None = None,
    eps: float = EPSILON,
) -> torch.Tensor:
    """β-divergence D(V | L) per matrix, accumulated in float64 over blocks of rows.

    β = 2 gives ½‖V − L‖² (scikit-learn's convention), β = 1 the generalized Kullback–Leibler
    divergence, β = 0 Itakura–Saito. ``L`` is floored at ``eps`` where it is divided by or
    its logarithm is taken. With a mask, each entry's term is weighted (weight 0 = ignored).
    """
    step = _chunk_rows(V.shape[-2], V.shape[-1], int(np.prod(V.shape[:-2], dtype=np.int64)))
    total = torch.zeros(V.shape[:-2], dtype=torch.float64, device=V.device)
    for i in range(0, V.shape[-2], step):
        v = V[..., i : i + step, :].double()
        lam = L[..., i : i + step, :].double()
        if beta == 2:
            t = 0.5 * (v - lam).square()
        elif beta == 1:
            t = torch.xlogy(v, v / lam.clamp_min(eps)) - v + lam
        elif beta == 0:
            ratio = v / lam.clamp_min(eps)
            t = ratio - torch.log(ratio) - 1
        else:
            lc = lam.clamp_min(eps) if beta < 1 else lam
            t = v.pow(beta) + (beta - 1) * lam.pow(beta) - beta * v * lc.pow(beta - 1)
            t = t / (beta * (beta - 1))
        if mask is not None:
            w = mask[..., i : i + step, :].double()
            t = torch.where(w > 0, t * w, torch.zeros((), dtype=t.dtype, device=t.device))
        total += t.sum(dim=(-2, -1))
    return total
