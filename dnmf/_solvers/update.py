"""The multiplicative update (Févotte & Idier 2011), and `SolverBase`, the base of every solver.

For layer ``l`` the model reads ``Λ = P Wl S`` with the prefix ``P = W1…W(l-1)`` and the suffix
``S = W(l+1)…Wk H``; its update is

    Wl ← Wl ⊙ [Pᵀ (M ⊙ V ⊙ Λ^(β-2)) Sᵀ / (Pᵀ (M ⊙ Λ^(β-1)) Sᵀ + l1 + l2·Wl)]^γ(β)

with the mask ``M`` (ones when absent) and γ(β) = 1/(2-β) for β < 1, 1 for 1 ≤ β ≤ 2 and
1/(β-1) for β > 2. `SolverBase` holds what every solver has in common: the data, the penalties
and the update flags, the sum over column shards, the objective's penalties, and this guarded,
in-place multiplicative step. The two multiplicative-update solvers (`dnmf._solvers.frobenius`,
`dnmf._solvers.general`) take it for every block, the block solvers of `dnmf._solvers.hals`
for ``rule='mu'`` (accelerated MU), and the batched cross-validation fits of
`dnmf._rank_selection.cv` for theirs; HALS replaces it by exact block updates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .fpstate import raise_tiny_
from .loss import Penalties

#: Factors below this are set to 0 for β < 1 (W) / β ≤ 1 (H), as scikit-learn does for stability.
_TINY = float(np.finfo(np.float64).eps)


def mu_exponent(beta: float) -> float:
    """γ(β) of Févotte & Idier (2011), which makes the multiplicative update monotone."""
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


class SolverBase:
    """What every solver shares: ``V``, the penalties and update flags, the sum over column
    shards, and the guarded, in-place multiplicative step."""

    def __init__(
        self,
        V,
        pen: Penalties,
        update: list[bool],
        eps: float,
        beta: float,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.V = V
        self.reduce = reduce  # sums over column shards; None: V holds every column
        self.pen = pen
        self.update = update  # one flag per factor (W1..Wk, H)
        self.eps = eps
        self.beta = beta
        self.gamma = mu_exponent(beta)

    def default_loss_every(self, check_every: int) -> int:
        """How often `dnmf._solvers.loop.iterate` records the loss unless told: at every
        convergence check (solvers whose loss comes for free say more often)."""
        return check_every

    def finish(self, Ws: list[torch.Tensor], H: torch.Tensor) -> None:
        """Called once the loop ends: the factors are already in place here."""

    def _sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the column shards of ``V`` (``t`` itself for a whole ``V``)."""
        return t if self.reduce is None else self.reduce(t)

    def _objective(self, local: torch.Tensor, Ws, H) -> torch.Tensor:
        """A column-additive data term of this shard plus the penalties, summed over shards."""
        if self.reduce is None:
            return local + self.pen.value([*Ws, H])
        h_pen = self.pen.for_codes().value([H])
        w_pen = self.pen.for_dictionary().value(Ws)
        return self.reduce(local + h_pen) + w_pen

    def _step(self, F, N, D, idx: int, active: torch.Tensor | None) -> None:
        """F ← F ⊙ (N / (D + l1 + l2·F))^γ, writing the ratio into D's storage."""
        l1, l2 = self.pen.l1[idx], self.pen.l2[idx]
        if l1:
            D.add_(l1)
        if l2:
            D.add_(F, alpha=l2)
        torch.div(N, D, out=D)
        # D == 0 only where the factor entry is already 0 (a zero row of P or S also zeroes N,
        # and Λ ≥ P·F·S), so scikit-learn's D := eps there gives F·ratio = 0. One in-place
        # pass does the same: 0/0 → 0 and N/0 → 0.
        D.nan_to_num_(nan=0.0, posinf=0.0)
        if self.gamma != 1:
            D.pow_(self.gamma)
        if active is not None:
            D.masked_fill_(~active.view(-1, 1, 1), 1.0)
        F.mul_(D)
        # Entries shrink geometrically and never reach 0: keep them out of the subnormal range,
        # where every product reading them is slower (dnmf._solvers.fpstate); zeros stay zeros.
        raise_tiny_(F)
        is_H = idx == len(self.update) - 1
        if self.beta < 1 or (is_H and self.beta <= 1):
            small = F < _TINY
            if active is not None:
                small &= active.view(-1, 1, 1)
            F.masked_fill_(small, 0.0)
