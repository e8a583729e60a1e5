"""Online (minibatch) dictionary updates for ``V ≈ W1 W2 … Wk H`` from accumulated statistics.

A minibatch is a block of columns ``Vc`` (``m × b``) with its codes ``Hc`` (``rk × b``),
solved with the dictionary ``P = W1…Wk`` held fixed (by the caller, `dnmf.online`). What
this module keeps between minibatches, and how it moves the dictionary, with ``ρ`` the
weight the caller gives the statistics so far (the forgetting factor):

* `FrobeniusStatistics` (β = 2; Mairal, Bach, Ponce & Sapiro 2010): the sufficient
  statistics ``A ← ρA + Hc Hcᵀ`` (``rk × rk``) and ``B ← ρB + Vc Hcᵀ`` (``m × rk``), both
  starting at 0, then one pass over the layers on the surrogate
  ``½ tr(Pᵀ P A) − tr(Pᵀ B)``, which is the loss ``½ Σ ρ^(…) ‖Vc − P Hc‖²`` of every
  minibatch seen (with its codes as they were solved), up to a constant. With the prefix
  ``Pl = W1…W(l-1)`` and the suffix ``Sl = W(l+1)…Wk`` (identity where empty), layer ``l``'s
  surrogate is ``½⟨Q Wl R, Wl⟩ − ⟨Plᵀ B Slᵀ, Wl⟩`` with ``Q = Plᵀ Pl`` and ``R = Sl A Slᵀ``.
  ``rule='hals'``: ``W1`` by one HALS pass over its columns (`hals_rows` on ``W1ᵀ`` with
  ``G = R``, ``C = Sl Bᵀ``), every later layer by one pass of exact coordinate descent over
  its entries (`cd_entries`), in the order W1, …, Wk, each seeing the layers before it
  already updated: the blocks of `dnmf._solvers.hals.BlockSolver`, with ``H Hᵀ`` and
  ``V Hᵀ`` replaced by ``A`` and ``B``. ``rule='mu'``: the multiplicative step of the same
  surrogate, ``Wl ← Wl ⊙ (Plᵀ B Slᵀ) / (Q Wl R)`` (`dnmf._solvers.update`'s step).
* `KLStatistics` (β = 1; Lefèvre, Bach & Févotte 2011, as scikit-learn's ``MiniBatchNMF``):
  the KL surrogate has no statistics shared by the layers, so every layer keeps its own
  numerator and denominator, ``Al`` (starting at ``Wl``) and ``Bl`` (starting at ones). For
  each layer in order, with ``Λ = W1…Wk Hc`` from the current factors (the layers before
  ``l`` already updated), ``Pl`` as above and ``Sl = W(l+1)…Wk Hc``:
  ``Al ← ρAl + (Plᵀ (Vc / max(Λ, eps)) Slᵀ) ⊙ Wl``, ``Bl ← ρBl + (Plᵀ 1)(Sl 1)ᵀ`` (a zero
  column sum of ``Pl`` or row sum of ``Sl`` counted as 1, as scikit-learn counts a zero sum of
  the codes) and ``Wl ← Al / Bl``, entries below float64's machine epsilon set to 0. One
  layer is scikit-learn's update of its ``components_`` (``_multiplicative_update_h`` with
  ``A``, ``B`` and ``rho``) in the transposed orientation. ``Λ`` is formed only at the
  nonzeros of a sparse ``Vc`` (`SparseMatrix.sample`).

Pure tensor code; the factors are updated in place.
"""

from __future__ import annotations

import numpy as np
import torch

from .hals_kernels import cd_entries, hals_rows
from .linalg import _mT, _prod
from .loss import EPSILON, Penalties
from .sparse import Data, SparseMatrix
from .update import SolverBase

#: Dictionary entries below this are set to 0 after a β = 1 update (scikit-learn's rule for
#: the components of ``MiniBatchNMF`` with β ≤ 1).
KL_TINY = float(np.finfo(np.float64).eps)
#: The dictionary updates per minibatch.
RULES = ("hals", "mu")
#: β = 2: passes over the layers per minibatch at most, and the stopping ratio of their
#: changes (Gillis & Glineur's δ for HALS). A pass reads only ``A`` and ``B`` (``O(m·r1·rk)``,
#: no data), far less than the minibatch's code solve, so the dictionary is moved close to
#: the surrogate's minimum (Mairal et al. iterate to convergence too).
DICT_MAX_PASSES = 10
DICT_DELTA = 0.1


