"""The β = 2 solver without a mask, which never forms an ``m × n`` temporary.

``FrobeniusSolver`` touches ``V`` only through the two products ``V Hᵀ`` and ``Pᵀ V`` per
sweep. On the CPU, when ``r1 ≤ rk``, both come from one pass over blocks of rows of ``V``:
``V_i Hᵀ`` gives the rows ``W1_i`` their update (it needs nothing else from other rows), and
``W1_iᵀ V_i`` is accumulated while ``V_i`` is still in cache; then
``PᵀV = (W2…Wk)ᵀ (W1ᵀ V)``. Same updates, in the same order, read from memory once.
With ``Sᵀ = Hᵀ Tᵀ`` (``T = W(l+1)…Wk``) every layer's numerator is ``(Pᵀ V Hᵀ) Tᵀ`` and every
denominator ``(PᵀP) Wl (S Sᵀ)``, all built from carried ``(m+n)·r``-sized products and small
Gram matrices. The loss comes for free from ``‖V‖² − 2⟨PᵀV, H⟩ + ⟨PᵀP, H Hᵀ⟩``, accumulated
in float64.

A sparse ``V`` (`dnmf._solvers.sparse.SparseMatrix`) takes the same two products as sparse @
dense products (``V Hᵀ``, and ``Wᵀ V`` as ``(Vᵀ W)ᵀ``), without the fused pass.

With column shards (``reduce`` set) ``‖V‖²``, ``V Hᵀ``, ``H Hᵀ``, the loss's data term and
``H``'s penalty are summed over the shards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .linalg import _chain, _mm, _mT, _prod
from .loss import Penalties, squared_norm
from .sparse import Data, SparseMatrix
from .update import SolverBase

#: Default bytes of ``V`` per block of the fused first-layer pass (β = 2, CPU): blocks of about
#: this many bytes stay in the last-level cache between ``V_i Hᵀ`` and ``W1_iᵀ V_i``. On the
#: project's CPU (32 MiB L3; 4096 × 2048 float32, rank 64) 8 MiB blocks were 3–9 % faster than
#: the two whole products with one thread and within the noise with two; 4 MiB was better with
#: one thread and worse with two (docs: the dnmf speed results). ``run_mu(fused_block_bytes=)``
#: overrides it for one run.
FUSED_BLOCK_BYTES = 8 << 20


class FrobeniusSolver(SolverBase):
    """β = 2 without a mask: two products with V per sweep, loss from carried Gram matrices.

    ``fused_block_bytes`` sets the size of the row blocks of the fused first-layer pass (a
    value larger than ``V`` turns the pass off).
    """

    def __init__(
        self,
        V: Data,
        Ws: list[torch.Tensor],
        H: torch.Tensor,
        pen: Penalties,
        update: list[bool],
        eps: float,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        fused_block_bytes: int = FUSED_BLOCK_BYTES,
    ) -> None:
        super().__init__(V, pen, update, eps, 2.0, reduce)
        self.k = len(Ws)
        self.sparse = isinstance(V, SparseMatrix)  # products through its two CSR
        self.vnorm2 = (
            V.squared_norm() if isinstance(V, SparseMatrix) else self._sum(squared_norm(V))
        )
        self.A: torch.Tensor | None = None  # V Hᵀ for the current H
        self.G: torch.Tensor | None = None  # H Hᵀ for the current H
        self.fixed: tuple | None = None  # (PᵀV, PᵀP) while no W changes
        lead = tuple(V.shape[:-2])
        m, n, r1, rk = V.shape[-2], V.shape[-1], Ws[0].shape[-1], H.shape[-2]
        kw: dict[str, Any] = dict(dtype=V.dtype, device=V.device)
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
        rows = max(1, fused_block_bytes // max(1, n * V.element_size()))
        self.fused_rows = (
            rows
            if (
                not lead
                and isinstance(V, torch.Tensor)  # not sparse
                and reduce is None
                and V.device.type == "cpu"
                and V.stride(-1) == 1
                and r1 <= rk
                and m > rows
            )
            else 0
        )
        self.bufW1tV = torch.empty((r1, n), **kw) if self.fused_rows and self.k > 1 else self.bufPtV

    def default_loss_every(self, check_every: int) -> int:
        """Every iteration: the loss is free here. An H-only solve is so cheap that recording
        it would dominate, so that records at the checks only."""
        return 1 if any(self.update[: self.k]) else check_every

    def sweep(self, Ws, H, active, need_loss: bool):
        k, upd = self.k, self.update
        update_ws = any(upd[:k])
        if update_ws:
            self.fixed = None
            fused = bool(self.fused_rows) and upd[0] and upd[k]
            if self.A is None and not fused:
                self.A = self._sum(self._v_ht(H))
            if self.G is None:
                self.G = self._sum(_mm(H, _mT(H), out=self.bufG))
            # Suffix factors T_l = W(l+1)…Wk and S_l Sᵀ_l = T_l (H Hᵀ) T_lᵀ, from the
            # not-yet-updated layers to the right of l.
            T: list[torch.Tensor | None] = [None] * k
            SS: list[torch.Tensor] = [self.G] * k
            for l in range(k - 2, -1, -1):
                Wn, Tn = Ws[l + 1], T[l + 1]
                T[l] = Wn if Tn is None else _mm(Wn, Tn)
                SS[l] = _mm(_mm(Wn, SS[l + 1]), _mT(Wn))
            if fused:
                W1tV = self._fused_first_layer(Ws[0], H, T[0], SS[0])
            B = self.A  # Pᵀ V Hᵀ, with P = I before the first layer
            assert B is not None
            Q: torch.Tensor | None = None  # Pᵀ P
            for l in range(k):
                W, Tl = Ws[l], T[l]
                if upd[l] and l == 0 and not fused:
                    self._w1_step(W, B, T[0], SS[0], active)
                elif upd[l] and l > 0:
                    assert Q is not None
                    N = B if Tl is None else _mm(B, _mT(Tl))
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
                PtV = _mm(_mT(_prod(Ws[1:])), W1tV, out=self.bufPtV)
        else:
            if self.fixed is None:
                Qf = None
                for W in Ws:
                    Qf = _mm(_mT(W), W) if Qf is None else _mm(_mT(W), _mm(Qf, W))
                self.fixed = (self._ptv(Ws).clone(), Qf)
            PtV, Qf = self.fixed
        assert Qf is not None
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
        if T0 is None:
            N = Ai
        else:
            assert self.bufN1 is not None
            N = _mm(Ai, _mT(T0), out=self.bufN1[..., rows, :])
        D = _mm(Wi, SS0, out=self.bufD1[..., rows, :])
        self._step(Wi, N, D, 0, active)

    def _v_ht(self, H) -> torch.Tensor:
        """V Hᵀ (``m × rk``; a transposed view for a CPU batch, see ``a_transposed``)."""
        V = self.V
        if self.sparse:
            return V.mm(_mT(H))
        if self.a_transposed:
            return _mT(_mm(H, _mT(V), out=self.bufA))
        return _mm(V, _mT(H), out=self.bufA)

    def _wt_v(self, W, out=None) -> torch.Tensor:
        """Wᵀ V (sparse input: ``(Vᵀ W)ᵀ``, a row-major sparse product)."""
        if self.sparse:
            WtV = _mT(self.V.tmm(W))
            return WtV.contiguous() if out is None else out.copy_(WtV)
        return _mm(_mT(W), self.V, out=out)

    def _ptv(self, Ws) -> torch.Tensor:
        """(W1…Wk)ᵀ V with the cheaper association: one product with V of inner size min(r1, rk)."""
        W1, R = Ws[0], _chain(Ws[1:])
        if R is None:
            return self._wt_v(W1, out=self.bufPtV)
        if W1.shape[-1] <= R.shape[-1]:
            return _mm(_mT(R), self._wt_v(W1), out=self.bufPtV)
        P = _mm(W1, R, out=self.bufP)  # bufP exists whenever there are 2+ layers
        return self._wt_v(P, out=self.bufPtV)

    def _loss(self, PtV, Qf, Ws, H) -> torch.Tensor:
        # ½(‖V‖² − 2⟨PᵀV, H⟩ + ⟨PᵀP, HHᵀ⟩): products in the working dtype, sums in float64.
        # Row sums in the working dtype (cascade summation), the rest in float64: a float64
        # copy of the whole product would cost more than the loss is worth.
        # (a fresh rk × n temporary each iteration cost page faults: 4× the multiply itself)
        assert self.G is not None
        cross = torch.mul(PtV, H, out=self.bufX).sum(dim=-1).sum(dim=-1, dtype=torch.float64)
        quad = torch.mul(Qf, self.G).sum(dim=-1).sum(dim=-1, dtype=torch.float64)
        if self.reduce is not None:  # shards: sum ⟨PᵀV, H⟩ (and H's penalty) over the columns
            h_pen = self.pen.for_codes().value([H])
            both = self.reduce(
                torch.stack(
                    [cross, torch.as_tensor(h_pen, dtype=torch.float64, device=cross.device)]
                )
            )
            loss = (0.5 * (self.vnorm2 - 2.0 * both[0] + quad)).clamp_min(0.0)
            return loss + both[1] + self.pen.for_dictionary().value(Ws)
        loss = (0.5 * (self.vnorm2 - 2.0 * cross + quad)).clamp_min(0.0)
        return loss + self.pen.value([*Ws, H])

    def loss(self, Ws, H) -> torch.Tensor:
        """Loss of the current factors (used once, before the first sweep)."""
        Qf = None
        for W in Ws:
            Qf = _mm(_mT(W), W) if Qf is None else _mm(_mT(W), _mm(Qf, W))
        self.G = self._sum(_mm(H, _mT(H), out=self.bufG))
        return self._loss(self._ptv(Ws), Qf, Ws, H)
