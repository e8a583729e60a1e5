"""``python -m perf.time_to_target``: seconds until each library's fit is as accurate as
scikit-learn's default ``NMF()``.

For each case the target is the loss ½‖V − WH‖² (float64) that scikit-learn's ``NMF(rank)``
(solver ``cd``, NNDSVDa, ``tol=1e-4``) reaches when it stops by itself; deep models have no
scikit-learn counterpart, so their target is the loss ``dnmf``'s multiplicative updates reach
after ``--deep-iters`` joint iterations at that depth. Every method then runs, from its own
default initialisation, until its loss first reaches the target (or a time cap), in
interleaved rounds (:func:`perf._timing.interleaved`: rotated order, a rest before each
call). Reported per method: seconds and iterations to the target and to 1.001× it, the final
loss, and a loss-versus-seconds plot. Cases (``--quick``: smaller ones, for development):

Every library gets the same matrix ``V`` (scikit-learn's ``X`` is ``V``, so its ``W`` is dnmf's
``W1``).

* ``faces-r64``/``faces-r16``: the 750 faces of the face set, 64×64 gray, one per column
  (4096 × 750), loaded by the project's loader;
* ``lowrank``: planted rank 64 plus 10 % noise, 4096 × 2048 (``perf._problems.planted_lowrank``),
  rank 64;
* ``sparse``: 95 % zeros, uniform nonzeros, 8192 × 4096 as a scipy CSR matrix, rank 32;
* ``deep-k2``/``deep-k3``: the faces, ranks [64, 32] and [64, 32, 16];
* ``batched``: 256 random 64 × 96 matrices, rank 8, each with its own scikit-learn target,
  against a loop of scikit-learn calls.

The deep targets take long to compute; ``--targets FILE`` keeps them (read when the settings
match, written otherwise). Results are one JSON file, a markdown table and a PNG.

The workload cases (run with ``--only``; ``--scale`` shrinks them, see
`perf._workloads.sized`) run every fit in a process of its own and add each row's peak
resident memory (``getrusage``; `perf._isolated`). Their target is the final loss of
scikit-learn's own fit with its defaults (whose time to it is that fit's), and dnmf's default
call races to it:

* ``sparse-20k``/``sparse-20k-f32``/``sparse-200k``: 20000 × 20000 (float64 and float32) and
  200000 × 20000 CSR matrices with 0.05 % uniform nonzeros, rank 20, scikit-learn's
  ``NMF()`` (``cd``, NNDSVDa) against ``dnmf.factorize(V, 20)`` on the scipy matrix;
* ``kl-counts``: Poisson counts, 3000 × 5000 at 1 % nonzero (CSR), rank 20, β = 1:
  ``NMF(solver='mu', beta_loss='kullback-leibler')`` against ``factorize(V, 20, beta=1)``;
* ``dense-tall``: 100000 × 200 dense, column-major, rank 10;
* ``minibatch-memmap``: 200000 × 1000 float32 written to a ``.npy`` file and memory-mapped,
  rank 20, ``MiniBatchNMF`` against ``dnmf.MiniBatchDeepNMF`` (batch 1024, forget factor 0.7);
* ``rank-selection-defaults``: ``dnmf.select_ranks`` with its defaults on the planted rank-6
  80 × 120 problem (noise 5 % of the mean, candidates 2…10), seconds and choice per seed.

``--busy-core N`` keeps a CPU-bound process pinned to core ``N`` running for the whole run
(`perf._timing.busy_core`): the times of a shared machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from perf import _cli, _isolated, _problems, _workloads
from perf import _traces as tr
from perf._timing import busy_core, check_core, environment, interleaved

FORMAT_VERSION = 1
LEVELS = (1.0, 1.001)  # the target, and 0.1 % above it


@dataclass
class Case:
    """One matrix. Every library gets the same ``m × n`` matrix (``X`` is ``V`` itself), so
    scikit-learn's ``W`` is dnmf's ``W1`` and both update it first; only the libraries'
    initialisations differ (scikit-learn's randomized SVD draws are not dnmf's)."""

    name: str
    about: str
    V: Any
    X: Any
    rank: int
    device: str = "cpu"  # where dnmf fits; the other libraries run on the host CPU


def read_targets(path: Path | None) -> dict[str, Any]:
    """The cache of deep targets in ``path`` (``--targets``): empty when there is no file yet;
    a `UserError` naming the file when it is not such a cache."""
    if path is None or not path.exists():
        return {}
    cache = _cli.read_json_object(path, "--targets")
    for key, entry in cache.items():
        if not (
            isinstance(entry, dict)
            and all(isinstance(entry.get(k), (int, float)) for k in ("target", "seconds"))
        ):
            raise _cli.UserError(
                f"--targets {path} is not a cache of deep targets: entry {key!r} has no "
                "numeric 'target' and 'seconds'"
            )
    return cache


def _as_given(V: Any) -> Any:
    return V.tocsr() if sp.issparse(V) else np.ascontiguousarray(V)


def make_cases(
    quick: bool, faces: np.ndarray | None, seed: int = 0, device: str = "cpu"
) -> list[Case]:
    """The single-matrix cases (full or ``quick`` sizes); dnmf fits them on ``device``."""
    cases = []
    if faces is not None:
        for r in (16,) if quick else (64, 16):
            cases.append(
                Case(f"faces-r{r}", f"faces {faces.shape[0]}×{faces.shape[1]}", faces, None, r)
            )
    m, n, r = (1024, 512, 16) if quick else (4096, 2048, 64)
    V = np.ascontiguousarray(_problems.planted_lowrank(m, n, r, seed, "float32"))
    cases.append(Case("lowrank", f"planted rank {r} + noise, {m}×{n}", V, None, r))
    m, n, r = (2048, 1024, 8) if quick else (8192, 4096, 32)
    S = _problems.sparse_uniform(m, n, seed)
    cases.append(Case("sparse", f"95 % zeros, {m}×{n}, scipy CSR", S, None, r))
    for c in cases:
        c.X, c.device = _as_given(c.V), device
    return cases


def _dnmf(solver: str) -> Callable[[Case, tr.Recorder], tr.Trace]:
    """A one-layer dnmf fit of a case on its device (``V`` goes there inside the timed call)."""
    return lambda c, rec: tr.dnmf_fit(c.V, [c.rank], rec, solver, device=c.device)


SINGLE_METHODS: dict[str, Callable[[Case, tr.Recorder], tr.Trace]] = {
    "sklearn NMF()": lambda c, rec: tr.sklearn_nmf(c.X, c.rank, rec, "cd"),
    "sklearn NMF(solver='mu')": lambda c, rec: tr.sklearn_nmf(c.X, c.rank, rec, "mu"),
    "sklearn MiniBatchNMF()": lambda c, rec: tr.sklearn_minibatch(c.X, c.rank, rec),
    "torchnmf": lambda c, rec: tr.torchnmf_fit(c.X, c.rank, rec),
    "dnmf mu": _dnmf("mu"),
    "dnmf mu-acc": _dnmf("mu-acc"),
    "dnmf hals": _dnmf("hals"),
    "dnmf hals-acc": _dnmf("hals-acc"),
    "dnmf hals-acc-e": _dnmf("hals-acc-e"),
    "dnmf default": _dnmf("auto"),
}
DEEP_SOLVERS = ("mu", "mu-acc", "hals", "hals-acc", "hals-acc-e", "auto")
BATCHED_SOLVERS = ("mu", "hals", "hals-acc", "auto")
#: Solvers run from scikit-learn's own starts in the batched case.
FROM_SKLEARN_START = ("hals", "auto")
OPTIONAL_PEERS = {"torchnmf": "torchnmf"}  # row name -> the package it needs (the bench extra)


def _row_name(solver: str) -> str:
    """A dnmf solver's row in the tables: ``'auto'`` is the default."""
    return f"dnmf {'default' if solver == 'auto' else solver}"


