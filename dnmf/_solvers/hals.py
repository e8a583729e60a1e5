"""Block-coordinate solvers for β = 2 without a mask: HALS, its accelerated form and
accelerated multiplicative updates, for ``V ≈ W1 W2 … Wk H`` (pure tensor code, no autograd).

Every block is updated against the carried products of `dnmf._solvers.frobenius` (``V`` is read
only through ``H Vᵀ`` and ``Pᵀ V`` per sweep, no ``m × n`` temporary):

* ``W1`` (``m × r1``) by Fast HALS on its columns (Cichocki & Phan 2009): each column is the
  exact minimizer of the loss with the others fixed, from ``C = T (H Vᵀ)`` and the suffix Gram
  ``S Sᵀ = T (H Hᵀ) Tᵀ`` (``T = W2…Wk``). One layer, in this order and without shuffling, is
  scikit-learn's ``solver='cd'`` (``_fit_coordinate_descent``).
* a middle layer ``Wl`` (``r(l-1) × rl``, the model ``P Wl S``) by exact coordinate descent on
  its entries: the loss in ``Wl`` is ``½⟨Q Wl R, Wl⟩ − ⟨B, Wl⟩`` with ``Q = PᵀP``,
  ``R = S Sᵀ`` and ``B = Pᵀ V Sᵀ``, so entry ``(i, j)`` has curvature ``Q_ii R_jj`` and its
  exact update needs one row of ``Q`` and one column of ``Wl R`` (kept up to date). All entries
  are coupled through ``Q ⊗ R``, so the sweep is sequential; it runs on the host in float64
  (the layers are small) and, for a batch, as one loop vectorized over the matrices.
* ``H`` (``rk × n``) by HALS on its rows from ``Pᵀ V`` and ``Pᵀ P``: the H-only solve of
  `dnmf.solve_h` is this block alone.

Penalties ``l1·ΣF + ½·l2·‖F‖²`` enter as scikit-learn's do: ``l1`` is subtracted from the
linear term and ``l2`` added to the curvature. A zero curvature (a zero row of the other
factor) leaves its coordinates as they are.

Acceleration (Gillis & Glineur 2012): a block's products with ``V`` cost far more than one
sweep over it, so each block is swept up to ``1 + α·ρ`` times per product, ``ρ`` being that
cost ratio in multiply-adds, and stops as soon as a sweep changes it by at most ``δ`` times
what the first sweep did (``‖ΔX_q‖ ≤ δ‖ΔX_1‖``); the costs are those of
`dnmf._solvers.hals_kernels.sweep_cost`, where the two kernels live. The same inner loop with
multiplicative steps (`dnmf._solvers.update.SolverBase`'s step, the reference update) is
accelerated MU. On the CPU the products with ``V`` read row-major or CSR copies of ``V``
and ``Vᵀ`` (see `BlockSolver._wt_v`; from the same start a column-major ``V`` is fitted as
its row-major copy is, bit for bit); sparse input (`dnmf._solvers.sparse.SparseMatrix`)
brings its own CSR of ``V`` and of ``Vᵀ``, on any device.

Batches freeze converged matrices (their curvature inverse is set to 0), and column shards
(``reduce``) sum ``H Vᵀ``, ``H Hᵀ``, ``‖V‖²``, the loss and ``H``'s change over the shards, so
every shard takes the same decisions and the replicated ``W`` factors stay identical.

Ang & Gillis's extrapolation of one-layer fits builds on `BlockSolver` in
`dnmf._solvers.extrapolation`; the registry (`dnmf._solvers`) picks between the two.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .fpstate import raise_tiny_
from .hals_kernels import ENTRY_COST, cd_entries, hals_rows, sweep_cost, tracked
from .linalg import _chain, _mm, _mT
from .loop import SolverOutcome, iterate
from .loss import Penalties, squared_norm
from .sparse import Data, is_sparse
from .update import SolverBase


@dataclass(frozen=True)
class Acceleration:
    """Inner repetitions of a block per product with ``V`` (Gillis & Glineur 2012).

    At most ``1 + alpha·ρ`` sweeps of a block, ``ρ`` = (multiply-adds of the block's products)
    / (multiply-adds of one sweep); stop once ``‖ΔX_q‖ ≤ delta·‖ΔX_1‖``. Their paper's choice
    for HALS is ``alpha=0.5, delta=0.1``.
    """

    alpha: float = 0.5
    delta: float = 0.1

    def budget(self, rho: float) -> int:
        return max(1, int(1 + self.alpha * rho))


#: The update a block solver takes per block: exact (``'hals'``) or multiplicative (``'mu'``).
BLOCK_RULES = ("hals", "mu")


class BlockSolver(SolverBase):
    """One sweep W1, …, Wk, H of exact block updates (``rule='hals'``) or multiplicative
    steps (``rule='mu'``), each block repeated per ``accel`` (``None``: once)."""

    def __init__(
        self,
        V: Data,
        Ws: list[torch.Tensor],
        H: torch.Tensor,
        pen: Penalties,
        update: list[bool],
        *,
        rule: str = "hals",
        accel: Acceleration | None = None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(V, pen, update, 0.0, 2.0, reduce)
        if rule not in BLOCK_RULES:
            raise ValueError(f"rule must be one of {BLOCK_RULES}, got {rule!r}")
        self.rule, self.accel, self.k = rule, accel, len(Ws)
        self.G: torch.Tensor | None = None  # H Hᵀ of the current H (summed over shards)
        self.fixed: tuple | None = None  # (PᵀV, PᵀP) while no W changes
        self.W1t: torch.Tensor | None = None  # W1ᵀ, row-major, once W1 is updated (finish)
        self.rho = self._prepare(V, Ws, H, update, reduce)

    def _prepare(self, V, Ws, H, update, reduce) -> list[float]:
        """Set up what the products with ``V`` read (`_wt_v`, `_h_vt`) and ``‖V‖²``; return
        every block's ``ρ`` (Gillis & Glineur): its products' multiply-adds over one sweep's."""
        sparse = is_sparse(V)
        on_host = V.device.type == "cpu" and V.layout == torch.strided
        self.host_dense = on_host and V.ndim == 2
        # The operands of the two products with V (see _wt_v); an H-only solve computes Pᵀ V
        # once and needs neither.
        self.Vs: torch.Tensor | None = None  # V as CSR when mostly zeros
        self.Vt: torch.Tensor | None = None  # Vᵀ, row-major or CSR
        if sparse:  # sparse input (dnmf._solvers.sparse): its own CSR of V and of Vᵀ
            self.Vs, self.Vt = V.csr, V.csr_t
        elif self.host_dense and any(update[: len(Ws)]):
            # not CSR for shards: each shard's density would set its own inner budgets
            self.Vs, self.Vt = _product_operands(V, csr=reduce is None)
        # A column-major V (the transpose of a row-major array: Vᵀ above is then V's own
        # memory) gets a row-major copy for V Hᵀ, as a row-major V gets one of Vᵀ: MKL's
        # product of a column-major V with the transposed thin Hᵀ is 4-5x slower (100000 × 200,
        # rank 10, one thread); with the copy both products read what a row-major V's read,
        # and the iterations are the row-major V's to the last bit.
        self.Vr: torch.Tensor | None = None  # V, row-major, when V is column-major
        if self.Vs is None and self.Vt is not None and _column_major(V) and _copy_fits(V):
            self.Vr = V.contiguous()
        # ‖V‖² from the row-major copy too: a sum's order follows the memory's
        self.vnorm2 = (
            V.squared_norm()
            if sparse
            else self._sum(squared_norm(V if self.Vr is None else self.Vr))
        )
        # A CPU batch's H Vᵀ reads a row-major copy of every Vᵀ (bmm through the transposed
        # view is 1.2–1.7× slower, 8 × 2048 × 750 … 1024 × 32 × 32, two threads).
        self.batch_vt: torch.Tensor | None = None
        if on_host and not sparse and V.ndim >= 3 and any(update[: len(Ws)]) and _copy_fits(V):
            self.batch_vt = _mT(V).contiguous()
        m, n_local = V.shape[-2], V.shape[-1]
        n = n_local
        if reduce is not None:  # ρ from every column: the same inner budgets on every shard
            n = int(self._sum(torch.tensor([float(n_local)], device=V.device))[0])
        ranks = [W.shape[-1] for W in Ws]
        r1, rk = ranks[0], ranks[-1]
        # A dense V costs its m·n entries per rank in a product, a CSR one its nonzeros.
        mn = m * n if self.Vs is None else CSR_ENTRY_COST * int(self.Vs._nnz())
        big = mn * rk + mn * min(r1, rk)
        rows_loop = self.rule == "hals"  # HALS passes are row loops; MU steps whole-block ops
        rho = [1.0 + (mn * rk + n * rk * rk) / sweep_cost(rows_loop, r1, m)]
        for l in range(1, self.k):  # entry by entry: the loop's overhead, not its flops
            a, b = ranks[l - 1], ranks[l]
            rho.append(1.0 + big / (a * b * (a + b + ENTRY_COST)))
        rho.append(1.0 + (mn * min(r1, rk) + m * r1 * r1) / sweep_cost(rows_loop, rk, n))
        return rho

    def default_loss_every(self, check_every: int) -> int:
        """Every iteration (the loss comes from the sweep's products), except for an H-only
        solve, so cheap that recording the loss would dominate: there at the checks only."""
        return 1 if any(self.update[: self.k]) else check_every

    # -- the sweep ---------------------------------------------------------------------------
    def sweep(self, Ws, H, active, need_loss: bool):
        k, upd = self.k, self.update
        if any(upd[:k]):
            self.fixed = None
            Ht_V = self._sum(self._h_vt(H))  # rk × m
            if self.G is None:
                self.G = self._sum(_mm(H, _mT(H)))
            T: list[torch.Tensor | None] = [None] * k  # W(l+1)…Wk
            SS: list[torch.Tensor] = [self.G] * k  # S Sᵀ of each layer
            for l in range(k - 2, -1, -1):
                Wn, Tn = Ws[l + 1], T[l + 1]
                T[l] = Wn if Tn is None else _mm(Wn, Tn)
                SS[l] = _mm(_mm(Wn, SS[l + 1]), _mT(Wn))
            Bt = Ht_V  # (Pᵀ V Hᵀ)ᵀ = H Vᵀ P for the layers after the first, rk × r(l-1)
            Q = H.new_empty(0)  # PᵀP, set after the first layer
            if upd[0]:
                Ws = [self._updated_w1(Ws[0], T[0], SS[0], Ht_V, active), *Ws[1:]]
            for l in range(k):
                W, Tl = Ws[l], T[l]
                if l == 0:
                    if k > 1:
                        Bt = _mm(Ht_V, W)
                else:
                    if upd[l]:
                        B = _mT(Bt) if Tl is None else _mm(_mT(Bt), _mT(Tl))
                        self._middle(W, Q, SS[l], B, l, active)
                    if l < k - 1:
                        Bt = _mm(Bt, W)
                Q = _mm(_mT(W), W) if l == 0 else _mm(_mT(W), _mm(Q, W))
            PtV, Qf = self._ptv(Ws), Q
        else:
            if self.fixed is None:
                self.fixed = (self._ptv(Ws), _gram_chain(Ws))
            PtV, Qf = self.fixed
        if upd[k]:
            self._block(H, Qf, PtV, k, active, shards=True)
        self.G = self._sum(_mm(H, _mT(H))) if (need_loss or any(upd[:k])) else None
        return self._loss(PtV, Qf, Ws, H) if need_loss else None

    def _updated_w1(self, W1, T, SS, Ht_V, active) -> torch.Tensor:
        """W1 after its block update, as a view of ``W1ᵀ``: the rows of ``W1ᵀ`` are what the
        row loop updates, so ``W1ᵀ`` is kept between sweeps (two transposing copies of an
        ``m × r1`` matrix a sweep saved, 0.3 ms at 4096 × 16) and `finish` writes it back."""
        if self.W1t is None:
            self.W1t = _mT(W1).contiguous()
        C = Ht_V if T is None else _mm(T, Ht_V)
        self._block(self.W1t, SS, C, 0, active)
        return _mT(self.W1t)

    def finish(self, Ws, H) -> None:
        """Write the kept ``W1ᵀ`` back into ``Ws[0]`` (``H`` is already in place)."""
        if self.W1t is not None:
            Ws[0].copy_(_mT(self.W1t))

    def loss(self, Ws, H) -> torch.Tensor:
        """Loss of the current factors (used once, before the first sweep)."""
        self.G = self._sum(_mm(H, _mT(H)))
        return self._loss(self._ptv(Ws), _gram_chain(Ws), Ws, H)

    def _ptv(self, Ws) -> torch.Tensor:
        """(W1…Wk)ᵀ V with one product with V of inner size min(r1, rk)."""
        W1, R = Ws[0], _chain(Ws[1:])
        if R is None:
            return self._wt_v(W1)
        if W1.shape[-1] <= R.shape[-1]:
            return _mm(_mT(R), self._wt_v(W1))
        return self._wt_v(_mm(W1, R))

    # The two products with V, both as (big row-major or CSR matrix) @ (thin matrix) on the
    # CPU: with the thin operand transposed on the left, ``Wᵀ V`` and ``H Vᵀ`` scale poorly to
    # a second thread in MKL (1.5–2.4× slower than ``(Vᵀ W)ᵀ`` and ``(V Hᵀ)ᵀ`` with two
    # threads, for 4096 × 750 … 2048 and ranks 16–64).
    def _wt_v(self, W: torch.Tensor) -> torch.Tensor:
        """Wᵀ V (``r × n``, row-major)."""
        if self.Vt is None:
            return _mm(_mT(W), self.V)
        return _mT(self.Vt @ W).contiguous()

    def _h_vt(self, H: torch.Tensor) -> torch.Tensor:
        """H Vᵀ = (V Hᵀ)ᵀ (``r × m``, row-major)."""
        if self.Vs is not None:  # CSR (a mostly-zero dense V on the CPU, or sparse input)
            return _mT(self.Vs @ _mT(H)).contiguous()
        if not self.host_dense:
            return _mm(H, _mT(self.V) if self.batch_vt is None else self.batch_vt)
        if self.Vr is not None:
            return _mT(self.Vr @ _mT(H)).contiguous()
        if _column_major(self.V):  # no room for the copy: Hᵀ row-major halves the product
            return _mT(self.V @ _mT(H).contiguous()).contiguous()
        return _mT(self.V @ _mT(H)).contiguous()

    def _loss(self, PtV, Qf, Ws, H) -> torch.Tensor:
        # ½(‖V‖² − 2⟨PᵀV, H⟩ + ⟨PᵀP, HHᵀ⟩) + penalties, sums in float64 (as frobenius).
        assert self.G is not None
        cross = torch.mul(PtV, H).sum(dim=-1).sum(dim=-1, dtype=torch.float64)
        quad = torch.mul(Qf, self.G).sum(dim=-1).sum(dim=-1, dtype=torch.float64)
        if self.reduce is None:
            data = (0.5 * (self.vnorm2 - 2.0 * cross + quad)).clamp_min(0.0)
            return data + self.pen.value([*Ws, H])
        h_pen = self.pen.for_codes().value([H])
        both = self.reduce(
            torch.stack([cross, torch.as_tensor(h_pen, dtype=torch.float64, device=cross.device)])
        )
        data = (0.5 * (self.vnorm2 - 2.0 * both[0] + quad)).clamp_min(0.0)
        return data + both[1] + self.pen.for_dictionary().value(Ws)

    # -- blocks ------------------------------------------------------------------------------
    def _block(self, X, G, C, idx: int, active, shards: bool = False) -> None:
        """Minimize ``½⟨G, X Xᵀ⟩ − ⟨C, X⟩`` (+ penalties) over the rows of ``X`` in place,
        repeated per the acceleration rule; ``shards``: ``X`` is column-split (``H``)."""
        l1, l2 = self.pen.l1[idx], self.pen.l2[idx]
        if self.rule == "mu":
            step = tracked(X, lambda run: self._mu_step(X, C, _mm(G, X), idx, run))
        else:

            def step(run, track):
                return hals_rows(X, G, C, l1=l1, l2=l2, active=run, track=track)

        self._repeat(step, idx, active, shards)

    def _middle(self, W, Q, R, B, idx: int, active) -> None:
        l1, l2 = self.pen.l1[idx], self.pen.l2[idx]
        if self.rule == "mu":
            step = tracked(W, lambda run: self._mu_step(W, B, _mm(_mm(Q, W), R), idx, run))
        else:
            step = tracked(W, lambda run: cd_entries(W, Q, R, B, l1=l1, l2=l2, active=run))
        self._repeat(step, idx, active, False)

    def _mu_step(self, F, N, D, idx: int, active) -> None:
        """The reference multiplicative step, then the subnormal floor (dnmf._solvers.fpstate)."""
        self._step(F, N, D, idx, active)
        raise_tiny_(F)

    def _repeat(self, step, idx: int, active, shards: bool) -> None:
        """Run ``step(active, track)`` once, or up to the block's budget under the ``δ``
        rule; with ``track`` the step returns the squared change of its block (float64, per
        matrix of a batch)."""
        budget = 1 if self.accel is None else self.accel.budget(self.rho[idx])
        if budget == 1:
            step(active, False)
            return
        assert self.accel is not None
        run, first = active, torch.zeros(())
        for q in range(budget):
            change = step(run, True)
            if shards and self.reduce is not None:
                change = self.reduce(change)
            if q == 0:
                first = change
                continue
            more = change > (self.accel.delta**2) * first
            if more.ndim == 0:
                if not bool(more):
                    return
            else:
                run = more if run is None else (run & more)
                if not bool(run.any()):
                    return


#: Largest V (bytes) given a row-major copy of its transpose: beyond it, memory matters more.
VT_COPY_MAX_BYTES = 1 << 30


#: Largest fraction of nonzeros at which the products with V use it as CSR: MKL's sparse
#: product is 4× faster than the dense one at 5 % (8192 × 4096, rank 32, two threads) and
#: breaks even near 20 %.
CSR_MAX_DENSITY = 0.1
#: A nonzero of a CSR product costs about this many dense multiply-adds (8 ms for 1.7 M
#: nonzeros × 32 against 33 ms for the dense 8192 × 4096 × 32 product, two threads).
CSR_ENTRY_COST = 5


def _product_operands(
    V: torch.Tensor, csr: bool = True
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(V, Vᵀ)`` as CSR when ``csr`` and at most `CSR_MAX_DENSITY` of ``V`` is nonzero,
    else ``(None, Vᵀ row-major)`` (a copy unless ``V`` is column-major already; ``None`` when
    that copy would exceed `VT_COPY_MAX_BYTES`)."""
    if csr and int(torch.count_nonzero(V)) <= CSR_MAX_DENSITY * V.numel():
        with warnings.catch_warnings():  # "sparse CSR support is in beta": products only
            warnings.simplefilter("ignore", UserWarning)
            return V.to_sparse_csr(), V.T.contiguous().to_sparse_csr()
    if V.T.is_contiguous():
        return None, V.T
    if not _copy_fits(V):
        return None, None
    return None, V.T.contiguous()


def _column_major(V: torch.Tensor) -> bool:
    """Whether the 2-D ``V`` is column-major and not also row-major (a single row or column
    is both)."""
    return V.ndim == 2 and V.T.is_contiguous() and not V.is_contiguous()


def _copy_fits(V: torch.Tensor) -> bool:
    """Whether a transposed copy of ``V`` stays within `VT_COPY_MAX_BYTES`."""
    return V.numel() * V.element_size() <= VT_COPY_MAX_BYTES


def _gram_chain(Ws) -> torch.Tensor:
    """(W1…Wk)ᵀ (W1…Wk), chained through the small factors."""
    Q = _mm(_mT(Ws[0]), Ws[0])
    for W in Ws[1:]:
        Q = _mm(_mT(W), _mm(Q, W))
    return Q


def run_hals(
    V: torch.Tensor,
    Ws: list[torch.Tensor],
    H: torch.Tensor,
    *,
    rule: str = "hals",
    accel: Acceleration | None = None,
    max_iter: int = 200,
    tol: float = 1e-4,
    penalties: Penalties | None = None,
    update: Sequence[bool] | None = None,
    check_every: int = 10,
    loss_every: int | None = None,
    callback: Callable[[int, object], object] | None = None,
    verbose: bool = False,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> SolverOutcome:
    """Block-coordinate descent for β = 2 without a mask on checked tensors, updating ``Ws``
    and ``H`` in place; same conventions as `dnmf._solvers.mu.run_mu` (``update`` flags,
    per-matrix convergence every ``check_every`` iterations, ``loss_every``, ``callback``,
    ``reduce`` for column shards).

    ``rule='hals'`` is exact block-coordinate descent (HALS for ``W1`` and ``H``, coordinate
    descent on the entries of middle layers); ``rule='mu'`` takes multiplicative steps
    instead. ``accel`` repeats each block per product with ``V`` (`Acceleration`). (The
    extrapolated variant is `dnmf._solvers.extrapolation.ExtrapolatedSolver`, which the
    registry builds where it applies.)
    """
    k = len(Ws)
    pen = penalties or Penalties.none(k + 1)
    flags = [True] * (k + 1) if update is None else list(update)
    solver = BlockSolver(V, Ws, H, pen, flags, rule=rule, accel=accel, reduce=reduce)
    return iterate(
        solver,
        V,
        Ws,
        H,
        max_iter=max_iter,
        tol=tol,
        check_every=check_every,
        loss_every=loss_every,
        callback=callback,
        verbose=verbose,
    )


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
) -> SolverOutcome:
    """Codes ``H ≥ 0`` for β = 2 with the factors fixed, by HALS (exact row-wise descent).

    The subproblem ``min_H ½‖V − P H‖² + l1·ΣH + ½·l2·‖H‖²`` (``P = W1…Wk``) is convex; each
    sweep minimizes it exactly over one row of ``H`` at a time from the constant ``PᵀV`` and
    ``PᵀP``, which converges linearly where multiplicative updates crawl on ill-conditioned
    ``P``. Same bookkeeping as `run_hals` (``H`` updated in place, per-matrix convergence): it
    is the ``H`` block of `run_hals` run alone. The factors are not checked (they may be
    signed: `dnmf.deblur.nmf_patch_prior` codes against a signed dictionary).
    """
    return run_hals(
        V,
        Ws,
        H,
        max_iter=max_iter,
        tol=tol,
        penalties=Penalties.codes_only(len(Ws), l1, l2),
        update=[False] * len(Ws) + [True],
        check_every=check_every,
        verbose=verbose,
    )


__all__ = [
    "BLOCK_RULES",
    "Acceleration",
    "BlockSolver",
    "run_hals",
    "run_hals_codes",
]