def _suffixes(Ws: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """``W(l+1)…Wk`` for every layer ``l`` (``None`` for the last: the identity)."""
    k = len(Ws)
    T: list[torch.Tensor | None] = [None] * k
    for l in range(k - 2, -1, -1):
        nxt = T[l + 1]
        T[l] = Ws[l + 1] if nxt is None else Ws[l + 1] @ nxt
    return T


def _times_t(V: Data, H: torch.Tensor) -> torch.Tensor:
    """``V Hᵀ`` for a dense or sparse ``V`` (``m × r``)."""
    if isinstance(V, SparseMatrix):
        return V.mm(_mT(H))
    return V @ _mT(H)


class FrobeniusStatistics(SolverBase):
    """β = 2: ``A`` and ``B`` of the minibatches so far, and the dictionary update from them
    (see the module docstring)."""

    def __init__(self, Ws: list[torch.Tensor], rule: str = "hals") -> None:
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        k = len(Ws)
        super().__init__(None, Penalties.none(k + 1), [True] * k + [False], EPSILON, 2.0)
        self.rule, self.k = rule, k
        m, rk = Ws[0].shape[0], Ws[-1].shape[1]
        self.A = Ws[0].new_zeros((rk, rk))
        self.B = Ws[0].new_zeros((m, rk))

    def accumulate(self, V: Data, H: torch.Tensor, rho: float) -> None:
        """``A ← ρA + H Hᵀ``, ``B ← ρB + V Hᵀ``."""
        self.A.mul_(rho).add_(H @ _mT(H))
        self.B.mul_(rho).add_(_times_t(V, H))

    def step(self, V: Data, Ws: list[torch.Tensor], H: torch.Tensor, rho: float) -> None:
        """One minibatch: `accumulate`, then `update_dictionary`."""
        self.accumulate(V, H, rho)
        self.update_dictionary(Ws)

    def update_dictionary(self, Ws: list[torch.Tensor]) -> None:
        """Passes over the layers on the surrogate of ``A`` and ``B``, in place: at most
        `DICT_MAX_PASSES`, ending after the first pass that changes ``W1…Wk`` by at most
        `DICT_DELTA` times what the first pass did (Frobenius norms)."""
        first = 0.0
        for q in range(DICT_MAX_PASSES):
            before = _prod(Ws).clone()
            self._pass(Ws)
            change = float((_prod(Ws) - before).square().sum(dtype=torch.float64))
            if q == 0:
                first = change
            elif change <= DICT_DELTA**2 * first:
                return

    def _pass(self, Ws: list[torch.Tensor]) -> None:
        """One pass over the layers W1, …, Wk (see the module docstring)."""
        A, B = self.A, self.B
        T = _suffixes(Ws)
        R: list[torch.Tensor] = [A] * self.k  # Sl A Slᵀ, from the layers after l (not yet updated)
        for l in range(self.k - 2, -1, -1):
            Wn = Ws[l + 1]
            R[l] = Wn @ R[l + 1] @ _mT(Wn)
        T0 = T[0]
        C = _mT(B) if T0 is None else T0 @ _mT(B)  # (B S1ᵀ)ᵀ, r1 × m
        W1 = Ws[0]
        if self.rule == "hals":
            W1t = _mT(W1).contiguous()  # the row loop updates rows: W1ᵀ's
            hals_rows(W1t, R[0], C)
            W1.copy_(_mT(W1t))
        else:
            self._step(W1, _mT(C).contiguous(), W1 @ R[0], 0, None)
        PtB = _mT(W1) @ B  # Plᵀ B of the next layer, r1 × rk
        Q = _mT(W1) @ W1
        for l in range(1, self.k):
            W, Tl = Ws[l], T[l]
            Bl = PtB if Tl is None else PtB @ _mT(Tl)
            if self.rule == "hals":
                cd_entries(W, Q, R[l], Bl)
            else:
                self._step(W, Bl, Q @ W @ R[l], l, None)
            PtB = _mT(W) @ PtB
            Q = _mT(W) @ Q @ W


class KLStatistics(SolverBase):
    """β = 1: every layer's numerator ``Al`` and denominator ``Bl``, and the update
    ``Wl ← Al / Bl`` (see the module docstring)."""

    def __init__(self, Ws: list[torch.Tensor], eps: float = EPSILON) -> None:
        k = len(Ws)
        super().__init__(None, Penalties.none(k + 1), [True] * k + [False], eps, 1.0)
        self.k = k
        self.A = [W.clone() for W in Ws]
        self.B = [torch.ones_like(W) for W in Ws]

    def step(self, V: Data, Ws: list[torch.Tensor], H: torch.Tensor, rho: float) -> None:
        """One minibatch ``V`` with its codes ``H``: every layer in order, in place."""
        T = _suffixes(Ws)
        P: torch.Tensor | None = None
        for l in range(self.k):
            W, Tl = Ws[l], T[l]
            S = H if Tl is None else Tl @ H
            left = W if P is None else P @ W
            N = self._sandwich(self._ratio(V, left, S), P, S)
            D = _ones_floor(P.sum(dim=0) if P is not None else None, W.shape[0], W).unsqueeze(
                -1
            ) * _ones_floor(S.sum(dim=1), W.shape[1], W).unsqueeze(0)
            self.A[l].mul_(rho).add_(N.mul_(W))
            self.B[l].mul_(rho).add_(D)
            torch.div(self.A[l], self.B[l], out=W)
            W.masked_fill_(W < KL_TINY, 0.0)
            P = W if P is None else P @ W

    def _ratio(self, V: Data, left: torch.Tensor, right: torch.Tensor) -> Data:
        """``V / max(left @ right, eps)``: at the nonzeros only for a sparse ``V``."""
        if isinstance(V, SparseMatrix):
            lam = V.sample(left, right).clamp_min_(self.eps)
            return V.with_values(torch.div(V.values, lam, out=lam))
        return V / (left @ right).clamp_min_(self.eps)

    @staticmethod
    def _sandwich(Z: Data, P: torch.Tensor | None, S: torch.Tensor) -> torch.Tensor:
        """``Pᵀ Z Sᵀ`` (``P = None``: the identity)."""
        ZS = _times_t(Z, S)
        return ZS if P is None else _mT(P) @ ZS


def _ones_floor(sums: torch.Tensor | None, size: int, like: torch.Tensor) -> torch.Tensor:
    """Sums with their zeros counted as 1 (``None``: ``size`` ones)."""
    if sums is None:
        return torch.ones(size, dtype=like.dtype, device=like.device)
    return torch.where(sums == 0, torch.ones_like(sums), sums)


__all__ = [
    "DICT_DELTA",
    "DICT_MAX_PASSES",
    "KL_TINY",
    "RULES",
    "FrobeniusStatistics",
    "KLStatistics",
]