def installed_methods() -> list[str]:
    """The rows of ``SINGLE_METHODS`` whose library is importable here; a peer from the
    optional ``bench`` extra that is not installed is left out (and named in the notes)."""
    return [m for m in SINGLE_METHODS if _importable(OPTIONAL_PEERS.get(m))]


def _importable(package: str | None) -> bool:
    if package is None:
        return True
    import importlib.util

    return importlib.util.find_spec(package) is not None


# -------------------------------------------------------------------------- summaries
def reach(trace: tr.Trace, target: Any, level: float) -> tuple[float | None, int | None]:
    """Seconds and iteration at which the trace first reaches ``level × target`` (every
    matrix of a batch), or ``(None, None)``."""
    goal = np.asarray(target, dtype=np.float64) * level
    for s, it, loss in zip(trace.seconds, trace.iters, trace.losses):
        if bool(np.all(np.asarray(loss) <= goal)):
            return s, it
    return None, None


def _thin(trace: tr.Trace, target: Any, keep: int = 300) -> dict[str, list]:
    """At most ``keep`` points, spread evenly in log-iterations, first and last kept; for a
    batch, the loss of each point is its worst ratio to the matrices' own targets."""
    n = len(trace.seconds)
    idx = np.unique(np.geomspace(1, n, num=min(n, keep)).astype(int) - 1) if n else []
    losses = [trace.losses[i] for i in idx]
    if losses and np.ndim(losses[0]):
        losses = [float(np.max(np.asarray(v) / np.asarray(target))) for v in losses]
    return {
        "seconds": [trace.seconds[i] for i in idx],
        "iters": [trace.iters[i] for i in idx],
        "losses": losses,
    }


def summarize(name: str, runs: list[tuple[float, tr.Trace]], target: Any) -> dict[str, Any]:
    """Per-round reach times, their medians, the final loss and one thinned trace."""
    rounds = []
    for wall, trace in runs:
        row: dict[str, Any] = {"wall_seconds": wall, "stop": trace.stop, **trace.extra}
        for lv in LEVELS:
            s, it = reach(trace, target, lv)
            row[f"seconds_to_{lv:g}"], row[f"iters_to_{lv:g}"] = s, it
        last = np.asarray(trace.losses[-1]) if trace.losses else np.array(np.nan)
        row["final_loss"] = float(last) if last.ndim == 0 else float(np.mean(last))
        row["final_over_target"] = float(np.max(last / np.asarray(target)))
        rounds.append(row)
    out: dict[str, Any] = {"method": name, "rounds": rounds, "trace": _thin(runs[0][1], target)}
    for lv in LEVELS:
        got = [r[f"seconds_to_{lv:g}"] for r in rounds]
        out[f"seconds_to_{lv:g}"] = statistics.median(got) if None not in got else None
        out[f"iters_to_{lv:g}"] = rounds[0][f"iters_to_{lv:g}"]
    out["final_loss"] = rounds[0]["final_loss"]
    out["final_over_target"] = rounds[0]["final_over_target"]
    return out


def _ratios(methods: list[dict[str, Any]], ref: str) -> None:
    """Per-round ratio to the reference method's time to the target (median over rounds)."""
    base = next(m for m in methods if m["method"] == ref)
    for m in methods:
        for lv in LEVELS:
            pairs = [
                (a[f"seconds_to_{lv:g}"], b[f"seconds_to_{lv:g}"])
                for a, b in zip(m["rounds"], base["rounds"])
            ]
            vals = [a / b for a, b in pairs if a is not None and b]
            m[f"ratio_to_sklearn_{lv:g}"] = (
                statistics.median(vals) if len(vals) == len(pairs) else None
            )


