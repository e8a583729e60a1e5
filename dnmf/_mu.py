"""Multiplicative-update solvers for ``V ≈ W1 W2 … Wk H`` (pure tensor code, no autograd).

Notation: ``V`` is ``(…, m, n)`` (a leading batch dimension is optional), ``W1`` is
``(…, m, r1)``, ``Wl`` is ``(…, r(l-1), rl)`` and ``H`` is ``(…, rk, n)``. For layer ``l`` the
model reads ``Λ = P Wl S`` with the prefix ``P = W1…W(l-1)`` and the suffix
``S = W(l+1)…Wk H``; its multiplicative update (Févotte & Idier 2011) is

    Wl ← Wl ⊙ [Pᵀ (M ⊙ V ⊙ Λ^(β-2)) Sᵀ / (Pᵀ (M ⊙ Λ^(β-1)) Sᵀ + l1 + l2·Wl)]^γ(β)

with the mask ``M`` (ones when absent) and γ(β) = 1/(2-β) for β < 1, 1 for 1 ≤ β ≤ 2 and
1/(β-1) for β > 2. Factors are updated in the order W1, …, Wk, H (so one layer is exactly
scikit-learn's ``_fit_multiplicative_update``).

Two solvers share that update:

* ``_FrobeniusSolver`` (β = 2, no mask): touches ``V`` only through the two products ``V Hᵀ``
  and ``Pᵀ V`` per sweep. On the CPU, when ``r1 ≤ rk``, both come from one pass over blocks of
  rows of ``V``: ``V_i Hᵀ`` gives the rows ``W1_i`` their update (it needs nothing else from
  other rows), and ``W1_iᵀ V_i`` is accumulated while ``V_i`` is still in cache; then
  ``PᵀV = (W2…Wk)ᵀ (W1ᵀ V)``. Same updates, in the same order, read from memory once.
  With ``Sᵀ = Hᵀ Tᵀ`` (``T = W(l+1)…Wk``) every layer's numerator is
  ``(Pᵀ V Hᵀ) Tᵀ`` and every denominator ``(PᵀP) Wl (S Sᵀ)``, all built from carried
  ``(m+n)·r``-sized products and small Gram matrices. The loss comes for free from
  ``‖V‖² − 2⟨PᵀV, H⟩ + ⟨PᵀP, H Hᵀ⟩``, accumulated in float64. No ``m × n`` temporary exists.
* ``_GeneralSolver`` (any β, optional mask): forms ``Λ`` and one elementwise ``m × n`` work
  buffer, reused across layers and iterations.

Both update the factors in place and freeze converged matrices of a batch (their ratio is
set to 1), so a converged matrix stops changing while the others go on.

Column shards (``dnmf.distributed``): with ``reduce`` set, ``V`` and ``H`` hold only some of
the columns and ``reduce(t)`` sums ``t`` over all shards (an ``all_reduce``). Every quantity
that sums over columns goes through it: ``‖V‖²``, ``V Hᵀ`` and ``H Hᵀ`` (β = 2), the W-layer
numerators and denominators (other β), and the loss's data term and ``H`` penalty. The
``W`` factors are then replicated and updated identically everywhere; ``H`` stays local.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

#: scikit-learn's floor for Λ and for zero denominators (float32 machine epsilon).
EPSILON = float(np.finfo(np.float32).eps)
#: Factors below this are set to 0 for β < 1 (W) / β ≤ 1 (H), as scikit-learn does for stability.
_TINY = float(np.finfo(np.float64).eps)
#: Rows of ``V`` per block of the fused first-layer pass (β = 2, CPU): blocks of about this many
#: bytes stay in the last-level cache between ``V_i Hᵀ`` and ``W1_iᵀ V_i``. On the project's
#: CPU (32 MiB L3; 4096 × 2048 float32, rank 64) 8 MiB blocks were 3–9 % faster than the two
#: whole products with one thread and within the noise with two; 4 MiB was better with one
#: thread and worse with two (README, dnmf *Speed*).
FUSED_BLOCK_BYTES = 8 << 20


def mu_exponent(beta: float) -> float:
    """γ(β) of Févotte & Idier (2011), which makes the multiplicative update monotone."""
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


def _mT(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-1, -2)


def _mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Matrix product; 3-D operands go straight to ``bmm`` (matmul's reshapes cost more than
    the small products of a batch of small matrices)."""
    if a.ndim == 3 and b.ndim == 3 and a.shape[0] == b.shape[0]:
        return torch.bmm(a, b) if out is None else torch.bmm(a, b, out=out)
    return torch.matmul(a, b) if out is None else torch.matmul(a, b, out=out)


