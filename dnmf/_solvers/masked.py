"""The block solvers of `dnmf._solvers.hals` with a mask: weighted HALS (β = 2).

With weights ``M`` (0 = missing) the loss is ``½ Σ M ⊙ (V − W1 … Wk H)²``. A column ``i`` of a
factor fitted to the rows of ``V`` then sees only the entries its row observes, so it has
its own Gram matrix (Gillis & Glineur's weighted HALS):

* ``W1`` (rows of ``W1ᵀ``): column ``i`` of ``W1ᵀ`` (row ``i`` of ``W1``) has the Gram
  ``S diag(M_i) Sᵀ`` of the suffix ``S = W2 … Wk H``, and the linear term ``S (M ⊙ V)ᵀ``;
* ``H``: column ``j`` has ``Pᵀ diag(M_:j) P`` (``P = W1 … Wk``) and ``Pᵀ (M ⊙ V)``;
* a middle layer ``Wl`` (deep models): its entries are coupled through every observed entry
  at once, so no small Gram matrix gives their exact update. It takes the exact coordinate
  descent of the unmasked solver on ``V̂ = M ⊙ V + (1 − M) ⊙ P Wl S``, the data with its
  missing entries filled in from the current model: a majorizer of the masked loss that
  equals it at the current ``Wl`` (an EM step), so the masked loss never increases.

All Gram matrices of a block come from one product (`dnmf._solvers.hals_kernels.weighted_grams`:
``r²`` products of the other factor's columns against the mask, ``r²·m·n`` multiply-adds), and
a pass over the block (`dnmf._solvers.hals_kernels.whals_rows`) makes every entry the exact
minimizer of the masked loss with the others fixed, so the loss never increases. With an
all-ones mask every column's Gram is the same ``S Sᵀ`` and the pass is plain HALS. The loss
comes from the same Gram matrices: ``½(Σ M V² − 2⟨Pᵀ(M ⊙ V), H⟩ + Σ_j H_jᵀ G_j H_j)``.

``rule='mu'`` (``'mu-acc'`` with a mask) takes the masked multiplicative step instead, its
denominator from the same Gram matrices (``G_i x_i`` is row ``i`` of ``(M ⊙ W H) Hᵀ``), so
the repeated steps of the accelerated variant cost no product with ``V``; its middle layers
take the masked multiplicative step ``Pᵀ (M ⊙ V) Sᵀ / Pᵀ (M ⊙ P Wl S) Sᵀ``. The inner
repetitions and the extrapolation (`MaskedExtrapolatedSolver`) are those of the unmasked
solvers. A mask needs the whole ``V`` in one process (no column shards).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .extrapolation import ExtrapolatedSolver
from .hals import BlockSolver
from .hals_kernels import gram_times, sweep_cost, weighted_grams
from .linalg import _chain, _mm, _mT


class MaskedBlockSolver(BlockSolver):
    """`BlockSolver` with a mask: weighted HALS (or masked multiplicative steps, ``rule='mu'``)
    for ``W1`` and ``H``, coordinate descent on the filled-in data (or masked multiplicative
    steps) for the middle layers."""

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
        """``M ⊙ V`` and ``Σ M V²`` (the data of every product and of the loss), and each
        block's ``ρ``: its weighted Gram matrices and linear term over one pass."""
        M = self.mask
        self.MV = M * V
        self.vnorm2 = (self.MV * V).sum(dim=(-2, -1), dtype=torch.float64)
        self.L: torch.Tensor | None = None  # P Wl S of a middle layer's step (deep models)
        m, n = V.shape[-2], V.shape[-1]
        ranks = [W.shape[-1] for W in Ws]
        r1, rk = ranks[0], ranks[-1]
        rows_loop = self.rule == "hals"
        rho = [1.0 + (m * n * r1 * (r1 + 1)) / (sweep_cost(rows_loop, r1, m) + m * r1 * r1)]
        rho += [0.0] * (self.k - 1)  # middle layers: one pass per product (the fill changes)
        rho.append(1.0 + (m * n * rk * (rk + 1)) / (sweep_cost(rows_loop, rk, n) + n * rk * rk))
        return rho

    # -- the sweep ---------------------------------------------------------------------------
    def sweep(self, Ws, H, active, need_loss: bool):
        k, upd = self.k, self.update
        if any(upd[:k]):
            self.fixed = None
            T: list[torch.Tensor | None] = [None] * k  # W(l+1)…Wk
            for l in range(k - 2, -1, -1):
                nxt = T[l + 1]
                T[l] = Ws[l + 1] if nxt is None else _mm(Ws[l + 1], nxt)
            if upd[0]:
                S = H if T[0] is None else _mm(T[0], H)
                Ws = [self._masked_w1(Ws[0], S, active), *Ws[1:]]
            P = Ws[0]
            for l in range(1, k):
                if upd[l]:
                    Tl = T[l]
                    self._middle_step(P, Ws[l], H if Tl is None else _mm(Tl, H), l, active)
                P = _mm(P, Ws[l])
            C, G = self._h_operands(P)
        else:
            if self.fixed is None:
                self.fixed = self._h_operands(_chain(Ws))
            C, G = self.fixed
        if upd[k]:
            self._block(H, G, C, k, active)
        return self._loss(C, G, Ws, H) if need_loss else None

    def _masked_w1(self, W1, S, active) -> torch.Tensor:
        """``W1`` after its block update against the suffix ``S`` (``r1 × n``), as a view of the
        kept ``W1ᵀ`` (see `BlockSolver._updated_w1`)."""
        if self.W1t is None:
            self.W1t = _mT(W1).contiguous()
        self._w_block_against(S, active)
        return _mT(self.W1t)

    def _w_block_against(self, S, active) -> None:
        """Update ``W1ᵀ`` in place: every row of ``W1`` against its own Gram ``S diag(M_i) Sᵀ``
        and linear term ``S (M ⊙ V)ᵀ``."""
        assert self.W1t is not None
        G = weighted_grams(S, self.mask)
        C = _mm(S, _mT(self.MV))
        self._block(self.W1t, G, C, 0, active)

    def _middle_step(self, P, W, S, idx: int, active) -> None:
        """A middle layer ``W`` (model ``P W S``): exact coordinate descent on the loss with
        the missing entries filled in from the current model, ``V̂ = M ⊙ V + (1 − M) ⊙ P W S``
        (a majorizer of the masked loss that touches it at ``W``: the masked loss never
        increases, and with an all-ones mask it is the unmasked update); with ``rule='mu'``
        the masked multiplicative step ``Pᵀ (M ⊙ V) Sᵀ / Pᵀ (M ⊙ P W S) Sᵀ``."""
        M = self.mask
        L = self.L = _mm(_mm(P, W), S, out=self.L)
        if self.rule == "mu":
            num = _mm(_mT(P), _mm(self.MV, _mT(S)))
            den = _mm(_mT(P), _mm(L.mul_(M), _mT(S)))
            self._step(W, num, den, idx, active)
            return
        torch.addcmul(L, L, M, value=-1.0, out=L).add_(self.MV)  # V̂
        B = _mm(_mT(P), _mm(L, _mT(S)))
        self._middle(W, _mm(_mT(P), P), _mm(S, _mT(S)), B, idx, active)

    def _h_operands(self, P) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Pᵀ (M ⊙ V), Gram of every column of H)`` for the prefix ``P = W1 … Wk``."""
        Pt = _mT(P)
        return _mm(Pt, self.MV), weighted_grams(Pt, self.mask, transposed=True)

    def _loss(self, C, G, Ws, H) -> torch.Tensor:
        # ½(Σ M V² − 2⟨Pᵀ(M ⊙ V), H⟩ + Σ_j H_jᵀ G_j H_j) + penalties, sums in float64
        cross = torch.mul(C, H).sum(dim=-1).sum(dim=-1, dtype=torch.float64)
        quad = torch.mul(gram_times(G, H), H).sum(dim=-1).sum(dim=-1, dtype=torch.float64)
        data = (0.5 * (self.vnorm2 - 2.0 * cross + quad)).clamp_min(0.0)
        return data + self.pen.value([*Ws, H])

    def loss(self, Ws, H) -> torch.Tensor:
        """Loss of the current factors (used once, before the first sweep)."""
        C, G = self._h_operands(_chain(Ws))
        return self._loss(C, G, Ws, H)


class MaskedExtrapolatedSolver(ExtrapolatedSolver, MaskedBlockSolver):
    """`ExtrapolatedSolver` (one layer, no penalties) with a mask: the same extrapolation,
    each block updated by weighted HALS (`MaskedBlockSolver`)."""

    def _w_block(self, H, active) -> None:
        self._w_block_against(H, active)

    def _h_block_loss(self, W, H, active) -> torch.Tensor:
        C, G = self._h_operands(W)
        self._block(H, G, C, 1, active)
        return self._loss(C, G, [W], H)


__all__ = ["MaskedBlockSolver", "MaskedExtrapolatedSolver"]