# -------------------------------------------------------------------------- the cases
def run_single(case: Case, rounds: int, cap_factor: float, methods: list[str], log) -> dict:
    """scikit-learn's default fit gives the target; every method races to it."""
    log = log or (lambda s: None)
    t0 = time.perf_counter()
    from sklearn.decomposition import NMF

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = NMF(n_components=case.rank, random_state=0)
        W = est.fit_transform(case.X)
    ref_s = time.perf_counter() - t0
    target = tr.exact_loss(case.X, W, est.components_)
    cap = max(cap_factor * ref_s, 2.0)
    log(f"{case.name}: target {target:.6e} (scikit-learn {ref_s:.2f} s, {est.n_iter_} its)")
    fns = [lambda m=m: SINGLE_METHODS[m](case, tr.Recorder(target, cap)) for m in methods]
    runs = interleaved(fns, rounds)
    out = [summarize(m, r, target) for m, r in zip(methods, runs)]
    _ratios(out, "sklearn NMF()")
    for m in out:
        log(
            f"  {m['method']:<26} to target {_fmt(m['seconds_to_1'])} s  final/target "
            f"{m['final_over_target']:.5f}"
        )
    return {
        "about": case.about,
        "rank": case.rank,
        "target": target,
        "reference": {"seconds": ref_s, "n_iter": int(est.n_iter_), "cap_seconds": cap},
        "methods": out,
    }


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def deep_target(
    V: np.ndarray, ranks: list[int], iters: int, pretrain: int, cache: dict, device: str = "cpu"
) -> dict:
    """Loss of dnmf's multiplicative updates after ``iters`` joint iterations (cached; the
    key leaves the device out: the same updates give the same loss up to rounding)."""
    import dnmf

    key = _key("deep", ranks, iters, pretrain, V.shape, float(V.sum(dtype=np.float64)))
    if key not in cache:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = dnmf.factorize(
                V,
                ranks,
                solver="mu",
                pretrain=pretrain,
                max_iter=iters,
                tol=0,
                seed=0,
                device=device,
            )
        cache[key] = {
            "ranks": ranks,
            "iters": iters,
            "pretrain": pretrain,
            "target": float(res.loss),
            "exact_loss": tr.exact_loss(V, res.W(), res.H),
            "seconds": time.perf_counter() - t0,
        }
    return cache[key]


def run_deep(
    V, ranks, rounds, iters, pretrain, cache, log, cap_factor: float = 1.5, device: str = "cpu"
) -> dict:
    log = log or (lambda s: None)
    tgt = deep_target(V, ranks, iters, pretrain, cache, device)
    target = tgt["target"]
    cap = cap_factor * tgt["seconds"] + 2.0
    log(f"deep {ranks}: target {target:.6e} (MU, {iters} iterations, {tgt['seconds']:.1f} s)")
    names = [_row_name(s) for s in DEEP_SOLVERS]
    fns = [
        lambda s=s: tr.dnmf_fit(
            V, ranks, tr.Recorder(target, cap), s, pretrain=pretrain, device=device
        )
        for s in DEEP_SOLVERS
    ]
    out = [summarize(n, r, target) for n, r in zip(names, interleaved(fns, rounds))]
    _ratios(out, "dnmf mu")  # deep: the ratio column is to dnmf's MU
    for m in out:
        log(f"  {m['method']:<26} to target {_fmt(m['seconds_to_1'])} s")
    return {
        "about": f"faces, ranks {ranks}",
        "ranks": ranks,
        "target": target,
        "reference": tgt,
        "methods": out,
    }


def run_batched(B, m, n, r, rounds, cap_factor, seed, log, device: str = "cpu") -> dict:
    """Every matrix's own scikit-learn target; a loop of scikit-learn calls against one
    batched dnmf call."""
    log = log or (lambda s: None)
    V, _, _ = _problems.random_problem(m, n, r, np.float32, seed + 7, batch=B)
    Xs = [np.ascontiguousarray(V[i]) for i in range(B)]

    def loop(random_state: int = 0):
        return tr.sklearn_fits(Xs, r, random_state)

    t0 = time.perf_counter()
    fits = loop()
    loop_s = time.perf_counter() - t0
    target = tr.exact_losses(Xs, fits)
    cap = max(cap_factor * loop_s, 2.0)
    log(f"batched {B} x {m}x{n} rank {r}: scikit-learn loop {loop_s:.2f} s")
    fns: list[Callable[[], Any]] = [loop] + [
        lambda s=s: tr.dnmf_fit(V, r, tr.Recorder(target, cap), s, device=device)
        for s in BATCHED_SOLVERS
    ]
    fns += [
        lambda s=s: _from_sklearn_start(V, Xs, r, target, cap, s, device)
        for s in FROM_SKLEARN_START
    ]
    runs = interleaved(fns, rounds)
    loop_times = [w for w, _ in runs[0]]
    out: dict[str, Any] = {
        "about": f"{B} random {m}×{n} matrices",
        "rank": r,
        "target_mean": float(target.mean()),
        "loop_seconds": loop_times,
        "methods": [],
        "control": _other_seed_control(Xs, loop(CONTROL_RANDOM_STATE), target),
    }
    names = [f"{_row_name(s)}, one batched call" for s in BATCHED_SOLVERS]
    names += [f"{_row_name(s)}, one batched call from {SKLEARN_START}" for s in FROM_SKLEARN_START]
    for name, rr in zip(names, runs[1:]):
        s = summarize(name, rr, target)
        for lv in LEVELS:
            ratios = [
                lw / t[f"seconds_to_{lv:g}"]
                for lw, t in zip(loop_times, s["rounds"])
                if t[f"seconds_to_{lv:g}"]
            ]
            s[f"speedup_{lv:g}"] = statistics.median(ratios) if len(ratios) == rounds else None
        last = np.asarray(rr[0][1].losses[-1])
        s["fraction_reached"] = float(np.mean(last <= target))
        s["mean_final_over_target"] = float(np.mean(last / target))
        out["methods"].append(s)
        log(
            f"  {name:<26} all targets {_fmt(s['seconds_to_1'])} s, "
            f"speed-up {_fmt(s['speedup_1'])}x"
        )
    return out


