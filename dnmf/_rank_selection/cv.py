"""Masked HALS for every candidate × fold × restart at once (β = 2, blocks).

With the block hold-out pattern of `dnmf._rank_selection.holdout` (rows and columns shuffled
into ``G`` groups; fold ``f`` hides the blocks ``(a, b(a))``, ``b(a) = (a + f) mod G``), the
masked β = 2 fit of ``dnmf.factorize(V, ranks, mask=M, solver='hals')`` (HALS on the data
filled in from the model, `dnmf._solvers.masked`) needs no ``m × n`` work per fit:

* linear terms: ``Pᵀ (M⊙V) Sᵀ`` comes from ``(M⊙V) Hᵀ`` and ``W1ᵀ (M⊙V)``, two dense products
  with the fold's masked copy of ``V``; every fit of every candidate goes into one batched
  product per sweep (one ``bmm`` over the folds, all fits of a fold side by side);
* the filled-in part: a row of group ``a`` misses exactly the columns of group ``b(a)``, so
  ``(1−M)⊙(P S)`` contributes ``P_a Wl S_b(a) S_b(a)ᵀ`` to that group's rows: small products
  with ``S Sᵀ`` over one column group (and, for ``H`` and the middle layers, ``P_aᵀ P_a`` over
  one row group), one per group;
* the update itself is plain HALS (`dnmf._solvers.hals_kernels.hals_rows`, and
  `dnmf._solvers.hals_kernels.cd_entries` for a middle layer) with the full Gram matrices;
* the training loss ``½‖M⊙(V − P H)‖²`` follows from the same Gram matrices, as in
  ``dnmf._solvers.frobenius``.

So a sweep costs what two products with ``V`` cost, for all fits together, instead of the
``m × n`` model products per block and fit of ``dnmf._solvers.masked``. The
updates are the masked updates themselves (same order W1, …, Wk, H, rows in order), so the
fits equal the ones ``dnmf.factorize(…, solver='hals')`` makes with that mask, up to rounding.

Layout: rows and columns live in the padded, shuffled order of `BlockDesign` (group
``a`` is one slice of ``ma`` rows), so every per-group quantity is a view. Fits are ordered
fold-major, then restart, then candidate: fold ``f`` holds one ``(S · Σ r, ·)`` slab of the
stacked ``W1ᵀ`` and ``H``, and one candidate's ``F · S`` fits are a strided 3-D view of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._solvers.hals_kernels import cd_entries, hals_rows
from .._solvers.linalg import _chain, _mm, _mT
from .._solvers.loss import Penalties, squared_norm
from .._solvers.update import SolverBase
from .holdout import BlockDesign


@dataclass
class BlockFitOutcome:
    """Per-fit results of `run_block_cv`, fits ordered (candidate, fold, restart)."""

    Ws: list[list[torch.Tensor]]  # per candidate: k factors (F·S, ·, ·) in V's order
    H: list[torch.Tensor]  # per candidate: (F·S, rk, n)
    n_iter: np.ndarray  # (C, F·S)
    converged: np.ndarray  # (C, F·S)
    loss: np.ndarray  # (C, F·S): final training objective


class BlockCVSolver(SolverBase):
    """Every (candidate, fold, restart) fit of the block pattern, swept together."""

    def __init__(
        self,
        Vm: torch.Tensor,
        design: BlockDesign,
        folds: Sequence[int],
        restarts: int,
        ranks: Sequence[tuple[int, ...]],
        Ws: Sequence[Sequence[torch.Tensor]],
        Hs: Sequence[torch.Tensor],
        pen: Penalties,
        eps: float,
    ):
        k = len(ranks[0])
        super().__init__(Vm, pen, [True] * (k + 1), eps, 2.0)
        self.k, self.ranks, self.design = k, list(ranks), design
        self.F, self.S = len(folds), restarts
        G, ma, nb = design.G, design.ma, design.nb
        self.B = self.F * self.S
        dev, dt = Vm.device, Vm.dtype
        fold_of = torch.as_tensor(np.repeat(np.asarray(folds), self.S), device=dev)
        position = np.repeat(np.arange(self.F), self.S)  # index into Vm's folds
        groups = torch.arange(G, device=dev)
        self.bidx = (groups[None, :] + fold_of[:, None]) % G  # held-out column group of row group
        self.aidx = (groups[None, :] - fold_of[:, None]) % G  # held-out row group of column group
        self.batch = torch.arange(self.B, device=dev)[:, None]
        self.vnorm2 = squared_norm(Vm)[torch.as_tensor(position, device=dev)]  # ‖M⊙V‖² per fit
        # Stacked storage: W1ᵀ is (F, S, Σ r1, G·ma) and H (F, S, Σ rk, G·nb).
        self.o1 = np.concatenate([[0], np.cumsum([r[0] for r in ranks])])
        self.ok = np.concatenate([[0], np.cumsum([r[-1] for r in ranks])])
        self.W1T = torch.zeros((self.F, self.S, int(self.o1[-1]), G * ma), dtype=dt, device=dev)
        self.Hst = torch.zeros((self.F, self.S, int(self.ok[-1]), G * nb), dtype=dt, device=dev)
        self.AT = torch.empty((self.F, self.S * int(self.ok[-1]), G * ma), dtype=dt, device=dev)
        self.BT = torch.empty((self.F, self.S * int(self.o1[-1]), G * nb), dtype=dt, device=dev)
        self.Ws: list[list[torch.Tensor]] = []
        self.H: list[torch.Tensor] = []
        for c in range(len(ranks)):
            W1 = self._view(self.W1T, self.o1, c).transpose(1, 2)
            W1.copy_(design.pad_rows(Ws[c][0]))
            H = self._view(self.Hst, self.ok, c)
            H.copy_(design.pad_cols(Hs[c]))
            self.Ws.append([W1, *[W.clone().contiguous() for W in Ws[c][1:]]])
            self.H.append(H)
        self.grams: list[torch.Tensor | None] = [None] * len(ranks)  # H's per-group Grams
        self.rowgrams: list[torch.Tensor | None] = [None] * len(ranks)  # P's per-group Grams

    def _view(self, store: torch.Tensor, offsets: np.ndarray, c: int) -> torch.Tensor:
        """Candidate ``c``'s slab of ``store`` as a (F·S, r, ·) view (folds and restarts merge:
        the fold stride is S times the restart stride)."""
        lo, hi = int(offsets[c]), int(offsets[c + 1])
        return store[:, :, lo:hi, :].reshape(self.B, hi - lo, store.shape[-1])

    def _dense_view(self, buf: torch.Tensor, offsets: np.ndarray, c: int) -> torch.Tensor:
        view = buf.view(self.F, self.S, -1, buf.shape[-1])
        lo, hi = int(offsets[c]), int(offsets[c + 1])
        return view[:, :, lo:hi, :].reshape(self.B, hi - lo, buf.shape[-1])

    # -- per-group Gram matrices ------------------------------------------------------------
    def _grams(self, c: int) -> torch.Tensor:
        """Candidate ``c``'s column-group Grams of its current ``H`` (cached until H changes)."""
        G = self.grams[c]
        if G is None:
            G = self.grams[c] = self._col_grams(self.H[c])
        return G

    def _col_grams(self, H: torch.Tensor) -> torch.Tensor:
        """``H_b H_bᵀ`` for every column group ``b``: (B, G, rk, rk)."""
        Hg = H.unflatten(-1, (self.design.G, self.design.nb)).transpose(1, 2)
        return torch.matmul(Hg, _mT(Hg))

    def _row_grams(self, W1: torch.Tensor) -> torch.Tensor:
        """``W1_aᵀ W1_a`` for every row group ``a``: (B, G, r1, r1)."""
        Wg = W1.unflatten(1, (self.design.G, self.design.ma))
        return torch.matmul(_mT(Wg), Wg)

    def _observed(self, full_minus: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Σ over groups minus the held-out one: ``(Σ_g X_g) − X_idx`` per group, (B, G, r, r)."""
        return full_minus.sum(dim=1, keepdim=True) - full_minus[self.batch, idx]

    # -- the sweep ---------------------------------------------------------------------------
    def sweep(self, active: list[torch.Tensor | None], need_loss: bool) -> torch.Tensor | None:
        """One joint iteration of every fit; returns the training objectives (C·B,) or None."""
        torch.bmm(self.Hst.view(self.F, -1, self.Hst.shape[-1]), _mT(self.V), out=self.AT)
        live = [a is None or bool(a.any()) for a in active]
        for c in range(len(self.ranks)):
            if live[c]:
                self._update_ws(c, active[c])
        torch.bmm(self.W1T.view(self.F, -1, self.W1T.shape[-1]), self.V, out=self.BT)
        losses = []
        for c in range(len(self.ranks)):
            loss = self._update_h(c, active[c], need_loss, step=live[c])
            if loss is not None:
                losses.append(loss)
        return torch.cat(losses) if need_loss else None

    def _update_ws(self, c: int, active: torch.Tensor | None) -> None:
        Ws, k, pen = self.Ws[c], self.k, self.pen
        A = _mT(self._dense_view(self.AT, self.ok, c))  # (M⊙V) Hᵀ, (B, G·ma, rk)
        Kfull = self._grams(c)
        K = self._observed(Kfull, self.bidx)  # S Sᵀ over each row group's columns
        # Suffixes T_l = W(l+1)…Wk from the layers not yet updated, and T_l K T_lᵀ.
        T: list[torch.Tensor | None] = [None] * k
        for l in range(k - 2, -1, -1):
            nxt = T[l + 1]
            T[l] = Ws[l + 1] if nxt is None else _mm(Ws[l + 1], nxt)
        SS = [
            K if t is None else torch.matmul(torch.matmul(t[:, None], K), _mT(t)[:, None])
            for t in T
        ]
        W1, T0 = Ws[0], T[0]
        num = A if T0 is None else _mm(A, _mT(T0))
        # Every block against the data with its held-out entries filled in from the model
        # (dnmf._solvers.masked): Pᵀ V̂ Sᵀ = Pᵀ (M⊙V) Sᵀ + Σ_a Q_a W (R − R_a), R = S Sᵀ over
        # every column, R_a over row group a's observed columns (Q_a = P_aᵀ P_a, P = I for W1).
        full = Kfull.sum(dim=1)
        R0 = full if T0 is None else _mm(_mm(T0, full), _mT(T0))
        held = R0.unsqueeze(1) - SS[0]  # S Sᵀ over each row group's held-out columns
        Wg = W1.unflatten(1, (self.design.G, self.design.ma))  # (B, G, ma, r1)
        C = num + torch.matmul(Wg, held).flatten(1, 2)
        hals_rows(_mT(W1), R0, _mT(C), l1=pen.l1[0], l2=pen.l2[0], active=active)
        Q = self._row_grams(W1)  # P_aᵀ P_a with P = W1
        Bp = _mm(_mT(W1), A)  # Pᵀ (M⊙V) Hᵀ for the next layer's P
        for l in range(1, k):
            W, Tl = Ws[l], T[l]
            R = full if Tl is None else _mm(_mm(Tl, full), _mT(Tl))
            Bl = Bp if Tl is None else _mm(Bp, _mT(Tl))
            Qall = Q.sum(dim=1)
            seen = torch.matmul(torch.matmul(Q, W[:, None]), SS[l]).sum(dim=1)
            Bl = Bl + _mm(_mm(Qall, W), R) - seen
            cd_entries(W, Qall, R, Bl, l1=pen.l1[l], l2=pen.l2[l], active=active)
            if l < k - 1:
                Bp = _mm(_mT(W), Bp)
            Q = torch.matmul(torch.matmul(_mT(W)[:, None], Q), W[:, None])
        self.rowgrams[c] = Q

    def _update_h(
        self, c: int, active: torch.Tensor | None, need_loss: bool, step: bool = True
    ) -> torch.Tensor | None:
        Ws, H, k = self.Ws[c], self.H[c], self.k
        X = self._dense_view(self.BT, self.o1, c)  # W1ᵀ (M⊙V), (B, r1, G·nb)
        R = _chain(Ws[1:])  # W2…Wk (None for one layer)
        num = X if R is None else _mm(_mT(R), X)  # Pᵀ (M⊙V)
        Q = self.rowgrams[c]
        if Q is None:
            Q = self._row_grams(Ws[0])
            if R is not None:
                Q = torch.matmul(torch.matmul(_mT(R)[:, None], Q), R[:, None])
        Krow = self._observed(Q, self.aidx)  # PᵀP over each column group's rows
        if step:  # H against the filled data: Pᵀ V̂ = Pᵀ (M⊙V) + (PᵀP − Krow_b) H_b
            G, nb = self.design.G, self.design.nb
            Qall = Q.sum(dim=1)
            Hg = H.unflatten(-1, (G, nb)).transpose(1, 2)  # (B, G, rk, nb)
            fill = torch.matmul(Qall.unsqueeze(1) - Krow, Hg).transpose(1, 2).reshape(H.shape)
            hals_rows(H, Qall, num + fill, l1=self.pen.l1[k], l2=self.pen.l2[k], active=active)
            self.grams[c] = None
        self.rowgrams[c] = None  # the W factors change in the next sweep
        if not need_loss:
            return None
        cross = torch.mul(num, H).sum(dim=-1).sum(dim=-1, dtype=torch.float64)
        quad = torch.mul(Krow, self._grams(c)).sum(dim=(-1, -2)).sum(dim=-1, dtype=torch.float64)
        loss = (0.5 * (self.vnorm2 - 2.0 * cross + quad)).clamp_min(0.0)
        return loss + self.pen.value([*Ws, H])

    def loss(self) -> torch.Tensor:
        """Training objectives of the current factors (C·B,), before the first sweep."""
        torch.bmm(self.W1T.view(self.F, -1, self.W1T.shape[-1]), self.V, out=self.BT)
        return torch.cat(
            [self._update_h(c, None, True, step=False) for c in range(len(self.ranks))]  # type: ignore[misc]
        )

    def factors(self) -> tuple[list[list[torch.Tensor]], list[torch.Tensor]]:
        """Every fit's factors in V's row and column order (copies)."""
        Ws = [[self.design.unpad_rows(W[0]), *[x.clone() for x in W[1:]]] for W in self.Ws]
        return Ws, [self.design.unpad_cols(H) for H in self.H]


def run_block_cv(
    solver: BlockCVSolver, *, max_iter: int, tol: float, check_every: int
) -> BlockFitOutcome:
    """Iterate ``solver`` as `dnmf._solvers.loop.iterate` iterates one masked fit: every
    ``check_every`` iterations a fit whose training objective fell by less than ``tol``
    (relative) since the previous check is converged and frozen."""
    C, B = len(solver.ranks), solver.B
    converged = torch.zeros(C * B, dtype=torch.bool)
    n_iter = torch.full((C * B,), max_iter, dtype=torch.int64)
    prev = solver.loss().cpu()
    loss = prev
    active: list[torch.Tensor | None] = [None] * C
    it = 0
    with torch.no_grad():
        for it in range(1, max_iter + 1):
            check = tol > 0 and it % check_every == 0
            need = check or it % check_every == 0 or it == max_iter
            out = solver.sweep(active, need)
            if out is None:
                continue
            loss = out.cpu()
            if not check:
                continue
            rel = (prev - loss) / prev.clamp_min(np.finfo(np.float64).tiny)
            newly = (rel < tol) & ~converged
            n_iter[newly] = it
            converged |= newly
            prev = loss
            if bool(converged.all()):
                break
            if bool(converged.any()):
                dev = solver.V.device
                active = [(~converged[c * B : (c + 1) * B]).to(dev) for c in range(C)]
    n_iter[~converged] = it
    Ws, H = solver.factors()
    return BlockFitOutcome(
        Ws, H, n_iter.view(C, B).numpy(), converged.view(C, B).numpy(), loss.view(C, B).numpy()
    )
