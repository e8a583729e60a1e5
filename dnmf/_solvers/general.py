"""The solver for any β and an optional mask: forms ``Λ`` and one ``m × n`` work buffer.

Both buffers are reused across layers and iterations. With column shards (``reduce`` set)
every W-layer's numerator and denominator, and the loss's data term and ``H``'s penalty, are
summed over the shards.
"""

from __future__ import annotations

import torch

from .linalg import _chain, _mm, _mT
from .loss import beta_divergence
from .update import SolverBase


class GeneralSolver(SolverBase):
    """Any β, optional mask: one Λ buffer and one elementwise work buffer of V's size."""

    def __init__(self, V, Ws, H, beta, mask, pen, update, eps, reduce=None):
        super().__init__(V, pen, update, eps, beta, reduce)
        self.k = len(Ws)
        self.mask = mask
        self.L = torch.empty_like(V, memory_format=torch.contiguous_format)
        self.Z = torch.empty_like(self.L)
        self.L_valid = False  # does self.L hold Λ for the current factors?
        # β = 2 with a mask: the numerator's elementwise part M ⊙ V never changes.
        self.MV = mask * V if (beta == 2 and mask is not None) else None

    def _lambda(self, P, W, S) -> None:
        left = W if P is None else P @ W
        _mm(left, S, out=self.L)
        self.L_valid = True

    @staticmethod
    def _sandwich(X, P, S) -> torch.Tensor:
        """Pᵀ X Sᵀ (``None`` = identity), multiplying X by the thinner side first."""
        if P is None:
            return X @ _mT(S)
        if S is None:
            return _mT(P) @ X
        if S.shape[-2] <= P.shape[-1]:
            return _mT(P) @ (X @ _mT(S))
        return (_mT(P) @ X) @ _mT(S)

    def _num_den(self, P, S) -> tuple[torch.Tensor, torch.Tensor]:
        V, L, Z, M, beta, eps = self.V, self.L, self.Z, self.mask, self.beta, self.eps
        # Denominator first: it needs Λ before the numerator's floor is applied.
        if beta == 1 and M is None:
            # Pᵀ 1 Sᵀ is an outer product of column sums of P and row sums of S.
            cs = P.sum(dim=-2) if P is not None else V.new_ones((*V.shape[:-2], V.shape[-2]))
            rs = S.sum(dim=-1) if S is not None else V.new_ones((*V.shape[:-2], V.shape[-1]))
            den = cs.unsqueeze(-1) * rs.unsqueeze(-2)
        else:
            if beta == 1:
                Zd = M
            elif beta == 2:
                Zd = torch.mul(L, M, out=Z) if M is not None else L
            else:
                if beta < 1:
                    torch.clamp(L, min=eps, out=Z)
                    Z.pow_(beta - 1)
                else:
                    torch.pow(L, beta - 1, out=Z)
                if M is not None:
                    Z.mul_(M)
                Zd = Z
            den = self._sandwich(Zd, P, S)
        if beta == 2:
            Zn = self.MV if self.MV is not None else V
        else:
            L.clamp_min_(eps)  # Λ is stale after this step anyway
            self.L_valid = False
            if beta == 1:
                torch.div(V, L, out=Z)
            elif beta == 0:
                torch.mul(L, L, out=Z)
                torch.div(V, Z, out=Z)
            else:
                torch.pow(L, beta - 2, out=Z)
                Z.mul_(V)
            if M is not None:
                Z.mul_(M)
            Zn = Z
        num = self._sandwich(Zn, P, S)
        return num, den

    def sweep(self, Ws, H, active, need_loss: bool):
        k = self.k
        T: list[torch.Tensor | None] = [None] * k
        for l in range(k - 2, -1, -1):
            T[l] = Ws[l + 1] if T[l + 1] is None else Ws[l + 1] @ T[l + 1]
        P = None
        for l in range(k):
            W = Ws[l]
            if self.update[l]:
                S = H if T[l] is None else T[l] @ H
                if not self.L_valid:
                    self._lambda(P, W, S)
                num, den = self._num_den(P, S)
                if self.reduce is not None:  # W's update sums over every column of V
                    num, den = self.reduce(num.contiguous()), self.reduce(den.contiguous())
                self._step(W, num, den.contiguous(), l, active)
                self.L_valid = False
            P = W if P is None else P @ W
        if self.update[k]:
            if not self.L_valid:
                self._lambda(None, P, H)
            num, den = self._num_den(P, None)
            self._step(H, num, den.contiguous(), k, active)
            self.L_valid = False
        return self.loss(Ws, H) if need_loss else None

    def loss(self, Ws, H) -> torch.Tensor:
        if not self.L_valid:
            self._lambda(None, _chain(Ws), H)
        div = beta_divergence(self.V, self.L, self.beta, self.mask, self.eps)
        return self._objective(div, Ws, H)