#: scikit-learn's ``random_state`` for the control: its NNDSVDa start comes from a randomized
#: SVD, so another seed starts each matrix a little elsewhere.
CONTROL_RANDOM_STATE = 1


def _other_seed_control(Xs, fits, target) -> dict[str, Any]:
    """How many matrices scikit-learn's own ``NMF()`` brings to the targets (its answers with
    ``random_state=0``) when only its seed changes: what "every matrix's target" asks of a
    start that is not scikit-learn's."""
    ratio = tr.exact_losses(Xs, fits) / target
    return {
        "random_state": CONTROL_RANDOM_STATE,
        "fraction_reached": float(np.mean(ratio <= 1.0)),
        "fraction_within_1.001": float(np.mean(ratio <= 1.001)),
        "worst_ratio": float(ratio.max()),
        "mean_ratio": float(ratio.mean()),
    }


#: The batched ablation's start: scikit-learn's own NNDSVDa factors of each matrix.
SKLEARN_START = "scikit-learn's starting factors"


def _from_sklearn_start(V, Xs, r, target, cap, solver: str, device: str = "cpu") -> tr.Trace:
    """One batched call of ``solver`` from the factors scikit-learn's ``NMF()`` starts each
    matrix from (its randomized-SVD NNDSVDa), their computation timed as part of the fit: it
    separates the solver's speed from where the start leads (the default's exact-SVD start
    ends some matrices in other local minima). From there ``'hals'`` is scikit-learn's cd."""
    from sklearn.decomposition._nmf import _initialize_nmf

    t0 = time.perf_counter()
    starts = [_initialize_nmf(X, r, init="nndsvda", random_state=0) for X in Xs]
    W0 = np.stack([w for w, _ in starts]).astype(V.dtype)
    H0 = np.stack([h for _, h in starts]).astype(V.dtype)
    rec = tr.Recorder(target, cap, offset_s=time.perf_counter() - t0)
    return tr.dnmf_fit(V, r, rec, solver, init="custom", Ws=[W0], H=H0, device=device)


# -------------------------------------------------------------------------- workload cases
def run_workload(
    name: str,
    scale: float,
    rounds: int,
    cap_factor: float,
    threads: int,
    seed: int,
    scratch: Path,
    log: Callable[[str], None] | None,
    device: str = "cpu",
) -> dict[str, Any]:
    """A workload case (`perf._workloads.WORKLOADS`): its matrix written to ``scratch``, the
    reference fit once for the target, then the reference and the traced rows in interleaved
    rounds, every fit in its own process (dnmf's on ``device``)."""
    log = log or (lambda s: None)
    w = _workloads.sized(name, scale)
    p = _workloads.prepare(name, w, seed, scratch)
    case: dict[str, Any] = {
        "about": w.about,
        "shape": list(p.shape),
        "nnz": p.nnz,
        "dtype": p.dtype,
        "rank": w.rank,
        "beta": w.beta,
        "matrix_mib": p.nbytes / 2**20,
    }
    first = _isolated.call(
        _workloads.run_row, p, w.reference, w.rank, w.beta, 0.0, 0.0, threads=threads
    )
    if first.error is not None:
        log(f"{name}: the reference fit failed: {first.error}")
        return {**case, "error": f"{w.reference}: {first.error}", "methods": []}
    ref = first.value
    target, cap = ref.loss, max(cap_factor * ref.seconds, 2.0)
    case.update(
        target=target,
        reference={
            "method": w.reference,
            "seconds": ref.seconds,
            "n_iter": ref.n_iter,
            "cap_seconds": cap,
            "peak_rss_mib": first.peak_rss_mib,
            "start_rss_mib": first.start_rss_mib,
        },
    )
    log(f"{name}: target {target:.6e} ({w.reference} {ref.seconds:.2f} s, {ref.n_iter} its)")
    methods = [w.reference, *w.rows]
    fns = [
        lambda m=m: _isolated.call(
            _workloads.run_row, p, m, w.rank, w.beta, target, cap, device, threads=threads
        )
        for m in methods
    ]
    rows = [_workload_row(m, r, target) for m, r in zip(methods, interleaved(fns, rounds))]
    _workload_ratios(rows)
    for m in rows:
        log(
            f"  {m['method']:<26} to target {_fmt(m['seconds_to_1'])} s, peak "
            f"{_fmt(m['peak_rss_mib'], '.0f')} MiB" + (f" ({m['error']})" if m["error"] else "")
        )
    case["methods"] = rows
    return case


