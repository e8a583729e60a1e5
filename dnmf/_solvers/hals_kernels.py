"""The exact block updates of `dnmf._solvers.hals` and what one pass of each costs.

* `hals_rows`: one HALS pass over the rows of a factor (``W1ᵀ`` or ``H``) against a Gram
  matrix, the rows in order (Gauss–Seidel); on the host a numpy loop over views of the
  tensors' memory.
* `cd_entries`: one pass of exact coordinate descent over the entries of a middle layer,
  coupled through ``Q ⊗ R``; on the host a float64 numpy loop.
* `sweep_cost`: the cost of a pass in multiply-adds of a matrix product, which sets the
  accelerated solvers' inner budgets (Gillis & Glineur's ρ) with what the loops really spend.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .linalg import _mm

#: One entry of the middle layers' coordinate-descent loop costs a few µs of interpreter
#: time, about what a matrix product spends on this many multiply-adds; it sets their ρ.
ENTRY_COST = 20_000
#: A HALS row update (`_hals_rows_host`) in multiply-adds of a matrix product of the same
#: time: ``ROW_COST + N·(ROW_RANK_COST·r + ROW_ELEMENT_COST)`` for a row of ``N`` entries
#: against ``r`` others (least squares over r = 8…64, N = 96…8192, two threads: 380 000
#: fixed, 126 per entry, 1.65 per entry and rank). Counting its flops alone (``N·r``, as
#: Gillis & Glineur do) overstates ρ tenfold at rank 16, and the inner sweeps then cost more
#: than the products they are meant to amortise.
ROW_COST = 400_000
ROW_ELEMENT_COST = 120
ROW_RANK_COST = 2


def sweep_cost(rows_loop: bool, rows: int, cols: int) -> float:
    """Multiply-adds one sweep of a ``rows × cols`` block is worth: by the row model above
    for a HALS row loop (``rows_loop``), else by its flops (a multiplicative step is a few
    whole-block operations). The model depends on the shapes only, so a batch takes the
    decisions of its matrices fitted one by one and every column shard the same ones; it is
    calibrated on the host's single-matrix loop (a batch shares a row's overhead among its
    matrices, so its inner budgets come out on the small side)."""
    if rows_loop:
        return rows * (ROW_COST + cols * (ROW_RANK_COST * rows + ROW_ELEMENT_COST))
    return cols * rows * (rows + 1)


def _inverse_curvature(diag: torch.Tensor, active: torch.Tensor | None) -> torch.Tensor:
    """1 / diag where diag > 0, else 0 (a coordinate with no curvature is left as it is);
    0 for the frozen matrices of a batch."""
    tiny = torch.finfo(diag.dtype).tiny
    inv = torch.where(diag > 0, 1.0 / diag.clamp_min(tiny), torch.zeros_like(diag))
    if active is not None:
        inv = inv * active.view(-1, *([1] * (diag.ndim - 1))).to(inv.dtype)
    return inv


def hals_rows(
    X: torch.Tensor,
    G: torch.Tensor,
    C: torch.Tensor,
    *,
    l1: float = 0.0,
    l2: float = 0.0,
    active: torch.Tensor | None = None,
    track: bool = False,
) -> torch.Tensor | None:
    """One HALS pass over the rows of ``X`` (``(…, r, N)``, in place): row ``t`` becomes the
    exact minimizer of ``½⟨G, X Xᵀ⟩ − ⟨C, X⟩ + l1·ΣX + ½·l2·‖X‖²`` with the other rows fixed,

        X_t ← max(0, X_t + (C_t − l1 − (G X)_t − l2·X_t) / (G_tt + l2)),

    the rows in order, each seeing the rows before it already updated (Gauss–Seidel).
    ``active`` (batches): matrices to update. ``track``: return ``‖ΔX‖²`` of the pass in
    float64 (per matrix of a batch), the accelerated solvers' stopping measure; else None.
    """
    inv = _inverse_curvature(G.diagonal(dim1=-2, dim2=-1) + l2, active)
    if X.ndim == 2 and X.device.type == "cpu":
        Gn = G.detach().numpy()
        if l2:  # (G + l2·I) X carries the l2 term, so the row loop has no branch
            Gn = Gn + l2 * np.eye(Gn.shape[-1], dtype=Gn.dtype)
        Cn = C.detach().numpy() - l1 if l1 else C.detach().numpy()
        change = _hals_rows_host(X.detach().numpy(), Gn, Cn, inv.tolist(), track)
        return torch.tensor(change, dtype=torch.float64) if track else None
    return tracked(X, lambda _: _hals_rows_torch(X, G, C, inv, l1, l2))(None, track)


def tracked(X: torch.Tensor, update: Callable[[torch.Tensor | None], None]):
    """``update(active)`` of ``X`` in place as a step of the accelerated solvers' inner loop:
    ``step(active, track)`` returns ``‖ΔX‖²`` in float64 (per matrix of a batch) when
    ``track``, else None."""

    def step(active, track: bool) -> torch.Tensor | None:
        before = X.clone() if track else None
        update(active)
        if before is None:
            return None
        return (X - before).square().sum(dim=(-2, -1), dtype=torch.float64)

    return step


def _hals_rows_torch(
    X: torch.Tensor, G: torch.Tensor, C: torch.Tensor, inv: torch.Tensor, l1: float, l2: float
) -> None:
    """`hals_rows` as torch calls: a loop over rows for one matrix (any device), over rows
    vectorized across the matrices for a batch. Each row is the exact minimizer written
    without ``X_t`` itself,

        X_t ← max(0, inv_t·(C_t − l1 − A_t X)),   A = G + l2·I with a zero diagonal.

    A batch folds ``inv`` into the operands once per pass (``b = inv·(C − l1)``, ``A`` scaled
    by ``inv``), so that a row is two calls, ``max(0, b_t − A_t X)``: each call costs tens of
    µs whatever its size (a batch's rows are small), so the calls set the pass's time. A
    frozen matrix (``inv_t = 0``) then has ``A_t = −e_t``, ``b_t = 0`` and keeps its row. One
    matrix (a GPU's, maybe large) scales row by row instead and allocates no factor-sized
    ``b``; it skips rows without curvature."""
    r = X.shape[-2]
    A = G + l2 * torch.eye(r, dtype=X.dtype, device=X.device) if l2 else G.clone()
    A.diagonal(dim1=-2, dim2=-1).zero_()
    out = torch.empty_like(X[..., :1, :])
    if X.ndim == 2:
        XT, row = X.T, out[0]
        for t, it in enumerate(inv.tolist()):
            if it == 0.0:
                continue
            torch.addmv(C[t], XT, A[t], alpha=-1, out=row)
            if l1:
                row.sub_(l1)
            torch.clamp_min(row.mul_(it), 0.0, out=X[t])
        return
    scale = inv.to(X.dtype).unsqueeze(-1)
    A.mul_(scale).diagonal(dim1=-2, dim2=-1).copy_((inv == 0).to(X.dtype).neg())
    b = (C - l1 if l1 else C) * scale
    # the rows as views, made in one call each (slicing them one by one costs more)
    for bt, At, Xt in zip(b.split(1, dim=-2), A.split(1, dim=-2), X.split(1, dim=-2)):
        torch.baddbmm(bt, At, X, alpha=-1, out=out)
        torch.clamp_min(out, 0.0, out=Xt)


def _hals_rows_host(
    X: np.ndarray, G: np.ndarray, C: np.ndarray, inv: list[float], track: bool = False
) -> float:
    """`hals_rows` for one matrix on the CPU, in place on numpy views of the tensors: a row
    costs three numpy calls (a few µs) against about 40 µs for the same torch calls with two
    threads, whose pool's wake-ups dominate operations this small. Returns ``‖ΔX‖²`` when
    ``track`` (else 0), from a copy of ``X`` taken before the pass (three numpy calls over
    the block: a third of the torch clone, difference and sum at 16 × 4096)."""
    before = X.copy() if track else None
    buf = np.empty(X.shape[1], dtype=X.dtype)
    for t, it in enumerate(inv):
        if it == 0.0:
            continue
        np.dot(G[t], X, out=buf)
        np.subtract(C[t], buf, out=buf)
        buf *= it
        row = X[t]
        row += buf
        np.maximum(row, 0.0, out=row)
    if before is None:
        return 0.0
    np.subtract(X, before, out=before)
    flat = before.ravel()
    return float(np.dot(flat, flat))


def cd_entries(
    X: torch.Tensor,
    Q: torch.Tensor,
    R: torch.Tensor,
    B: torch.Tensor,
    *,
    l1: float = 0.0,
    l2: float = 0.0,
    active: torch.Tensor | None = None,
) -> None:
    """One pass of exact coordinate descent over the entries of ``X`` (``(…, a, b)``, in
    place) on ``½⟨Q X R, X⟩ − ⟨B, X⟩ + l1·ΣX + ½·l2·‖X‖²`` (``Q``, ``R`` symmetric PSD),
    column by column, each entry

        X_ij ← max(0, X_ij − ((Q X R)_ij − B_ij + l1 + l2·X_ij) / (Q_ii R_jj + l2)).
    """
    if X.ndim == 2:
        Xn, Qn, Rn, Bn = (t.detach().to("cpu", torch.float64).numpy() for t in (X, Q, R, B))
        out = _cd_entries_host(Xn, Qn, Rn, Bn, l1, l2)
        X.copy_(torch.from_numpy(out))
        return
    Y = _mm(X, R)  # X R, kept current as entries change
    qd = Q.diagonal(dim1=-2, dim2=-1)
    rd = R.diagonal(dim1=-2, dim2=-1)
    on = None if active is None else active.to(X.dtype)
    for j in range(X.shape[-1]):
        for i in range(X.shape[-2]):
            inv = _inverse_curvature(qd[:, i] * rd[:, j] + l2, None)
            if on is not None:
                inv = inv * on
            x = X[:, i, j]
            g = (Q[:, i, :] * Y[:, :, j]).sum(-1) - B[:, i, j] + l1 + l2 * x
            d = (x - g * inv).clamp_min(0.0) - x
            X[:, i, j] += d
            Y[:, i, :] += d.unsqueeze(-1) * R[:, j, :]


def _cd_entries_host(X, Q, R, B, l1: float, l2: float) -> np.ndarray:
    """`cd_entries` for one matrix, in float64 numpy (a Python loop over entries costs
    a few µs each here, against tens for the same loop of torch calls)."""
    X = np.array(X, dtype=np.float64, order="F")  # columns contiguous: the sweep's order
    Yt = np.ascontiguousarray((X @ R).T)  # (X R)ᵀ: row j is column j of X R
    Qc = np.ascontiguousarray(Q)
    qd, rd = np.diag(Q).tolist(), np.diag(R).tolist()
    for j in range(X.shape[1]):
        Rj, Ytj, xj, bj, rjj = np.ascontiguousarray(R[j]), Yt[j], X[:, j], B[:, j].tolist(), rd[j]
        for i in range(X.shape[0]):
            h = qd[i] * rjj + l2
            if h <= 0:
                continue
            old = xj[i]
            new = old - (float(Qc[i] @ Ytj) - bj[i] + l1 + l2 * old) / h
            if new < 0.0:
                new = 0.0
            if new != old:
                xj[i] = new
                Yt[:, i] += (new - old) * Rj
    return X
