"""A sparse ``V`` that is never densified: `SparseMatrix`, and the KL solver that reads it.

`SparseMatrix` holds an ``m × n`` nonnegative matrix as two CSR tensors, of ``V`` and of
``Vᵀ``, so that both products the β = 2 solvers take of the data, ``V Hᵀ`` and ``Wᵀ V``
(= ``(Vᵀ W)ᵀ``), are row-major sparse @ dense products (``O(nnz · r)``, no ``m × n`` work).
It supports what the solvers and the initialisation (`dnmf._init`: NNDSVD's randomized or
Gram-matrix SVD, the data's mean) take of ``V``: ``V @ X`` and ``X @ V`` with a dense ``X``
(dense results), the transpose ``V.mT`` (the two CSR swapped, no copy), ``V @ V.mT`` (the
Gram matrix of the smaller side, dense), ``‖V‖²``, the mean, a change of dtype or device,
and the model ``L R`` evaluated at the nonzeros only (`SparseMatrix.sample`, the part of
scikit-learn's ``_special_sparse_dot`` the β = 1 updates need).

The β = 2 loss is ``½(‖V‖² − 2⟨Pᵀ V, H⟩ + ⟨Pᵀ P, H Hᵀ⟩)``, from the same products
(`dnmf._solvers.hals`, `dnmf._solvers.frobenius`). `SparseKLSolver` runs the multiplicative
updates of β = 1 (Kullback–Leibler): ``Λ = P Wl S`` only at the nonzeros of ``V`` for the
numerator ``Pᵀ (V / Λ) Sᵀ``, the denominator ``Pᵀ 1 Sᵀ`` as the outer product of the column
sums of ``P`` and the row sums of ``S``, and the loss
``Σ_nz [v log(v / λ) − v] + Σ_all λ`` with ``Σ_all λ = (1ᵀ P)(H 1)``. Memory is
``O(nnz + (m + n)·r)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from .linalg import _chain, _mT
from .update import SolverBase

#: Entries of the ``nnz × r`` gathers of `SparseMatrix.sample` done at once (32 MiB in float64):
#: the model at the nonzeros costs ``O(nnz · r)`` time and this much memory at most.
SAMPLE_BLOCK_ELEMENTS = 1 << 22
#: Columns of the identity multiplied at once when a Gram matrix ``A Bᵀ`` of two sparse
#: matrices is formed (`SparseMatrix.__matmul__`): the dense block of ``Bᵀ`` has this many
#: columns, unless that would exceed `SAMPLE_BLOCK_ELEMENTS` entries.
GRAM_BLOCK_COLUMNS = 256


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": products only
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size=tuple(shape), check_invariants=False)


def _row_pointers(index: torch.Tensor, size: int) -> torch.Tensor:
    """CSR row pointers of sorted row indices ``index`` over ``size`` rows."""
    ptr = torch.zeros(size + 1, dtype=torch.int64, device=index.device)
    torch.cumsum(torch.bincount(index, minlength=size), 0, out=ptr[1:])
    return ptr


class SparseMatrix:
    """A nonnegative ``m × n`` matrix as CSR of ``V`` and of ``Vᵀ`` (see the module docstring).

    Build it with `from_coo`; ``rows``/``cols`` are the coordinates of the stored entries in
    row-major order, ``perm`` the permutation that takes them to column-major order (``Vᵀ``'s
    CSR values are ``values[perm]``). A transposed matrix (`mT`) shares every tensor.
    """

    ndim = 2
    layout = torch.sparse_csr  # as stored: CSR (of V and of Vᵀ)

    def __init__(
        self,
        csr: torch.Tensor,
        csr_t: torch.Tensor,
        rows: torch.Tensor,
        perm: torch.Tensor,
        transposed: bool = False,
    ) -> None:
        self.csr, self.csr_t = csr, csr_t  # V and Vᵀ of the matrix as stored
        self.rows, self.perm = rows, perm
        self.transposed = transposed

    @classmethod
    def from_coo(
        cls, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape
    ) -> SparseMatrix:
        """From coordinates sorted row-major without duplicates (int64, on one device)."""
        m, n = (int(s) for s in shape)
        perm = torch.sort(cols, stable=True).indices  # column-major order: Vᵀ row-major
        csr = _csr(_row_pointers(rows, m), cols, values, (m, n))
        csr_t = _csr(_row_pointers(cols[perm], n), rows[perm], values[perm], (n, m))
        return cls(csr, csr_t, rows, perm)

    # -- what a tensor would say -----------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.csr_t.shape if self.transposed else self.csr.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.csr.dtype

    @property
    def device(self) -> torch.device:
        return self.csr.device

    @property
    def nnz(self) -> int:
        return int(self.csr._nnz())

    @property
    def values(self) -> torch.Tensor:
        """The stored entries in row-major order of the matrix as stored (not transposed)."""
        return self.csr.values()

    def numel(self) -> int:
        m, n = self.shape
        return int(m) * int(n)

    def element_size(self) -> int:
        return self.csr.values().element_size()

    def __repr__(self) -> str:
        return f"SparseMatrix(shape={tuple(self.shape)}, nnz={self.nnz}, dtype={self.dtype})"

    @property
    def mT(self) -> SparseMatrix:
        """The transpose (the same tensors, no copy)."""
        return SparseMatrix(self.csr, self.csr_t, self.rows, self.perm, not self.transposed)

    def transpose(self, dim0: int, dim1: int) -> SparseMatrix:
        if {dim0 % 2, dim1 % 2} != {0, 1}:
            raise ValueError(f"a SparseMatrix transposes its two dims only, got {dim0}, {dim1}")
        return self.mT

    def to(self, device=None, dtype=None) -> SparseMatrix:
        """On ``device`` in ``dtype`` (self when both are unchanged)."""
        dev = self.device if device is None else torch.device(device)
        dt = self.dtype if dtype is None else dtype
        if dev == self.device and dt == self.dtype:
            return self
        csr, csr_t = (
            _csr(
                c.crow_indices().to(dev),
                c.col_indices().to(dev),
                c.values().to(dev, dt),
                c.shape,
            )
            for c in (self.csr, self.csr_t)
        )
        return SparseMatrix(csr, csr_t, self.rows.to(dev), self.perm.to(dev), self.transposed)

    def double(self) -> SparseMatrix:
        return self.to(dtype=torch.float64)

    def with_values(self, values: torch.Tensor) -> SparseMatrix:
        """The same pattern with other stored values (row-major order, as `values`)."""
        a, b = self.csr, self.csr_t
        csr = _csr(a.crow_indices(), a.col_indices(), values, a.shape)
        csr_t = _csr(b.crow_indices(), b.col_indices(), values[self.perm], b.shape)
        return SparseMatrix(csr, csr_t, self.rows, self.perm, self.transposed)

    # -- products (dense results) ----------------------------------------------------------
    def _left(self) -> torch.Tensor:
        """The CSR of this matrix (``V``, or ``Vᵀ`` when transposed)."""
        return self.csr_t if self.transposed else self.csr

    def _right(self) -> torch.Tensor:
        """The CSR of its transpose."""
        return self.csr if self.transposed else self.csr_t

    def mm(self, X: torch.Tensor) -> torch.Tensor:
        """``self @ X`` for a dense ``X``."""
        return self._left() @ X

    def tmm(self, X: torch.Tensor) -> torch.Tensor:
        """``selfᵀ @ X`` for a dense ``X``."""
        return self._right() @ X

    def __matmul__(self, other: Any) -> torch.Tensor:
        """``self @ other``: a dense ``other``, or a sparse one (a Gram matrix such as
        ``V @ V.mT``, formed a block of columns of ``other`` at a time: dense, ``m × k``)."""
        if isinstance(other, SparseMatrix):
            return self._times_sparse(other)
        return self.mm(other)

    def __rmatmul__(self, other: torch.Tensor) -> torch.Tensor:
        """``other @ self`` = ``(selfᵀ otherᵀ)ᵀ`` for a dense ``other``."""
        return _mT(self.tmm(_mT(other)))

    def _times_sparse(self, other: SparseMatrix) -> torch.Tensor:
        k = int(other.shape[-1])
        step = max(1, min(GRAM_BLOCK_COLUMNS, SAMPLE_BLOCK_ELEMENTS // max(1, other.shape[-2])))
        out = torch.empty((int(self.shape[-2]), k), dtype=self.dtype, device=self.device)
        for j in range(0, k, step):
            cols = min(step, k - j)
            eye = torch.zeros((k, cols), dtype=self.dtype, device=self.device)
            eye[j : j + cols].fill_diagonal_(1.0)
            out[:, j : j + cols] = self.mm(other.mm(eye))  # columns j… of other, dense
        return out

    # -- reductions --------------------------------------------------------------------------
    def squared_norm(self) -> torch.Tensor:
        """``‖V‖²`` in float64 (squares rounded in V's dtype, as `dnmf._solvers.loss`)."""
        return self.values.square().sum(dtype=torch.float64)

    def sum(self) -> torch.Tensor:
        return self.values.sum()

    def mean(self, dim: Any = None, keepdim: bool = False) -> torch.Tensor:
        """The mean of all ``m·n`` entries (``dim`` may only name both dims), in V's dtype."""
        if dim is not None and sorted(d % 2 for d in dim) != [0, 1]:
            raise ValueError(f"a SparseMatrix averages over both dims only, got dim={dim}")
        out = self.values.sum(dtype=torch.float64) / self.numel()
        out = out.to(self.dtype)
        return out.reshape(1, 1) if keepdim else out

    # -- the model at the nonzeros ------------------------------------------------------------
    def sample(self, L: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """``(L R)_ij`` at the stored entries of the matrix as stored, in `values`' order
        (``L``: ``m × r``, ``R``: ``r × n`` of that matrix), a block of entries at a time."""
        if self.transposed:
            raise ValueError("sample needs the matrix as stored, not its transpose")
        cols = self.csr.col_indices()
        Rt = _mT(R).contiguous()
        nnz = self.rows.numel()
        out = torch.empty(nnz, dtype=L.dtype, device=L.device)
        step = max(1, SAMPLE_BLOCK_ELEMENTS // max(1, int(L.shape[-1])))
        for i in range(0, nnz, step):
            part = slice(i, i + step)
            torch.sum(L[self.rows[part]] * Rt[cols[part]], dim=-1, out=out[part])
        return out


#: The data a solver takes: a dense tensor, or a `SparseMatrix` (2-D, β = 2 or 1, no mask).
Data = torch.Tensor | SparseMatrix


def is_sparse(V: Any) -> bool:
    """Whether ``V`` is a `SparseMatrix`."""
    return isinstance(V, SparseMatrix)


def frobenius_loss(V: SparseMatrix, L: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """``½‖V − L R‖²`` in float64 from ``‖V‖² − 2⟨Lᵀ V, R⟩ + ⟨Lᵀ L, R Rᵀ⟩`` (clamped at 0)."""
    cross = (_mT(V.tmm(L)) * R).sum(dtype=torch.float64)
    quad = ((_mT(L) @ L) * (R @ _mT(R))).sum(dtype=torch.float64)
    return (0.5 * (V.squared_norm() - 2.0 * cross + quad)).clamp_min(0.0)


def kl_loss(V: SparseMatrix, L: torch.Tensor, R: torch.Tensor, eps: float) -> torch.Tensor:
    """The generalized KL divergence ``D(V | L R)`` in float64, as
    `dnmf._solvers.loss.beta_divergence` (``Λ`` floored at ``eps`` inside the logarithm):
    ``Σ_nz [v log(v / λ) − v] + Σ_all λ`` with ``Σ_all λ = (1ᵀ L)(R 1)``."""
    v = V.values.double()
    lam = V.sample(L, R).double()
    at_nz = (torch.xlogy(v, v / lam.clamp_min(eps)) - v).sum()
    total = (L.double().sum(dim=-2) * R.double().sum(dim=-1)).sum()
    return at_nz + total


class SparseKLSolver(SolverBase):
    """β = 1 multiplicative updates on a `SparseMatrix` (see the module docstring): the
    updates of `dnmf._solvers.general.GeneralSolver` for β = 1 without a mask, with ``Λ`` and
    ``V / Λ`` formed at the nonzeros only."""

    def __init__(
        self,
        V: SparseMatrix,
        Ws: list[torch.Tensor],
        H: torch.Tensor,
        pen,
        update: list[bool],
        eps: float,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if reduce is not None:
            raise ValueError("a sparse V is fitted in one process (no column shards)")
        super().__init__(V, pen, update, eps, 1.0, None)
        self.k = len(Ws)

    def _ratio(self, left: torch.Tensor, right: torch.Tensor) -> SparseMatrix:
        """``V / max(Λ, eps)`` at the nonzeros, ``Λ = left @ right``."""
        V = self.V
        lam = V.sample(left, right).clamp_min_(self.eps)
        return V.with_values(torch.div(V.values, lam, out=lam))

    @staticmethod
    def _sandwich(Z: SparseMatrix, P, S) -> torch.Tensor:
        """``Pᵀ Z Sᵀ`` (``None`` = identity), the sparse product with the thinner side first
        (the association of `GeneralSolver._sandwich`)."""
        if P is None:
            return Z.mm(_mT(S))
        if S is None:
            return _mT(Z.tmm(P))
        if S.shape[-2] <= P.shape[-1]:
            return _mT(P) @ Z.mm(_mT(S))
        return _mT(Z.tmm(P)) @ _mT(S)

    def _den(self, P, S) -> torch.Tensor:
        """``Pᵀ 1 Sᵀ``: the outer product of the column sums of ``P`` and the row sums of ``S``."""
        m, n = (int(s) for s in self.V.shape)
        kw: dict[str, Any] = dict(dtype=self.V.dtype, device=self.V.device)
        cs = P.sum(dim=-2) if P is not None else torch.ones(m, **kw)
        rs = S.sum(dim=-1) if S is not None else torch.ones(n, **kw)
        return cs.unsqueeze(-1) * rs.unsqueeze(-2)

    def sweep(self, Ws, H, active, need_loss: bool):
        k = self.k
        T: list[torch.Tensor | None] = [None] * k
        for l in range(k - 2, -1, -1):
            nxt = T[l + 1]
            T[l] = Ws[l + 1] if nxt is None else Ws[l + 1] @ nxt
        P = None
        for l in range(k):
            W = Ws[l]
            if self.update[l]:
                Tl = T[l]
                S = H if Tl is None else Tl @ H
                den = self._den(P, S)
                Z = self._ratio(W if P is None else P @ W, S)
                self._step(W, self._sandwich(Z, P, S), den, l, active)
            P = W if P is None else P @ W
        assert P is not None
        if self.update[k]:
            den = self._den(P, None)
            self._step(H, self._sandwich(self._ratio(P, H), P, None), den, k, active)
        return self.loss(Ws, H) if need_loss else None

    def loss(self, Ws, H) -> torch.Tensor:
        P = _chain(Ws)
        assert P is not None
        return self._objective(kl_loss(self.V, P, H, self.eps), Ws, H)


__all__ = [
    "Data",
    "SparseKLSolver",
    "SparseMatrix",
    "frobenius_loss",
    "is_sparse",
    "kl_loss",
]
