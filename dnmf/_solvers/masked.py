"""The block solvers of `dnmf._solvers.hals` with a mask (β = 2): masked HALS by filling in.

With weights ``M`` in [0, 1] (0 = missing) the loss is ``½ Σ M ⊙ (V − W1 … Wk H)²``. Before
each block's update the data's missing part is filled in from the current model ``Λ``,

    V̂ = M ⊙ V + (1 − M) ⊙ Λ,

and the block takes the update of the unmasked solver against ``V̂`` (HALS for ``W1`` and
``H``, exact coordinate descent for a middle layer, or the multiplicative step for
``rule='mu'``). ``½‖V̂ − X‖²`` majorizes the masked loss and equals it at the current model
(for weights in [0, 1]: ``M (v − x)² ≤ (M v + (1 − M) λ − x)² + …`` up to a constant that
vanishes at ``x = λ``), so every block update is a majorization–minimization step: the masked
loss never increases (an EM step for binary masks). With an all-ones mask ``V̂ = V`` and each
update is the unmasked one.

Weighted HALS (every row of ``W1`` and column of ``H`` against its own Gram matrix of the
entries it observes) was tried first: it reaches a given training loss in fewer iterations,
but the exact minimizer along a direction that only missing entries see is unbounded, and it
moved whole components onto held-out entries (held-out losses orders of magnitude above the
others' in some fits, and a wrong rank chosen); filling in keeps the missing entries at the
model's own prediction, so nothing pulls them away (docs/notes.md, "Masked HALS").

Each block costs one product ``Λ = P W S`` more than the unmasked update (``m × n`` work); the
loss ``½ Σ M (V − P H)²`` comes from the ``Λ`` of the next sweep's first fill. A mask needs
the whole ``V`` in one process (no column shards).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .extrapolation import ExtrapolatedSolver
from .hals import BlockSolver
from .hals_kernels import sweep_cost
from .linalg import _chain, _mm, _mT, _prod


class MaskedBlockSolver(BlockSolver):
    """`BlockSolver` with a mask: each block updated against the data filled in from the
    current model (see the module docstring)."""

    def __init__(
        self,
        V: torch.Tensor,
        Ws: list[torch.Tensor],
        H: torch.Tensor,
        pen,
        update: list[bool],
        *,
        mask: torch.Tensor,
        rule: str = "hals",
        accel=None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if reduce is not None:
            raise ValueError("a mask needs the whole V in one process (no column shards)")
        self.mask = mask
        super().__init__(V, Ws, H, pen, update, rule=rule, accel=accel, reduce=None)

    def _prepare(self, V, Ws, H, update, reduce) -> list[float]:
        """``M ⊙ V`` and ``Σ M V²``, the model's buffer, and each block's ``ρ``: its two
        products (the model ``Λ`` and the filled data's product) over one pass."""
        self.MV = self.mask * V
        self.vnorm2 = (self.MV * V).sum(dim=(-2, -1), dtype=torch.float64)
        self.L: torch.Tensor | None = None  # Λ, then V̂, of the block being updated
        self.model: tuple | None = None  # (Λ = P H, its loss) of the current factors
        m, n = V.shape[-2], V.shape[-1]
        ranks = [W.shape[-1] for W in Ws]
        r1, rk = ranks[0], ranks[-1]
        rows_loop = self.rule == "hals"
        rho = [1.0 + (2 * m * n * r1 + n * rk * r1) / sweep_cost(rows_loop, r1, m)]
        rho += [0.0] * (self.k - 1)  # middle layers: one pass per fill (the fill changes)
        rho.append(1.0 + (2 * m * n * rk + m * rk * rk) / sweep_cost(rows_loop, rk, n))
        return rho

    # -- the filled-in data ------------------------------------------------------------------
    def _model(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """``Λ = left @ right`` into the model buffer."""
        self.L = _mm(left, right, out=self.L)
        return self.L

    def _filled(self, L: torch.Tensor) -> torch.Tensor:
        """``V̂ = M ⊙ V + (1 − M) ⊙ Λ``, in place of ``Λ``."""
        return torch.addcmul(L, L, self.mask, value=-1.0, out=L).add_(self.MV)

    def _data_loss(self, L: torch.Tensor) -> torch.Tensor:
        """``½ Σ M (V − Λ)²`` per matrix, summed in float64 (``Λ`` is left as it is)."""
        R = torch.sub(self.V, L)
        R.square_().mul_(self.mask)
        return 0.5 * R.sum(dim=-1).sum(dim=-1, dtype=torch.float64)

    # -- the sweep ---------------------------------------------------------------------------
    def sweep(self, Ws, H, active, need_loss: bool):
        k, upd = self.k, self.update
        if any(upd[:k]):
            T: list[torch.Tensor | None] = [None] * k  # W(l+1)…Wk
            for l in range(k - 2, -1, -1):
                nxt = T[l + 1]
                T[l] = Ws[l + 1] if nxt is None else _mm(Ws[l + 1], nxt)
            if upd[0]:
                S = H if T[0] is None else _mm(T[0], H)
                Ws = [self._updated_w1_filled(Ws[0], S, active), *Ws[1:]]
            P = Ws[0]
            for l in range(1, k):
                if upd[l]:
                    Tl = T[l]
                    self._middle_step(P, Ws[l], H if Tl is None else _mm(Tl, H), l, active)
                P = _mm(P, Ws[l])
        else:
            if self.fixed is None:
                self.fixed = (_chain(Ws), None)
            P = self.fixed[0]
        if upd[k]:
            self._h_block(P, H, active)
        self.model = None
        if not need_loss:
            return None
        L = self._model(P, H)
        data = self._data_loss(L)
        self.model = (L, data)  # the next sweep's first fill starts from this Λ
        return data + self.pen.value([*Ws, H])

    def _updated_w1_filled(self, W1, S, active) -> torch.Tensor:
        """``W1`` after its block update against the suffix ``S`` (``r1 × n``), as a view of the
        kept ``W1ᵀ`` (see `BlockSolver._updated_w1`)."""
        if self.W1t is None:
            self.W1t = _mT(W1).contiguous()
        self._w_block(S, active)
        return _mT(self.W1t)

    def _w_block(self, S, active) -> None:
        """Update ``W1ᵀ`` in place against ``S`` and the data filled in from ``W1 S``: Gram
        ``S Sᵀ``, linear term ``S V̂ᵀ``."""
        assert self.W1t is not None
        L = self.model[0] if self.model is not None else self._model(_mT(self.W1t), S)
        C = _mT(_mm(self._filled(L), _mT(S)))
        self.model = None
        self._block(self.W1t, _mm(S, _mT(S)), C, 0, active)

    def _middle_step(self, P, W, S, idx: int, active) -> None:
        """A middle layer ``W`` (model ``P W S``) against the filled data: exact coordinate
        descent on ``½‖V̂ − P W S‖²`` (the multiplicative step with ``rule='mu'``)."""
        B = _mm(_mT(P), _mm(self._filled(self._model(_mm(P, W), S)), _mT(S)))
        Q, R = _mm(_mT(P), P), _mm(S, _mT(S))
        if self.rule == "mu":
            self._step(W, B, _mm(_mm(Q, W), R), idx, active)
            return
        self._middle(W, Q, R, B, idx, active)

    def _h_block(self, P, H, active) -> None:
        """Update ``H`` in place against the prefix ``P`` and the data filled in from
        ``P H``: Gram ``Pᵀ P``, linear term ``Pᵀ V̂``."""
        C = _mm(_mT(P), self._filled(self._model(P, H)))
        self._block(H, _mm(_mT(P), P), C, self.k, active)

    def loss(self, Ws, H) -> torch.Tensor:
        """Loss of the current factors (used once, before the first sweep)."""
        L = self._model(_prod(Ws), H)
        data = self._data_loss(L)
        self.model = (L, data)
        return data + self.pen.value([*Ws, H])


class MaskedExtrapolatedSolver(ExtrapolatedSolver, MaskedBlockSolver):
    """`ExtrapolatedSolver` (one layer, no penalties) with a mask: the same extrapolation,
    each block updated against the data filled in from the current pair (`MaskedBlockSolver`);
    the loss of the extrapolated pair ``(Ŵ, Hn)`` costs one more model product."""

    def _w_block(self, H, active) -> None:
        self.model = None  # the last model was that of the pair before the extrapolation
        MaskedBlockSolver._w_block(self, H, active)

    def _h_block_loss(self, W, H, active) -> torch.Tensor:
        self._h_block(W, H, active)
        data = self._data_loss(self._model(W, H))
        return data + self.pen.value([W, H])


__all__ = ["MaskedBlockSolver", "MaskedExtrapolatedSolver"]
