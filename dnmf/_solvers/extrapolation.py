"""Extrapolation of the one-layer block solvers (Ang & Gillis 2019, "Accelerating
nonnegative matrix factorization algorithms using extrapolation", Neural Computation 31).

Each iteration updates ``W`` from an extrapolated ``Ĥ``, extrapolates it,
``Ŵ = max(0, Wn + β (Wn − W))``, updates ``H`` from ``Ŵ`` and extrapolates it,
``Ĥ = Hn + β (Hn − H)`` (not projected: it is only the next ``W`` update's fixed factor and
the next ``H`` update's start, and a row update projects). The loss of the feasible pair
``(Ŵ, Hn)`` comes from the products the ``H`` update made anyway. If it went up, the
iteration is undone: the next one starts from the last accepted ``(W, H)``, ``β`` shrinks by
``η`` and its ceiling drops to the previous ``β``; else ``β`` grows by ``γ`` up to the ceiling,
which grows by ``γ̄`` up to 1. A batch keeps ``β``, its ceiling and the decision per matrix.

Each component's scale is balanced between ``W`` and ``H`` after every iteration (see
`ExtrapolatedSolver._rebalance`), which only penalty-free fits allow: with penalties (and
wherever else `ExtrapolatedSolver.applies` says no) the registry (`dnmf._solvers`) builds the
plain `dnmf._solvers.hals.BlockSolver` instead.

The iterates are not monotone, so the fit keeps the best feasible pair seen: the loss it
reports after each iteration is that pair's, and that pair is what it returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

import torch

from .hals import Acceleration, BlockSolver
from .linalg import _mm, _mT
from .loss import Penalties
from .sparse import Data


@dataclass(frozen=True)
class Extrapolation:
    """The parameters of Ang & Gillis's extrapolation; the defaults are the authors' for
    accelerated HALS."""

    beta0: float = 0.5
    eta: float = 1.5
    gamma: float = 1.01
    gamma_bar: float = 1.005


#: The matrices a pair is changed for: all (``...``) or their batch indices.
Index = tuple[torch.Tensor, ...] | EllipsisType


class ExtrapolatedSolver(BlockSolver):
    """`BlockSolver` for one layer with both factors updated, extrapolated per iteration."""

    @staticmethod
    def applies(n_layers: int, update: Sequence[bool], penalties: Penalties) -> bool:
        """Whether a fit can be extrapolated: one layer, both factors updated, no penalties
        (the rescaling of `_rebalance` would change a penalty's value)."""
        return n_layers == 1 and all(update) and not penalties.any()

    def __init__(
        self,
        V: Data,
        Ws: list[torch.Tensor],
        H: torch.Tensor,
        pen: Penalties,
        update: list[bool],
        rule: str,
        accel: Acceleration | None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None,
        extrapolation: Extrapolation,
        **kw: Any,
    ) -> None:
        """``kw``: what a masked solver's constructor takes besides (``mask=``, see
        `dnmf._solvers.masked.MaskedExtrapolatedSolver`)."""
        super().__init__(V, Ws, H, pen, update, rule=rule, accel=accel, reduce=reduce, **kw)
        if self.k != 1 or not all(self.update):
            raise ValueError("extrapolation needs one layer with W and H both updated")
        self.ex = extrapolation
        lead = self.V.shape[:-2]
        self.momentum = torch.full(lead, extrapolation.beta0, dtype=torch.float64)
        self.momentum_prev = self.momentum.clone()  # a restart's new ceiling
        self.ceiling = torch.ones(lead, dtype=torch.float64)
        self.last = torch.full(lead, math.inf, dtype=torch.float64)
        self.best_loss = torch.full(lead, math.inf, dtype=torch.float64)
        self.Wt_prev: torch.Tensor | None = None  # the last accepted W1ᵀ and H
        self.H_prev: torch.Tensor | None = None
        self.best: tuple[torch.Tensor, torch.Tensor] | None = None  # (W1ᵀ, H)

    def loss(self, Ws, H) -> torch.Tensor:
        value = super().loss(Ws, H)
        self._keep_best(_mT(Ws[0]), H, self._on_host(value))
        return value

    def _on_host(self, value: torch.Tensor) -> torch.Tensor:
        """The per-matrix loss as a float64 host tensor of the batch's shape (one copy a
        sweep serves the restart decision and the best pair)."""
        return value.detach().cpu().reshape(self.best_loss.shape).to(torch.float64)

    def sweep(self, Ws, H, active, need_loss: bool):
        if self.W1t is None:
            self.W1t = _mT(Ws[0]).contiguous()
        if self.Wt_prev is None:
            self.Wt_prev, self.H_prev = self.W1t.clone(), H.clone()
        assert self.H_prev is not None
        beta = self._as_factor(self.momentum, active)
        # W from Ĥ, then Ŵ = max(0, Wn + β (Wn − W))
        self._w_block(H, active)
        Wt_new = self.W1t  # lerp(W, Wn, 1 + β) = Wn + β (Wn − W), a new tensor: Wn is kept
        self.W1t = torch.lerp(self.Wt_prev, Wt_new, 1.0 + beta).clamp_min_(0.0)
        # H from Ŵ; the loss of (Ŵ, Hn) from the products of this update
        value = self._h_block_loss(_mT(self.W1t), H, active)
        host = self._on_host(value)
        self._keep_best(self.W1t, H, host, active)
        self._next_start(Wt_new, H, beta, host)
        self._rebalance(H)
        return self.best_loss.to(value.device).reshape(value.shape) if need_loss else None

    def _w_block(self, H, active) -> None:
        """Update ``W1ᵀ`` (``self.W1t``) in place against ``H``."""
        assert self.W1t is not None
        Ht_V = self._sum(self._h_vt(H))
        self._block(self.W1t, self._sum(_mm(H, _mT(H))), Ht_V, 0, active)

    def _h_block_loss(self, W, H, active) -> torch.Tensor:
        """Update ``H`` in place against ``W``; return the loss of ``(W, H)``, from the
        products of this update."""
        PtV, Q = self._wt_v(W), _mm(_mT(W), W)
        self._block(H, Q, PtV, 1, active, shards=True)
        self.G = self._sum(_mm(H, _mT(H)))
        return self._loss(PtV, Q, [W], H)

    def _next_start(self, Wt_new, H, beta, host) -> None:
        """Accept the iteration (``Ĥ = Hn + β (Hn − H)``) or restart from the last accepted
        pair, per matrix, and move ``β`` and its ceiling; ``host``: the loss (`_on_host`)."""
        assert self.W1t is not None and self.Wt_prev is not None and self.H_prev is not None
        ex = self.ex
        up = host > self.last
        Hn = H.clone()
        torch.lerp(self.H_prev, Hn, 1.0 + beta, out=H)  # Ĥ, for every matrix first
        back = _where(up, H.device)  # the restarting matrices start from the last accepted pair
        if back is not None:
            for now, accepted in ((H, self.H_prev), (self.W1t, self.Wt_prev)):
                now[back] = accepted[back]
            Wt_new[back], Hn[back] = self.Wt_prev[back], self.H_prev[back]
        self.Wt_prev, self.H_prev = Wt_new, Hn
        # (the next W update's Gram, Ĥ Ĥᵀ, is made at the start of the next sweep)
        grown = torch.minimum(self.ceiling, ex.gamma * self.momentum)
        raised = torch.clamp(ex.gamma_bar * self.ceiling, max=1.0)
        self.ceiling = torch.where(up, self.momentum_prev, raised)
        self.momentum_prev, self.momentum = (
            self.momentum,
            torch.where(up, self.momentum / ex.eta, grown),
        )
        self.last = host

    def _rebalance(self, H) -> None:
        """Give component ``j`` of ``W`` and ``H`` equal norms, in the current and the last
        accepted pair alike. HALS is equivariant to rescaling a component (``W_j·d``,
        ``H_j/d``), and so is the extrapolation when both pairs are rescaled, so this changes
        no product ``W H``; without it the extrapolated steps drift the scales apart
        geometrically (a column of ``W`` shrank 30× in 15 iterations of a 20 × 16 fit) until
        the curvatures ``(H Hᵀ)_jj`` overflow and ``(Wᵀ W)_jj`` underflow."""
        assert self.W1t is not None and self.Wt_prev is not None and self.H_prev is not None
        w2 = torch.linalg.vector_norm(self.W1t, dim=-1).square()
        h2 = self._sum(torch.linalg.vector_norm(H, dim=-1).square())  # over shards: squares
        ok = (w2 > 0) & (h2 > 0)
        d = torch.where(ok, (h2 / torch.where(ok, w2, 1.0)).sqrt().sqrt(), 1.0).unsqueeze(-1)
        for Wt in (self.W1t, self.Wt_prev):
            Wt.mul_(d)
        for Hx in (H, self.H_prev):
            Hx.div_(d)

    def _keep_best(self, Wt, H, host, active=None) -> None:
        """Keep ``(Wt, H)`` of the matrices whose loss (``host``, see `_on_host`) is the
        lowest yet; a batch's frozen matrices keep theirs (their ``H`` in place is the
        unprojected ``Ĥ``)."""
        better = host <= self.best_loss
        if active is not None:
            better &= active.cpu().reshape(better.shape)
        if not bool(better.any()):
            return
        if self.best is None:
            self.best = (Wt.clone(), H.clone())
        else:
            which = _where(better, H.device)
            assert which is not None
            for kept, now in zip(self.best, (Wt, H)):
                kept[which] = now[which]
        self.best_loss = torch.where(better, host, self.best_loss)

    def finish(self, Ws, H) -> None:
        """Write the best pair seen into ``Ws[0]`` and ``H``."""
        if self.best is None:  # no loss yet: the factors as they are
            super().finish(Ws, H)
            return
        Ws[0].copy_(_mT(self.best[0]))
        H.copy_(self.best[1])

    def _as_factor(self, beta: torch.Tensor, active) -> torch.Tensor:
        """``β`` per matrix, broadcastable over a factor; 0 for a batch's frozen matrices."""
        b = beta.to(self.V.device, self.V.dtype).reshape(*beta.shape, 1, 1)
        if active is not None:
            b = b * active.to(b.dtype).reshape(b.shape)
        return b


def _where(flags: torch.Tensor, device: torch.device) -> Index | None:
    """An index of the matrices whose (host) ``flags`` are set: ``...`` for all of them (one
    matrix, or a whole batch: a plain copy), None for none, else their batch indices. A
    batch's pairs change only where these are set, in place (a broadcast ``torch.where``
    over the whole batch costs several times more: few matrices restart or improve)."""
    if not bool(flags.any()):
        return None
    if bool(flags.all()):
        return ...
    return tuple(i.to(device) for i in flags.nonzero(as_tuple=True))


__all__ = ["Extrapolation", "ExtrapolatedSolver"]