def _chain(mats: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """Right-to-left product of small factors (``None`` for the empty product, i.e. identity)."""
    out = None
    for A in reversed(mats):
        out = A if out is None else _mm(A, out)
    return out


@dataclass
class Penalties:
    """L1/L2 weights per factor, in the order (W1, …, Wk, H)."""

    l1: list[float]
    l2: list[float]

    @classmethod
    def none(cls, n_factors: int) -> Penalties:
        return cls([0.0] * n_factors, [0.0] * n_factors)

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


class _Base:
    """What both solvers share: the guarded, in-place multiplicative step."""

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

    def _sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the column shards of ``V`` (``t`` itself for a whole ``V``)."""
        return t if self.reduce is None else self.reduce(t)

    def _objective(self, local: torch.Tensor, Ws, H) -> torch.Tensor:
        """A column-additive data term of this shard plus the penalties, summed over shards."""
        if self.reduce is None:
            return local + self.pen.value([*Ws, H])
        k = len(Ws)
        h_pen = Penalties([self.pen.l1[k]], [self.pen.l2[k]]).value([H])
        w_pen = Penalties(self.pen.l1[:k], self.pen.l2[:k]).value(Ws)
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
        is_H = idx == len(self.update) - 1
        if self.beta < 1 or (is_H and self.beta <= 1):
            small = F < _TINY
            if active is not None:
                small &= active.view(-1, 1, 1)
            F.masked_fill_(small, 0.0)


class _FrobeniusSolver(_Base):
    """β = 2 without a mask: two products with V per sweep, loss from carried Gram matrices."""

    def __init__(self, V, Ws, H, pen, update, eps, reduce=None):
        super().__init__(V, pen, update, eps, 2.0, reduce)
        self.k = len(Ws)
        self.vnorm2 = self._sum(squared_norm(V))
        self.A: torch.Tensor | None = None  # V Hᵀ for the current H
        self.G: torch.Tensor | None = None  # H Hᵀ for the current H
        self.fixed: tuple | None = None  # (PᵀV, PᵀP) while no W changes
        lead = tuple(V.shape[:-2])
        m, n, r1, rk = V.shape[-2], V.shape[-1], Ws[0].shape[-1], H.shape[-2]
        kw = dict(dtype=V.dtype, device=V.device)
        # Preallocated outputs of the products that scale with m or n.
        # V Hᵀ of a batch on the CPU is computed as (H Vᵀ)ᵀ: MKL's batched product with the
        # small rank as the row count ran 2.3× faster than with it as the column count
        # (256 × 64×96, rank 8). A is then a transposed view of a (rk × m) buffer, which makes
        # the W ratio a strided op; net, a whole batched fit ran about 5 % faster.
        self.a_transposed = bool(lead) and V.device.type == "cpu"
        self.bufA = torch.empty((*lead, rk, m) if self.a_transposed else (*lead, m, rk), **kw)
        self.bufN1 = torch.empty((*lead, m, r1), **kw) if self.k > 1 else None
        self.bufD1 = torch.empty((*lead, m, r1), **kw)
        self.bufP = torch.empty((*lead, m, rk), **kw) if self.k > 1 else None
        self.bufPtV = torch.empty((*lead, rk, n), **kw)
        self.bufDH = torch.empty((*lead, rk, n), **kw)
        self.bufG = torch.empty((*lead, rk, rk), **kw)
        self.bufX = torch.empty((*lead, rk, n), **kw)  # PᵀV ⊙ H of the loss, reused
        # The fused first-layer pass (see the module docstring): one row-major CPU matrix (a
        # block of rows is then one slab of memory), every column here (a shard's V Hᵀ must be
        # summed over shards before W1 can use it), and W1ᵀ V no dearer than Pᵀ V. Worth it
        # only when V spans several blocks.
        rows = max(1, FUSED_BLOCK_BYTES // max(1, n * V.element_size()))
        self.fused_rows = (
            rows
            if (
                not lead
                and reduce is None
                and V.device.type == "cpu"
                and V.stride(-1) == 1
                and r1 <= rk
                and m > rows
            )
            else 0
        )
        self.bufW1tV = torch.empty((r1, n), **kw) if self.fused_rows and self.k > 1 else self.bufPtV

    def sweep(self, Ws, H, active, need_loss: bool):
        V, k, upd = self.V, self.k, self.update
        update_ws = any(upd[:k])
        if update_ws:
            self.fixed = None
            fused = bool(self.fused_rows) and upd[0] and upd[k]
            if self.A is None and not fused:
                self.A = self._sum(
                    _mT(_mm(H, _mT(V), out=self.bufA))
                    if self.a_transposed
                    else _mm(V, _mT(H), out=self.bufA)
                )
            if self.G is None:
                self.G = self._sum(_mm(H, _mT(H), out=self.bufG))
            # Suffix factors T_l = W(l+1)…Wk and S_l Sᵀ_l = T_l (H Hᵀ) T_lᵀ, from the
            # not-yet-updated layers to the right of l.
            T: list[torch.Tensor | None] = [None] * k
            SS: list[torch.Tensor] = [self.G] * k
            for l in range(k - 2, -1, -1):
                Wn = Ws[l + 1]
                T[l] = Wn if T[l + 1] is None else _mm(Wn, T[l + 1])
                SS[l] = _mm(_mm(Wn, SS[l + 1]), _mT(Wn))
            if fused:
                W1tV = self._fused_first_layer(Ws[0], H, T[0], SS[0])
            B = self.A  # Pᵀ V Hᵀ, with P = I before the first layer
            Q = None  # Pᵀ P
            for l in range(k):
                W = Ws[l]
                if upd[l] and l == 0 and not fused:
                    self._w1_step(W, B, T[0], SS[0], active)
                elif upd[l] and l > 0:
                    N = B if T[l] is None else _mm(B, _mT(T[l]))
                    D = _mm(_mm(Q, W), SS[l])
                    self._step(W, N, D, l, active)
                if l < k - 1:
                    B = _mm(_mT(W), B)
                Q = _mm(_mT(W), W) if Q is None else _mm(_mT(W), _mm(Q, W))
            Qf = Q
            if not fused:
                PtV = self._ptv(Ws)
            elif k == 1:
                PtV = W1tV
            else:
                PtV = _mm(_mT(_chain(Ws[1:])), W1tV, out=self.bufPtV)
        else:
            if self.fixed is None:
                Qf = None
                for W in Ws:
                    Qf = _mm(_mT(W), W) if Qf is None else _mm(_mT(W), _mm(Qf, W))
                self.fixed = (self._ptv(Ws).clone(), Qf)
            PtV, Qf = self.fixed
        if upd[k]:
            D = _mm(Qf, H, out=self.bufDH)
            self._step(H, PtV, D, k, active)
            self.A = None
            self.G = None
        if not need_loss:
            return None
        if self.G is None:
            self.G = self._sum(_mm(H, _mT(H), out=self.bufG))
        return self._loss(PtV, Qf, Ws, H)

    def _fused_first_layer(self, W1, H, T0, SS0) -> torch.Tensor:
        """One pass over blocks of rows of V: A_i = V_i Hᵀ, the W1_i update, and W1ᵀ V
        accumulated; returns W1ᵀ V (new W1) and leaves A = V Hᵀ (old H) in ``self.A``."""
        V, rows = self.V, self.fused_rows
        A, W1tV = self.bufA, self.bufW1tV
        Ht = _mT(H)
        W1tV.zero_()
        for i in range(0, V.shape[0], rows):
            block = slice(i, i + rows)
            torch.mm(V[block], Ht, out=A[block])
            self._w1_step(W1, A, T0, SS0, None, block)
            W1tV.addmm_(_mT(W1[block]), V[block])
        self.A = A
        return W1tV

    def _w1_step(self, W1, A, T0, SS0, active, rows: slice = slice(None)) -> None:
        """W1's update, for the rows ``rows`` only (its rows are independent), from
        ``A = V Hᵀ``: numerator ``A T0ᵀ`` (``T0 = W2…Wk``), denominator ``W1 (S Sᵀ)``."""
        Ai, Wi = A[..., rows, :], W1[..., rows, :]
        N = Ai if T0 is None else _mm(Ai, _mT(T0), out=self.bufN1[..., rows, :])
        D = _mm(Wi, SS0, out=self.bufD1[..., rows, :])
        self._step(Wi, N, D, 0, active)

    def _ptv(self, Ws) -> torch.Tensor:
        """(W1…Wk)ᵀ V with the cheaper association: one product with V of inner size min(r1, rk)."""
        V, W1, R = self.V, Ws[0], _chain(Ws[1:])
        if R is None:
            return _mm(_mT(W1), V, out=self.bufPtV)
        if W1.shape[-1] <= R.shape[-1]:
            return _mm(_mT(R), _mm(_mT(W1), V), out=self.bufPtV)
        P = _mm(W1, R, out=self.bufP)
        return _mm(_mT(P), V, out=self.bufPtV)

    def _loss(self, PtV, Qf, Ws, H) -> torch.Tensor:
        # ½(‖V‖² − 2⟨PᵀV, H⟩ + ⟨PᵀP, HHᵀ⟩): products in the working dtype, sums in float64.
        # Row sums in the working dtype (cascade summation), the rest in float64: a float64
        # copy of the whole product would cost more than the loss is worth.
        # (a fresh rk × n temporary each iteration cost page faults: 4× the multiply itself)
        cross = torch.mul(PtV, H, out=self.bufX).sum(dim=-1).sum(dim=-1, dtype=torch.float64)
        quad = torch.mul(Qf, self.G).sum(dim=-1).sum(dim=-1, dtype=torch.float64)
        if self.reduce is not None:  # shards: sum ⟨PᵀV, H⟩ (and H's penalty) over the columns
            k = len(Ws)
            h_pen = Penalties([self.pen.l1[k]], [self.pen.l2[k]]).value([H])
            both = self.reduce(
                torch.stack(
                    [cross, torch.as_tensor(h_pen, dtype=torch.float64, device=cross.device)]
                )
            )
            loss = (0.5 * (self.vnorm2 - 2.0 * both[0] + quad)).clamp_min(0.0)
            return loss + both[1] + Penalties(self.pen.l1[:k], self.pen.l2[:k]).value(Ws)
        loss = (0.5 * (self.vnorm2 - 2.0 * cross + quad)).clamp_min(0.0)
        return loss + self.pen.value([*Ws, H])

    def loss(self, Ws, H) -> torch.Tensor:
        """Loss of the current factors (used once, before the first sweep)."""
        Qf = None
        for W in Ws:
            Qf = _mm(_mT(W), W) if Qf is None else _mm(_mT(W), _mm(Qf, W))
        self.G = self._sum(_mm(H, _mT(H), out=self.bufG))
        return self._loss(self._ptv(Ws), Qf, Ws, H)


class _GeneralSolver(_Base):
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


@dataclass
class MUOutcome:
    """What a run of multiplicative updates reports (factors are updated in place)."""

    loss_history: np.ndarray  # (T,) or (T, B), float64
    loss_iters: np.ndarray  # (T,) iteration of each recorded loss (0 = initial factors)
    n_iter: np.ndarray  # () or (B,): iterations run per matrix
    converged: np.ndarray  # () or (B,)
    stopped_by_callback: bool = False
    extra: dict = field(default_factory=dict)


def run_mu(
    V: torch.Tensor,
    Ws: list[torch.Tensor],
    H: torch.Tensor,
    *,
    beta: float = 2.0,
    mask: torch.Tensor | None = None,
    max_iter: int = 200,
    tol: float = 1e-4,
    penalties: Penalties | None = None,
    eps: float = EPSILON,
    update: Sequence[bool] | None = None,
    check_every: int = 10,
    loss_every: int | None = None,
    callback: Callable[[int, object], object] | None = None,
    verbose: bool = False,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> MUOutcome:
    """Run multiplicative updates on checked tensors, updating ``Ws`` and ``H`` in place.

    ``update`` has one flag per factor (W1..Wk, H); frozen factors are kept (e.g. ``H`` alone
    is solved with all ``Ws`` fixed). Every ``check_every`` iterations, a matrix whose loss fell
    by less than ``tol`` relative to the previous check is declared converged (``tol = 0``
    never checks). The loss is recorded every ``loss_every`` iterations (default: every
    iteration for β = 2 without a mask, where it is free; every check otherwise) and always at
    the start and the end. ``callback(n_iter, loss)`` is called whenever a loss is recorded;
    returning ``True`` stops the run.

    ``reduce`` (2-D ``V`` only) makes ``V`` and ``H`` one column shard of a larger problem:
    ``reduce(t)`` must sum ``t`` over all shards in place and return it (``all_reduce``), be
    called collectively, and give every shard the same sum, so that the replicated ``Ws``, the
    loss and therefore every convergence decision agree everywhere.
    """
    k = len(Ws)
    pen = penalties or Penalties.none(k + 1)
    update = [True] * (k + 1) if update is None else list(update)
    batched = V.ndim == 3
    n_mat = V.shape[0] if batched else 1
    if beta == 2 and mask is None:
        solver: _Base = _FrobeniusSolver(V, Ws, H, pen, update, eps, reduce)
        # The loss is free here, but an H-only solve is so cheap that recording it would dominate.
        loss_every = (1 if any(update[:k]) else check_every) if loss_every is None else loss_every
    else:
        solver = _GeneralSolver(V, Ws, H, beta, mask, pen, update, eps, reduce)
        loss_every = check_every if loss_every is None else loss_every

    history = []
    iters = []
    converged = torch.zeros(n_mat, dtype=torch.bool)
    n_iter = torch.full((n_mat,), max_iter, dtype=torch.int64)
    active: torch.Tensor | None = None
    stopped = False
    it = 0
    with torch.no_grad():
        loss = solver.loss(Ws, H)
        history.append(loss)
        iters.append(0)
        prev = loss.reshape(-1).cpu()
        if verbose:
            _report(0, loss)
        for it in range(1, max_iter + 1):
            check = tol > 0 and it % check_every == 0
            need = check or it % loss_every == 0 or it == max_iter
            loss = solver.sweep(Ws, H, active, need)
            if loss is None:
                continue
            history.append(loss)
            iters.append(it)
            if verbose and (check or it == max_iter):
                _report(it, loss)
            if check:
                prev = _mark_converged(loss, prev, tol, converged, n_iter, it)
                if bool(converged.all()):
                    break
                if batched and bool(converged.any()):
                    active = (~converged).to(V.device)
            if callback is not None and callback(it, _to_host(loss)) is True:
                stopped = True
                break
    n_iter[~converged] = it
    return _outcome(history, iters, n_iter, converged, batched, stopped)


def _mark_converged(
    loss: torch.Tensor,
    prev: torch.Tensor,
    tol: float,
    converged: torch.Tensor,
    n_iter: torch.Tensor,
    it: int,
) -> torch.Tensor:
    """Flag (in place) the matrices whose loss fell by less than ``tol`` (relative) since
    ``prev``; returns the new reference loss."""
    cur = loss.reshape(-1).cpu()
    rel = (prev - cur) / prev.clamp_min(np.finfo(np.float64).tiny)
    newly = (rel < tol) & ~converged
    n_iter[newly] = it
    converged |= newly
    return cur


def _outcome(
    history: list[torch.Tensor],
    iters: list[int],
    n_iter: torch.Tensor,
    converged: torch.Tensor,
    batched: bool,
    stopped: bool = False,
) -> MUOutcome:
    """Pack a run's records: scalars for one matrix, one entry per matrix for a batch."""
    hist = torch.stack([h.reshape(-1) for h in history]).cpu().numpy()
    if not batched:
        return MUOutcome(
            hist[:, 0],
            np.asarray(iters),
            np.asarray(int(n_iter[0])),
            np.asarray(bool(converged[0])),
            stopped,
        )
    return MUOutcome(hist, np.asarray(iters), n_iter.numpy(), converged.numpy(), stopped)


def _to_host(loss: torch.Tensor):
    arr = loss.detach().cpu().numpy()
    return float(arr) if arr.ndim == 0 else arr


def _report(it: int, loss: torch.Tensor) -> None:
    vals = loss.reshape(-1).cpu().numpy()
    text = f"{vals[0]:.6e}" if vals.size == 1 else f"mean {vals.mean():.6e} max {vals.max():.6e}"
    print(f"iter {it:6d}  loss {text}")


__all__ = [
    "EPSILON",
    "MUOutcome",
    "Penalties",
    "beta_divergence",
    "mu_exponent",
    "run_hals_codes",
    "run_mu",
    "squared_norm",
]


def run_hals_codes(
    V: torch.Tensor,
    Ws: list[torch.Tensor],
    H: torch.Tensor,
    *,
    max_iter: int = 200,
    tol: float = 1e-4,
    l1: float = 0.0,
    l2: float = 0.0,
    check_every: int = 10,
    verbose: bool = False,
) -> MUOutcome:
    """Codes ``H ≥ 0`` for β = 2 with the factors fixed, by HALS (exact row-wise descent).

    The subproblem ``min_H ½‖V − P H‖² + l1·ΣH + ½·l2·‖H‖²`` (``P = W1…Wk``) is convex; each
    sweep minimizes it exactly over one row of ``H`` at a time from the constant ``PᵀV`` and
    ``PᵀP``, which converges linearly where multiplicative updates crawl on ill-conditioned
    ``P``. Same bookkeeping as :func:`run_mu` (``H`` updated in place, per-matrix convergence).
    """
    batched = V.ndim == 3
    n_mat = V.shape[0] if batched else 1
    P = _chain(Ws)
    PtV = _mm(_mT(P), V)
    Q = _mm(_mT(P), P)
    vnorm2 = squared_norm(V)
    diag = Q.diagonal(dim1=-2, dim2=-1) + l2  # (…, r)
    inv = torch.where(
        diag > 0, 1.0 / diag.clamp_min(torch.finfo(diag.dtype).tiny), torch.zeros_like(diag)
    )
    r = H.shape[-2]

    def loss() -> torch.Tensor:
        cross = torch.mul(PtV, H).sum(dim=-1).sum(dim=-1, dtype=torch.float64)
        quad = torch.mul(Q, _mm(H, _mT(H))).sum(dim=-1).sum(dim=-1, dtype=torch.float64)
        out = (0.5 * (vnorm2 - 2.0 * cross + quad)).clamp_min(0.0)
        if l1:
            out = out + l1 * H.sum(dim=(-2, -1), dtype=torch.float64)
        if l2:
            out = out + 0.5 * l2 * H.square().sum(dim=(-2, -1), dtype=torch.float64)
        return out

    history, iters = [], []
    converged = torch.zeros(n_mat, dtype=torch.bool)
    n_iter = torch.full((n_mat,), max_iter, dtype=torch.int64)
    keep: torch.Tensor | None = None  # (B, 1) True where a matrix has converged
    it = 0
    with torch.no_grad():
        cur = loss()
        history.append(cur)
        iters.append(0)
        prev = cur.reshape(-1).cpu()
        for it in range(1, max_iter + 1):
            for j in range(r):
                # row_j ← max(0, (PᵀV_j − Σ_{k≠j} Q_jk H_k − l1) / (Q_jj + l2))
                g = PtV[..., j, :] - _mm(Q[..., j : j + 1, :], H).squeeze(-2)
                new = (H[..., j, :] + (g - l1 - l2 * H[..., j, :]) * inv[..., j : j + 1]).clamp_min(
                    0.0
                )
                if keep is not None:
                    new = torch.where(keep, H[..., j, :], new)
                H[..., j, :] = new
            if it % check_every == 0 or it == max_iter:
                cur = loss()
                history.append(cur)
                iters.append(it)
                if verbose:
                    _report(it, cur)
                if tol > 0 and it % check_every == 0:
                    prev = _mark_converged(cur, prev, tol, converged, n_iter, it)
                    if bool(converged.all()):
                        break
                    if batched and bool(converged.any()):
                        keep = converged.to(V.device).view(-1, 1)
    n_iter[~converged] = it
    return _outcome(history, iters, n_iter, converged, batched)