def _workload_row(name: str, runs: list[tuple[float, Any]], target: float) -> dict[str, Any]:
    """Per-round reach times and memory of one row: a reference's time to the target is its
    whole fit (it ends at its final loss), a traced row's is read from its trace."""
    rounds, trace = [], None
    for wall, iso in runs:
        row: dict[str, Any] = {
            "wall_seconds": wall,
            "peak_rss_mib": iso.peak_rss_mib,
            "start_rss_mib": iso.start_rss_mib,
            "error": iso.error,
            "final_loss": None,
            "final_over_target": None,
        }
        for lv in LEVELS:
            row[f"seconds_to_{lv:g}"] = row[f"iters_to_{lv:g}"] = None
        v = iso.value
        if isinstance(v, _workloads.Reference):
            row.update(final_loss=v.loss, final_over_target=v.loss / target, stop="budget")
            for lv in LEVELS:
                row[f"seconds_to_{lv:g}"], row[f"iters_to_{lv:g}"] = v.seconds, v.n_iter
            v = tr.Trace(seconds=[v.seconds], iters=[v.n_iter], losses=[v.loss])
        elif isinstance(v, tr.Trace) and v.losses:
            row.update(stop=v.stop, **v.extra)
            row["final_loss"] = float(v.losses[-1])
            row["final_over_target"] = float(v.losses[-1]) / target
            for lv in LEVELS:
                row[f"seconds_to_{lv:g}"], row[f"iters_to_{lv:g}"] = reach(v, target, lv)
        if trace is None and isinstance(v, tr.Trace):
            trace = v
        rounds.append(row)
    out: dict[str, Any] = {"method": name, "rounds": rounds}
    out["trace"] = _thin(trace, target) if trace is not None else _thin(tr.Trace(), target)
    for lv in LEVELS:
        got = [r[f"seconds_to_{lv:g}"] for r in rounds]
        out[f"seconds_to_{lv:g}"] = statistics.median(got) if None not in got else None
        out[f"iters_to_{lv:g}"] = rounds[0][f"iters_to_{lv:g}"]
    for key in ("final_loss", "final_over_target", "start_rss_mib"):
        out[key] = rounds[0][key]
    peaks = [r["peak_rss_mib"] for r in rounds if r["peak_rss_mib"] is not None]
    out["peak_rss_mib"] = max(peaks) if peaks else None
    out["error"] = next((r["error"] for r in rounds if r["error"]), None)
    return out


def _workload_ratios(rows: list[dict[str, Any]]) -> None:
    """Per-round ratio of each row's time to the target to the reference's (the first row)
    in the same round, median over rounds; None unless every round has both."""
    base = rows[0]
    for m in rows:
        for lv in LEVELS:
            pairs = [
                (a[f"seconds_to_{lv:g}"], b[f"seconds_to_{lv:g}"])
                for a, b in zip(m["rounds"], base["rounds"])
            ]
            vals = [a / b for a, b in pairs if a is not None and b]
            m[f"ratio_to_sklearn_{lv:g}"] = (
                statistics.median(vals) if vals and len(vals) == len(pairs) else None
            )


def run_selection(
    seeds: int, threads: int, log: Callable[[str], None] | None, device: str = "cpu"
) -> dict[str, Any]:
    """``rank-selection-defaults``: one `dnmf.select_ranks` with its defaults per seed (the
    problem's seed and the search's), each in its own process, its fits on ``device``."""
    log = log or (lambda s: None)
    sel = _workloads.SELECTION
    runs = []
    for s in range(seeds):
        iso = _isolated.call(
            _workloads.select_defaults,
            s,
            sel["m"],
            sel["n"],
            sel["noise"],
            sel["candidates"],
            device,
            threads=threads,
        )
        row = {"seed": s, "best": None, "seconds": None, **(iso.value or {})}
        row.update(peak_rss_mib=iso.peak_rss_mib, error=iso.error)
        runs.append(row)
        log(f"rank selection seed {s}: chose {row['best']} ({_fmt(row['seconds'], '.1f')} s)")
    secs = [r["seconds"] for r in runs if r["seconds"] is not None]
    return {
        "about": f"planted rank {sel['planted']}, {sel['m']}×{sel['n']}, noise "
        f"{100 * sel['noise']:g} % of the mean, candidates {sel['candidates'][0]}–"
        f"{sel['candidates'][-1]}, select_ranks' defaults",
        "planted": sel["planted"],
        "candidates": sel["candidates"],
        "seeds": runs,
        "hits": sum(r["best"] == sel["planted"] for r in runs),
        "max_seconds": max(secs) if secs else None,
    }


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


