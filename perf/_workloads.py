"""The workloads of ``perf.time_to_target`` that each fit runs in a process of its own: sparse
β = 2 and Kullback–Leibler fits, a tall dense matrix, minibatches from a memory-mapped file and
the rank search with the library's defaults.

The parent writes each matrix once to a scratch folder (`prepare`: CSR as its three arrays, a
dense matrix as ``.npy``); every process reads it back (`load`: ``np.load``, no temporary copy;
the minibatch matrix memory-mapped, never read whole by dnmf), so all rows fit the same numbers
and each process's memory is its fit's plus the matrix's (`perf._isolated`).

The rows (`run_row`, called in the child processes, each after a fit of a tiny matrix by the
same library, so that first-call costs stay out of the timing as in the in-process cases):

* the **reference** (scikit-learn's fit with its defaults, untraced): its seconds, iterations
  and final loss; the target of the case is that loss, and "its time to the target" is its
  whole fit (it ends there);
* **traced** dnmf rows: the library's default call, stopped once its loss reaches the target
  (or a time cap), its loss recorded through ``callback`` (`factorize`) or after each pass
  (`MiniBatchDeepNMF`: the loss of the codes `transform` gives with the dictionary so far,
  over the whole matrix; the seconds of that transform count, as `fit_transform` would spend
  them once);
* the rank search: `dnmf.select_ranks` with its defaults, its seconds and its choice.

Losses are computed in float64 in ``O((m + n)·r)`` extra memory: ``½‖V − WH‖²`` from
``‖V‖² − 2⟨V Hᵀ, W⟩ + ⟨WᵀW, HHᵀ⟩`` for sparse ``V`` and from blocks of rows of the residual
for dense ``V``; the generalized Kullback–Leibler divergence from the nonzeros and
``Σ WH = (1ᵀW)(H1)``, as scikit-learn's ``_beta_divergence`` (``WH`` floored at its
``EPSILON`` inside the logarithm).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch  # noqa: F401 - loaded once in the forkserver (perf._isolated.PRELOAD)
from sklearn.decomposition import NMF, MiniBatchNMF

import dnmf
from perf import _problems
from perf import _traces as tr

#: scikit-learn's floor of ``W H`` in its β-divergences.
SK_EPSILON = float(np.finfo(np.float32).eps)
#: Rows of the dense residual formed at once by `frobenius`.
LOSS_ROWS = 512


# -------------------------------------------------------------------------- the matrices
@dataclass(frozen=True)
class Problem:
    """A matrix written by `prepare`: ``kind`` 'csr' (a folder of ``data``, ``indices``,
    ``indptr`` ``.npy`` files), 'dense' (one ``.npy``, read whole) or 'memmap' (one ``.npy``,
    memory-mapped read-only)."""

    kind: str
    path: str
    shape: tuple[int, int]
    dtype: str
    nbytes: int  # the matrix's own size in memory (its CSR arrays, or m·n entries)
    nnz: int | None = None


def save(V: Any, path: Path, kind: str) -> Problem:
    """Write ``V`` (scipy sparse for 'csr', an array otherwise) under ``path``."""
    if kind == "csr":
        V = sp.csr_matrix(V)
        path.mkdir(parents=True, exist_ok=True)
        for name in ("data", "indices", "indptr"):
            np.save(path / f"{name}.npy", getattr(V, name))
        nbytes = int(V.data.nbytes + V.indices.nbytes + V.indptr.nbytes)
        return Problem(kind, str(path), tuple(V.shape), str(V.dtype), nbytes, int(V.nnz))
    np.save(path, V)
    return Problem(kind, str(path), tuple(V.shape), str(V.dtype), int(V.nbytes))


def written(path: Path, kind: str = "memmap") -> Problem:
    """The `Problem` of a ``.npy`` file already written (`_problems.write_planted_rows`)."""
    X = np.load(path, mmap_mode="r")
    return Problem(kind, str(path), tuple(X.shape), str(X.dtype), int(X.nbytes))


def load(p: Problem) -> Any:
    """The matrix of ``p``: a scipy CSR matrix, an array, or a read-only memmap."""
    if p.kind == "csr":
        d = Path(p.path)
        arrays = [np.load(d / f"{name}.npy") for name in ("data", "indices", "indptr")]
        return sp.csr_matrix(tuple(arrays), shape=p.shape)
    return np.load(p.path, mmap_mode="r" if p.kind == "memmap" else None)


# -------------------------------------------------------------------------- losses
def frobenius(V: Any, W: np.ndarray, H: np.ndarray) -> float:
    """½‖V − W H‖² in float64 (see the module docstring)."""
    W, H = np.asarray(W, dtype=np.float64), np.asarray(H, dtype=np.float64)
    if sp.issparse(V):
        V = V.tocsr()
        vv = float(np.dot(V.data.astype(np.float64), V.data.astype(np.float64)))
        cross = float(np.sum(np.asarray(V @ H.T) * W))
        quad = float(np.sum((W.T @ W) * (H @ H.T)))
        return 0.5 * max(vv - 2.0 * cross + quad, 0.0)
    total = 0.0
    for i in range(0, V.shape[0], LOSS_ROWS):
        R = np.asarray(V[i : i + LOSS_ROWS], dtype=np.float64) - W[i : i + LOSS_ROWS] @ H
        total += float(np.einsum("ij,ij->", R, R))
    return 0.5 * total


def kullback_leibler(V: Any, W: np.ndarray, H: np.ndarray) -> float:
    """The generalized KL divergence ``D(V | W H)`` in float64 (see the module docstring)."""
    W, H = np.asarray(W, dtype=np.float64), np.asarray(H, dtype=np.float64)
    C = sp.coo_matrix(V)
    v = C.data.astype(np.float64)
    keep = v > 0
    rows, cols, v = C.row[keep], C.col[keep], v[keep]
    at_nz = 0.0
    for i in range(0, len(v), 1 << 16):
        j = slice(i, i + (1 << 16))
        wh = np.maximum(np.einsum("ij,ji->i", W[rows[j]], H[:, cols[j]]), SK_EPSILON)
        at_nz += float(np.dot(v[j], np.log(v[j] / wh)) - v[j].sum())
    return at_nz + float(W.sum(axis=0) @ H.sum(axis=1))


def loss(V: Any, W: np.ndarray, H: np.ndarray, beta: float) -> float:
    return frobenius(V, W, H) if beta == 2 else kullback_leibler(V, W, H)


# -------------------------------------------------------------------------- the rows
def sklearn_estimator(method: str, rank: int) -> Any:
    """The scikit-learn estimator of a reference row, with its defaults (and a seed)."""
    if method == "sklearn NMF()":
        return NMF(n_components=rank, random_state=0)
    if method == "sklearn NMF(solver='mu', beta_loss='kullback-leibler')":
        return NMF(n_components=rank, solver="mu", beta_loss="kullback-leibler", random_state=0)
    if method == "sklearn MiniBatchNMF()":
        return MiniBatchNMF(n_components=rank, random_state=0)
    raise ValueError(f"unknown reference row {method!r}")


#: The reference rows: scikit-learn's own fits, whose final loss is the target.
REFERENCES = (
    "sklearn NMF()",
    "sklearn NMF(solver='mu', beta_loss='kullback-leibler')",
    "sklearn MiniBatchNMF()",
)
#: The traced rows.
TRACED = ("dnmf default", "dnmf MiniBatchDeepNMF()")


def run_row(
    p: Problem,
    method: str,
    rank: int,
    beta: float,
    target: float,
    cap_s: float,
    device: str = "cpu",
) -> Any:
    """One row of a workload case on the matrix of ``p`` (in its own process): a
    reference's `Reference` or a traced row's `perf._traces.Trace` (dnmf fitting on
    ``device``; the matrix moves there inside the timed call). The row's library runs once on
    a tiny matrix first, so that its first-call costs stay out of the timing."""
    if method not in REFERENCES + TRACED:
        raise ValueError(f"unknown row {method!r}")
    warm_up(method, p, beta, device)
    V = load(p)
    if method in REFERENCES:
        return reference(V, method, rank, beta)
    rec = tr.Recorder(target, cap_s)
    if method == "dnmf default":
        return dnmf_default(V, rank, beta, rec, device)
    return dnmf_minibatch(V, rank, rec, device)


def warm_up(method: str, p: Problem, beta: float, device: str = "cpu") -> None:
    """The row's fit on a tiny matrix of the same kind (sparse or dense, dtype, β)."""
    V: Any = _problems.sparse_random(40, 30, 0.2, 0, p.dtype)
    if beta == 1:  # counts
        V.data = np.ceil(3 * V.data)
    if p.kind != "csr":
        V = V.toarray()
    if method in REFERENCES:
        reference(V, method, 3, beta)
    elif method == "dnmf default":
        dnmf_default(V, 3, beta, tr.Recorder(0.0, 0.05), device)
    else:
        dnmf_minibatch(V, 3, tr.Recorder(0.0, 0.05), device)