# -------------------------------------------------------------------------- the run
def run_time_to_target(
    *,
    quick: bool = False,
    rounds: int = 2,
    threads: int = 2,
    cap_factor: float = 1.5,
    faces_dir: str | None = None,
    targets: Path | None = None,
    only: list[str] | None = None,
    seed: int = 0,
    device: str = "cpu",
    log: Callable[[str], None] | None = print,
    progress: Callable[[dict[str, Any]], None] | None = None,
    faces: np.ndarray | None = None,
    scale: float | None = None,
    busy: int | None = None,
    scratch: Path | None = None,
    selection_seeds: int = 10,
) -> dict[str, Any]:
    """Run the cases (``only``: a subset of `ALL_CASES`; default `CASES`) and return the
    JSON-ready dict; ``progress(partial)`` gets the results so far after every case. dnmf
    fits on ``device``; scikit-learn and torchnmf run on the host CPU with ``threads``
    threads. ``faces``: the face matrix already read (else read from ``faces_dir`` when a
    face case runs). The workload cases run at ``scale`` (default 1; 0.1 with ``quick``) and
    write their matrices to a temporary folder in ``scratch`` (default: the system's),
    removed at the end; ``rank-selection-defaults`` runs ``selection_seeds`` seeds. ``busy``:
    a core that a CPU-bound process holds for the whole run (`perf._timing.busy_core`)."""
    from threadpoolctl import threadpool_limits

    dev = check_device(device)
    unknown = sorted(set(only or ()) - set(cases_of(quick)))
    if unknown:
        raise ValueError(f"unknown cases {unknown}; the cases are {list(cases_of(quick))}")
    if busy is not None:
        check_core(busy)
    scale = (0.1 if quick else 1.0) if scale is None else scale
    if not (scale > 0 and np.isfinite(scale)):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")

    log = log or (lambda s: None)
    torch.set_num_threads(threads)
    cache = read_targets(targets)

    def want(name: str) -> bool:
        return name in only if only is not None else name in CASES

    deep_iters, pretrain = (1000, 50) if quick else (5000, 100)
    batch = (32, 64, 96, 8) if quick else (256, 64, 96, 8)
    results: dict[str, Any] = {}
    out = {
        "format_version": FORMAT_VERSION,
        "benchmark": "time-to-target",
        "config": {
            "quick": quick,
            "rounds": rounds,
            "threads": threads,
            "cap_factor": cap_factor,
            "deep_iters": deep_iters,
            "deep_pretrain": pretrain,
            "batch": list(batch),
            "seed": seed,
            "levels": list(LEVELS),
            "device": str(dev),
            "scale": scale,
            "selection_seeds": selection_seeds,
            "busy_core": busy,
        },
        "environment": environment(threads, dev),
        "not_installed": [m for m in SINGLE_METHODS if m not in installed_methods()],
        "cases": results,
    }

    def done() -> None:
        if progress is not None:
            out["markdown"] = to_markdown(out)
            progress(out)

    with ExitStack() as stack:
        if busy is not None:
            proc = stack.enter_context(busy_core(busy))
            out["busy"] = {"core": busy, "pid": proc.pid}
            log(f"a CPU-bound process (pid {proc.pid}) holds core {busy}")
        stack.enter_context(threadpool_limits(limits=threads))
        if any(want(c) for c in CASES):  # the workload cases warm up in their own processes
            _warm_up(str(dev))
        if faces is None and any(want(c) for c in FACE_CASES):
            faces = _problems.faces(faces_dir, flag="--faces-dir")
        for case in make_cases(quick, faces, seed, str(dev)):
            if want(case.name):
                results[case.name] = run_single(case, rounds, cap_factor, installed_methods(), log)
                done()
        for name, ranks in (DEEP_QUICK if quick else DEEP_FULL).items():
            if want(name) and faces is not None:
                results[name] = run_deep(
                    faces, ranks, rounds, deep_iters, pretrain, cache, log, cap_factor, str(dev)
                )
                done()
        if want("batched"):
            results["batched"] = run_batched(*batch, rounds, cap_factor, seed, log, str(dev))
            done()
        if any(want(c) for c in _workloads.WORKLOADS):
            folder = Path(tempfile.mkdtemp(prefix="time-to-target-", dir=scratch))
            stack.callback(shutil.rmtree, folder, ignore_errors=True)
            for name in _workloads.WORKLOADS:
                if want(name):
                    results[name] = run_workload(
                        name, scale, rounds, cap_factor, threads, seed, folder, log, str(dev)
                    )
                    done()
        if want(SELECTION_CASE):
            results[SELECTION_CASE] = run_selection(selection_seeds, threads, log, str(dev))
    if targets is not None and cache:
        from benchmarks.io_utils import write_json

        write_json(targets, cache)
    out["markdown"] = to_markdown(out)
    return out


FACE_CASES = ("faces-r64", "faces-r16", "deep-k2", "deep-k3")
DEEP_FULL = {"deep-k2": [64, 32], "deep-k3": [64, 32, 16]}
DEEP_QUICK = {"deep-k2": [16, 8], "deep-k3": [16, 8, 4]}
#: The cases a run without ``--only`` runs, in the order they run.
CASES = ("faces-r64", "faces-r16", "lowrank", "sparse", "deep-k2", "deep-k3", "batched")
SELECTION_CASE = "rank-selection-defaults"
#: The workload cases (`perf._workloads`), run when ``--only`` names them, after `CASES`.
WORKLOAD_CASES = (*_workloads.WORKLOADS, SELECTION_CASE)
#: Every case ``--only`` can pick.
ALL_CASES = CASES + WORKLOAD_CASES


def cases_of(quick: bool) -> tuple[str, ...]:
    """The cases a run can have: all of `ALL_CASES`, less ``faces-r64`` with ``quick``."""
    return tuple(c for c in ALL_CASES if not (quick and c == "faces-r64"))


def check_device(device: str) -> torch.device:
    """``device`` as a torch device, or a ValueError that names it when this machine has no
    such device."""
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device {device!r} is not a torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA device is available here")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: only 'cpu' and CUDA devices are benchmarked")
    return dev


def _warm_up(device: str = "cpu") -> None:
    """Import every library and run each kind of fit once on a tiny matrix (first-call costs,
    a GPU's context and kernels included, stay out of the timed rounds)."""
    c = Case("warm-up", "", _problems.uniform(0, 40, 30).astype(np.float32), None, 3, device)
    c.X = _as_given(c.V)
    for m in installed_methods():
        SINGLE_METHODS[m](c, tr.Recorder(0.0, 0.05))