@dataclass
class Reference:
    """An untraced scikit-learn fit: its seconds, iterations and final loss."""

    seconds: float
    n_iter: int
    loss: float


def reference(V: Any, method: str, rank: int, beta: float) -> Reference:
    est = sklearn_estimator(method, rank)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        W = est.fit_transform(V)
        seconds = time.perf_counter() - t0
    return Reference(seconds, int(est.n_iter_), loss(V, W, est.components_, beta))


def dnmf_default(V: Any, rank: int, beta: float, rec: tr.Recorder, device: str = "cpu") -> tr.Trace:
    """``dnmf.factorize(V, rank, beta=beta)`` (its defaults: ``solver='auto'``, NNDSVDa; the
    loss recorded every iteration for β = 2 and every ``check_every`` = 10 for β = 1), traced
    by its callback until the target; the loss of the returned factors, computed here, is kept
    in ``extra['exact_final_loss']``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec.start()
        res = dnmf.factorize(
            V,
            rank,
            beta=beta,
            max_iter=10**7,
            tol=0,
            seed=0,
            callback=rec.point,
            device=device,
        )
    rec.trace.extra["exact_final_loss"] = loss(V, res.W(), res.H, beta)
    return rec.trace


def minibatch_settings(rank: int) -> dict[str, Any]:
    """The settings both minibatch rows share: scikit-learn's ``MiniBatchNMF`` defaults of the
    batch size and forget factor (dnmf's are the same), a seed."""
    return {"n_components": rank, "batch_size": 1024, "forget_factor": 0.7, "random_state": 0}


def dnmf_minibatch(X: Any, rank: int, rec: tr.Recorder, device: str = "cpu") -> tr.Trace:
    """``dnmf.MiniBatchDeepNMF`` (its defaults, the settings of `minibatch_settings`; no early
    stop) fitted on ``X`` (rows are samples, as scikit-learn's), traced after every pass by the
    loss over all of ``X`` of the codes its `transform` solves with the dictionary so far; the
    clock is paused during that transform, and its seconds are added to the point's (a
    `fit_transform` ending there would spend them once)."""
    est = dnmf.MiniBatchDeepNMF(
        **minibatch_settings(rank), tol=0, max_no_improvement=None, max_iter=10**6, device=device
    )
    steps_per_pass = -(-X.shape[0] // est.batch_size)
    count = [0]
    step = est._online_step  # the instance's step, wrapped as perf._traces wraps scikit-learn's

    def traced(V: Any, rho: float) -> Any:
        out = step(V, rho)
        count[0] += 1
        if count[0] % steps_per_pass == 0:
            t = time.perf_counter()
            full = est._transform(X)[1]  # streams X a minibatch at a time, as transform does
            spent = time.perf_counter() - t
            rec.paused += spent
            stop = rec.point(count[0] // steps_per_pass, full)
            rec.trace.seconds[-1] += spent
            if stop:
                raise tr.Stop
        return out

    est._online_step = traced  # type: ignore[method-assign]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec.start()
        try:
            est.fit(X)
        except tr.Stop:
            pass
    return rec.trace


def select_defaults(
    seed: int, m: int, n: int, noise: float, candidates: list[int], device: str = "cpu"
) -> dict:
    """`dnmf.select_ranks` with its defaults on the planted rank-6 problem
    ``perf._problems.planted_layers(seed, (6,), m, n, noise)`` (seeded by ``seed`` too), its
    fits on ``device``."""
    V = _problems.planted_layers(seed, (6,), m=m, n=n, noise=noise)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        sel = dnmf.select_ranks(V, candidates, seed=seed, device=device)
        seconds = time.perf_counter() - t0
    return {"seed": seed, "best": int(sel.best), "seconds": seconds}


# -------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Workload:
    """A case at full size (``scale`` 1): its matrix, rank, β, reference and traced rows."""

    about: str
    m: int
    n: int
    rank: int
    density: float | None = None  # sparse: the share of nonzeros; None: dense
    beta: float = 2.0
    dtype: str = "float64"
    reference: str = "sklearn NMF()"
    rows: tuple[str, ...] = ("dnmf default",)
    scale_columns: bool = True  # False: --scale shrinks the rows only (a tall matrix)


WORKLOADS: dict[str, Workload] = {
    "sparse-20k": Workload("uniform nonzeros, CSR", 20000, 20000, 20, 0.0005),
    "sparse-20k-f32": Workload("uniform nonzeros, CSR", 20000, 20000, 20, 0.0005, dtype="float32"),
    "sparse-200k": Workload("uniform nonzeros, CSR", 200000, 20000, 20, 0.0005),
    "kl-counts": Workload(
        "Poisson counts of a planted rate of the fitted rank, CSR, Kullback–Leibler",
        3000,
        5000,
        20,
        0.01,
        beta=1.0,
        reference="sklearn NMF(solver='mu', beta_loss='kullback-leibler')",
    ),
    "dense-tall": Workload(
        "planted at the fitted rank + 10 % noise, column-major (perf._problems.planted_lowrank)",
        100000,
        200,
        10,
        scale_columns=False,
    ),
    "minibatch-memmap": Workload(
        "planted at the fitted rank + 10 % noise, row-major .npy, memory-mapped",
        200000,
        1000,
        20,
        dtype="float32",
        reference="sklearn MiniBatchNMF()",
        rows=("dnmf MiniBatchDeepNMF()",),
    ),
}


def sized(name: str, scale: float) -> Workload:
    """``WORKLOADS[name]`` at ``scale``: rows (and columns, unless ``scale_columns`` is off)
    times ``scale``, at least 8; a sparse matrix's density divided by the columns' factor
    (at most 1), so each row keeps its number of nonzeros; the rank at most half the smaller
    side."""
    w = WORKLOADS[name]
    m = max(8, int(round(w.m * scale)))
    col_scale = scale if w.scale_columns else 1.0
    n = max(8, int(round(w.n * col_scale)))
    density = None if w.density is None else min(1.0, w.density / (n / w.n))
    rank = max(1, min(w.rank, min(m, n) // 2))
    return replace(w, m=m, n=n, rank=rank, density=density)


def prepare(name: str, w: Workload, seed: int, folder: Path) -> Problem:
    """Write the matrix of the sized workload ``w`` (`sized`) to ``folder``."""
    path = folder / name
    if name == "kl-counts":
        assert w.density is not None
        V = _problems.poisson_counts(w.m, w.n, w.density, w.rank, seed, np.dtype(w.dtype))
        return save(V, path, "csr")
    if w.density is not None:
        return save(_problems.sparse_random(w.m, w.n, w.density, seed, w.dtype), path, "csr")
    if name == "minibatch-memmap":
        npy = path.with_suffix(".npy")
        return written(_problems.write_planted_rows(npy, w.m, w.n, w.rank, seed, w.dtype))
    V = _problems.planted_lowrank(w.m, w.n, w.rank, seed, w.dtype)
    return save(V, path.with_suffix(".npy"), "dense")


#: The rank search's problem: planted rank 6, 80 × 120, noise at 5 % of the mean,
#: candidates 2…10 (``perf.rank_selection_planted``'s ``defaults_80x120_rank6``).
SELECTION = {"m": 80, "n": 120, "noise": 0.05, "candidates": list(range(2, 11)), "planted": 6}