def to_markdown(out: dict[str, Any]) -> str:
    """One table per case: seconds to the target and to 1.001× it, iterations, final loss."""
    lines: list[str] = []
    device = out.get("config", {}).get("device", "cpu")
    if device != "cpu":
        gpu = out["environment"].get("gpu", device)
        threads = out["config"]["threads"]
        lines += [
            f"dnmf on `{device}` ({gpu}); scikit-learn, MiniBatchNMF and torchnmf on the "
            f"host CPU with {threads} threads.",
            "",
        ]
    if out.get("not_installed"):
        missing = ", ".join(out["not_installed"])
        lines += [f"Not installed here, so not timed: {missing} (`pip install -e '.[bench]'`).", ""]
    busy = out.get("config", {}).get("busy_core")
    if busy is not None:
        lines += [
            f"A CPU-bound process pinned to core {busy} ran for the whole run "
            f"(`--busy-core {busy}`).",
            "",
        ]
    for name, c in out["cases"].items():
        deep = name.startswith("deep")
        if name == "batched":
            lines += _batched_markdown(c)
            continue
        if name in _workloads.WORKLOADS:
            lines += _workload_markdown(name, c)
            continue
        if name == SELECTION_CASE:
            lines += _selection_markdown(c)
            continue
        ref = "dnmf mu" if deep else "scikit-learn NMF()"
        lines += [
            f"**{name}** — {c['about']}, target {c['target']:.6e}"
            + (
                ""
                if deep
                else f" (scikit-learn: {c['reference']['seconds']:.2f} s, "
                f"{c['reference']['n_iter']} iterations)"
            ),
            "",
            f"| method | seconds to target | × {ref} | iterations | seconds to 1.001× | "
            "final / target |",
            "|---|---|---|---|---|---|",
        ]
        for m in c["methods"]:
            lines.append(
                f"| {m['method']} | {_fmt(m['seconds_to_1'])} | {_fmt(m['ratio_to_sklearn_1'])} "
                f"| {m['iters_to_1'] if m['iters_to_1'] is not None else '–'} "
                f"| {_fmt(m['seconds_to_1.001'])} | {m['final_over_target']:.5f} |"
            )
        lines.append("")
    return "\n".join(lines)


def _batched_markdown(c: dict[str, Any]) -> list[str]:
    loop = statistics.median(c["loop_seconds"])
    lines = [
        f"**batched** — {c['about']}, rank {c['rank']}, each against its own scikit-learn "
        f"target (loop of scikit-learn NMF(): {loop:.2f} s)",
        "",
        "| method | seconds to every target | speed-up | seconds to 1.001× | speed-up | "
        "matrices reached | mean final / target |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in c["methods"]:
        mean = m.get("mean_final_over_target")
        lines.append(
            f"| {m['method']} | {_fmt(m['seconds_to_1'], '.3f')} | {_fmt(m['speedup_1'], '.1f')} "
            f"| {_fmt(m['seconds_to_1.001'], '.3f')} | {_fmt(m['speedup_1.001'], '.1f')} "
            f"| {100 * m['fraction_reached']:.1f} % | {_fmt(mean, '.5f')} |"
        )
    ctl = c.get("control")
    if ctl:
        lines += [
            "",
            f"Control: scikit-learn's own `NMF()` with `random_state={ctl['random_state']}` "
            f"instead of 0 (only its randomized-SVD start changes) reaches "
            f"{100 * ctl['fraction_reached']:.1f} % of these targets "
            f"({100 * ctl['fraction_within_1.001']:.1f} % within 1.001×, worst "
            f"{ctl['worst_ratio']:.5f}×"
            + (f", mean {ctl['mean_ratio']:.5f}×" if "mean_ratio" in ctl else "")
            + ").",
        ]
    return [*lines, ""]


def _workload_markdown(name: str, c: dict[str, Any]) -> list[str]:
    """A workload case: seconds to the target, × the reference, memory of every row."""
    m, n = c["shape"]
    what = f"{m}×{n}"
    if c.get("nnz") is not None:
        what += f", {c['nnz']} nonzeros ({100 * c['nnz'] / (m * n):.3g} %)"
    what += f", {c['dtype']}, rank {c['rank']}, β = {c['beta']:g}, matrix {c['matrix_mib']:.1f} MiB"
    if "error" in c:
        return [f"**{name}** — {c['about']}, {what}: no target ({c['error']})", ""]
    ref = c["reference"]
    lines = [
        f"**{name}** — {c['about']}, {what}; target {c['target']:.6e}, the final loss of "
        f"scikit-learn's `{ref['method'].removeprefix('sklearn ')}` ({ref['seconds']:.2f} s, "
        f"{ref['n_iter']} iterations, peak RSS {_fmt(ref['peak_rss_mib'], '.0f')} MiB when it "
        "set the target)",
        "",
        "| method | seconds to target | × scikit-learn | iterations | seconds to 1.001× | "
        "final / target | peak RSS (MiB) | RSS at start (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in c["methods"]:
        if r["error"]:
            lines.append(
                f"| {r['method']} | failed: {r['error']} | – | – | – | – "
                f"| {_fmt(r['peak_rss_mib'], '.0f')} | {_fmt(r['start_rss_mib'], '.0f')} |"
            )
            continue
        its = r["iters_to_1"] if r["iters_to_1"] is not None else "–"
        lines.append(
            f"| {r['method']} | {_fmt(r['seconds_to_1'])} | {_fmt(r['ratio_to_sklearn_1'])} "
            f"| {its} | {_fmt(r['seconds_to_1.001'])} | {_fmt(r['final_over_target'], '.5f')} "
            f"| {_fmt(r['peak_rss_mib'], '.0f')} | {_fmt(r['start_rss_mib'], '.0f')} |"
        )
    return [*lines, ""]


def _selection_markdown(c: dict[str, Any]) -> list[str]:
    n = len(c["seeds"])
    lines = [
        f"**{SELECTION_CASE}** — {c['about']}: the planted rank chosen in {c['hits']} of {n} "
        f"seeds, the slowest search {_fmt(c['max_seconds'], '.1f')} s",
        "",
        "| seed | chosen rank | seconds | peak RSS (MiB) |",
        "|---|---|---|---|",
    ]
    for r in c["seeds"]:
        chosen = r["best"] if r["error"] is None else f"failed: {r['error']}"
        lines.append(
            f"| {r['seed']} | {chosen} | {_fmt(r['seconds'], '.2f')} "
            f"| {_fmt(r['peak_rss_mib'], '.0f')} |"
        )
    return [*lines, ""]


def plot(out: dict[str, Any], path: Path) -> None:
    """Loss / target against seconds (log axes), one panel per case, the first round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    cases = [(k, c) for k, c in out["cases"].items() if c.get("methods")]  # loss traces
    if not cases:  # e.g. only the rank search: an empty figure says so
        cases = [("no loss traces in this run", {"methods": []})]
    cols = min(4, len(cases))
    rows = (len(cases) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (name, c) in zip(axes.flat, cases):
        tgt = np.asarray(c.get("target", 1.0))
        for m in c["methods"]:
            t = m["trace"]
            # a batch's trace holds its worst matrix's ratio to that matrix's own target
            y = np.asarray(t["losses"]) / (1.0 if name == "batched" else float(tgt))
            ax.plot(
                np.maximum(t["seconds"], 1e-3),
                y,
                label=m["method"],
                lw=1.2,
                marker="o" if len(y) == 1 else None,
            )
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set(xscale="log", yscale="log", title=name, xlabel="seconds", ylabel="loss / target")
        # a span under a decade would label every minor tick, and they overlap along x
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=6)
    for ax in axes.flat[len(cases) :]:
        ax.axis("off")
    fig.tight_layout()
    from benchmarks.io_utils import atomic_write

    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m perf.time_to_target", description=_cli.description(__doc__)
    )
    p.add_argument("--quick", action="store_true", help="small cases, one round (development)")
    p.add_argument(
        "--rounds",
        type=_cli.positive_int,
        default=None,
        help="interleaved rounds (default 2; 1 with --quick)",
    )
    p.add_argument("--threads", type=_cli.positive_int, default=2, help="CPU threads (default 2)")
    p.add_argument(
        "--cap",
        type=_cli.finite_positive_float,
        default=1.5,
        help="time cap per fit, × the reference's time (scikit-learn's; MU's for the deep cases)",
    )
    p.add_argument(
        "--faces-dir",
        type=_cli.existing_folder,
        default=None,
        help="face folder (default: $DEBLUR_FACES_DIR, else the shipped set)",
    )
    p.add_argument(
        "--targets",
        type=_cli.output_file,
        default=None,
        help="cache of the deep targets (JSON): read when it exists, written at the end",
    )
    p.add_argument(
        "--only",
        nargs="+",
        default=None,
        choices=ALL_CASES,
        metavar="CASE",
        help=f"run only these cases: {', '.join(ALL_CASES)} (--quick has no faces-r64; "
        f"without --only: {', '.join(CASES)})",
    )
    p.add_argument(
        "--scale",
        type=_cli.finite_positive_float,
        default=None,
        help="size of the workload cases sparse-20k … minibatch-memmap: rows and columns "
        "(dense-tall's rows only) times this, a sparse matrix's density divided by it "
        "(default 1; 0.1 with --quick)",
    )
    p.add_argument(
        "--selection-seeds",
        type=_cli.positive_int,
        default=10,
        help="seeds of rank-selection-defaults (default 10)",
    )
    p.add_argument(
        "--busy-core",
        type=_cli.nonneg_int,
        default=None,
        metavar="CORE",
        help="keep a CPU-bound process pinned to this core running for the whole run (the "
        "times of a shared machine); it is stopped when the run ends, however it ends",
    )
    p.add_argument(
        "--scratch",
        type=_cli.existing_folder,
        default=None,
        help="folder for the workload cases' matrices (a temporary folder in it, removed "
        "at the end; default: the system's temporary folder)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device for dnmf's fits, e.g. cuda (default cpu); scikit-learn and "
        "torchnmf run on the host CPU with --threads threads",
    )
    p.add_argument(
        "--out",
        type=_cli.output_folder,
        required=True,
        help="folder for result.json, result.md, loss.png",
    )
    a = p.parse_args(argv)
    rounds = a.rounds if a.rounds is not None else (1 if a.quick else 2)
    try:
        check_device(a.device)
    except ValueError as e:
        p.error(f"--device: {e}")
    if a.quick and a.only and "faces-r64" in a.only:
        p.error(f"--only faces-r64: not a --quick case (those are {', '.join(cases_of(True))})")
    if a.busy_core is not None:
        try:
            check_core(a.busy_core)
        except ValueError as e:
            p.error(f"--busy-core: {e}")
    from benchmarks.io_utils import write_json, write_text

    with _cli.refusing(p):  # the inputs, read before any output exists
        read_targets(a.targets)
        wanted = a.only or cases_of(a.quick)
        needs_faces = any(c in FACE_CASES for c in wanted)
        faces = _problems.faces(a.faces_dir, flag="--faces-dir") if needs_faces else None

    def partial(res: dict[str, Any]) -> None:  # results so far, in case the run is cut short
        write_json(a.out / "result.json", res)  # makes the folder the first time

    with _cli.refusing(p):
        out = run_time_to_target(
            progress=partial,
            quick=a.quick,
            rounds=rounds,
            threads=a.threads,
            cap_factor=a.cap,
            faces_dir=a.faces_dir,
            targets=a.targets,
            only=a.only,
            device=a.device,
            log=lambda s: print(s, file=sys.stderr, flush=True),
            faces=faces,
            scale=a.scale,
            busy=a.busy_core,
            scratch=a.scratch,
            selection_seeds=a.selection_seeds,
        )
        write_json(a.out / "result.json", out)
        write_text(a.out / "result.md", out["markdown"] + "\n")
        plot(out, a.out / "loss.png")
    print(out["markdown"])
    print(f"wrote {a.out}/result.json, result.md, loss.png", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
