"""Solver choices checked on matrices outside the time-to-target benchmark.

Time to scikit-learn's default answer (``NMF()``'s loss at its own convergence), × its time,
for each dnmf solver named on the command line, in interleaved rounds. The matrices are not
the benchmark's cases (other face ranks, other sizes and seeds), so a default chosen here is
not tuned on the numbers the benchmark reports. ``--deep``: two- and three-layer models
instead, against the loss of 2000 joint multiplicative-update iterations (100 pretraining
iterations per layer, every solver), × the time those updates took. ``--batched``: batches of
small random matrices against a loop of scikit-learn's ``NMF()`` over them, each matrix with its
own target; since a batch's start leaves some matrices in other local minima than
scikit-learn's, the table gives how many matrices are at their target, and the mean loss over
the target, after half and all of the loop's time.

    python -m perf.solver_validation --solvers hals-acc hals-acc-e --out DIR
    python -m perf.solver_validation --deep --solvers hals hals-acc hals-acc-e --out DIR
    python -m perf.solver_validation --batched --solvers hals hals-acc-e --out DIR
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from typing import Any

import numpy as np
import torch

from dnmf._solvers import SOLVERS
from perf import _cli, _problems
from perf import _traces as tr


def cases(faces: np.ndarray) -> dict[str, tuple[Any, int]]:
    """The validation matrices: name -> (V, rank)."""
    planted = np.ascontiguousarray(_problems.planted_lowrank(3000, 1500, 40, 5, "float32"))
    sparse = _problems.sparse_uniform(4000, 2000, 5)
    return {
        "faces r12": (faces, 12),
        "faces r24": (faces, 24),
        "faces r40": (faces, 40),
        "planted r40 3000×1500": (planted, 40),
        "95 % zeros r20 4000×2000": (sparse, 20),
    }


def deep_cases(faces: np.ndarray) -> dict[str, tuple[Any, list[int]]]:
    """The deep validation matrices: name -> (V, ranks)."""
    P = _problems.planted_layers(3, (40, 20), m=1500, n=1000).astype(np.float32)
    return {
        "faces [48, 24]": (faces, [48, 24]),
        "faces [40, 20, 10]": (faces, [40, 20, 10]),
        "planted [40, 20] 1500×1000": (P, [40, 20]),
    }


def batched_cases() -> dict[str, tuple[np.ndarray, int]]:
    """The batched validation sets: name -> (V of shape (batch, m, n), rank); other seeds and
    shapes than the benchmark's batch."""
    return {
        "256 × 64×96 r8": (_problems.random_problem(64, 96, 8, np.float32, 123, batch=256)[0], 8),
        "128 × 48×80 r6": (_problems.random_problem(48, 80, 6, np.float32, 321, batch=128)[0], 6),
    }


#: The batched table's checkpoints, × the scikit-learn loop's time.
BATCH_AT = (0.5, 1.0)


def _sklearn_loop(V: np.ndarray, r: int) -> tuple[float, np.ndarray]:
    """(seconds, per-matrix losses) of a loop of scikit-learn's ``NMF(r)`` over a batch."""
    t0 = time.perf_counter()
    fits = tr.sklearn_fits(V, r)
    seconds = time.perf_counter() - t0
    return seconds, tr.exact_losses(V, fits)


def batch_state(trace: tr.Trace, target: np.ndarray, seconds: float) -> dict[str, float] | None:
    """Share of the matrices at their target and mean loss over the target at the last
    recorded iteration within ``seconds``; None before the first."""
    last = None
    for s, loss in zip(trace.seconds, trace.losses):
        if s > seconds:
            break
        last = np.asarray(loss, dtype=np.float64)
    if last is None:
        return None
    ratio = last / target
    return {"reached": float(np.mean(ratio <= 1.0)), "mean_ratio": float(np.mean(ratio))}


def run_batched(solvers: list[str], rounds: int, log=print) -> dict[str, Any]:
    """Every solver on each validation batch, stopped at the loop's time; its state at the
    `BATCH_AT` checkpoints, per round."""
    out: dict[str, Any] = {}
    for name, (V, r) in batched_cases().items():
        _, target = _sklearn_loop(V, r)
        loop: list[float] = []
        states: dict[str, list[list[dict[str, float] | None]]] = {s: [] for s in solvers}
        for _ in range(rounds):
            loop.append(_sklearn_loop(V, r)[0])
            for s in solvers:
                trace = tr.dnmf_fit(V, r, tr.Recorder(target, max(BATCH_AT) * loop[-1]), s)
                states[s].append([batch_state(trace, target, f * loop[-1]) for f in BATCH_AT])
        out[name] = {"reference_seconds": loop, "states": states}
        for s in solvers:
            log(f"{name:<18} {s:<12} {states[s]}")
    return out


#: The deep reference: joint multiplicative-update iterations, pretraining per layer.
DEEP_MU_ITERS, DEEP_PRETRAIN = 2000, 100


def _deep_mu(V: Any, ranks: list[int]) -> tuple[float, float]:
    """(seconds, loss) of dnmf's multiplicative updates on the deep reference protocol."""
    import dnmf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        res = dnmf.factorize(
            V, ranks, solver="mu", pretrain=DEEP_PRETRAIN, max_iter=DEEP_MU_ITERS, tol=0, seed=0
        )
    return time.perf_counter() - t0, float(res.loss)


def _sklearn(V: Any, r: int) -> tuple[float, float]:
    """(seconds, loss) of scikit-learn's ``NMF(r)`` with its defaults."""
    from sklearn.decomposition import NMF

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        est = NMF(n_components=r, random_state=0)
        W = est.fit_transform(V)
        seconds = time.perf_counter() - t0
    return seconds, tr.exact_loss(V, W, est.components_)


def run(
    solvers: list[str],
    rounds: int,
    threads: int,
    deep: bool = False,
    log=print,
    batched: bool = False,
) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    reference = "dnmf mu, 2000 joint iterations" if deep else "scikit-learn NMF()"
    out: dict[str, Any] = {
        "solvers": solvers,
        "rounds": rounds,
        "threads": threads,
        "reference": "a loop of scikit-learn NMF()" if batched else reference,
        "cases": {},
    }
    if batched:
        with threadpool_limits(limits=threads):
            out["batched_at"] = list(BATCH_AT)
            out["cases"] = run_batched(solvers, rounds, log)
        return out
    faces = _problems.faces()  # $DEBLUR_FACES_DIR, else the shipped set
    matrices: dict[str, tuple[Any, Any]] = dict(deep_cases(faces) if deep else cases(faces))
    with threadpool_limits(limits=threads):
        for name, (V, r) in matrices.items():
            ranks = r if deep else [r]
            reference = _deep_mu if deep else _sklearn
            _, target = reference(V, r)
            sk: list[float] = []
            runs: dict[str, list[tuple[float | None, int]]] = {s: [] for s in solvers}
            extra = {"pretrain": DEEP_PRETRAIN} if deep else {}
            for _ in range(rounds):
                sk.append(reference(V, r)[0])
                for s in solvers:
                    rec = tr.Recorder(target, 5 * sk[-1])
                    trace = tr.dnmf_fit(V, ranks, rec, s, **extra)
                    hit = trace.stop == "target"
                    runs[s].append((trace.seconds[-1] if hit else None, trace.iters[-1]))
            ref = statistics.median(sk)
            out["cases"][name] = {"reference_seconds": sk, "target": target, "runs": runs}
            for s in solvers:
                shown = ", ".join(
                    f"{t / ref:.2f}× ({i} its)" if t else f"– ({i} its)" for t, i in runs[s]
                )
                log(f"{name:<26} {s:<12} {shown}")
    return out


def batched_markdown(out: dict[str, Any]) -> str:
    """One row per batch and solver: matrices at their target and mean loss over the target at
    each checkpoint, first round (the other rounds' shares in brackets)."""
    at = out["batched_at"]
    head = "| batch | scikit-learn loop (s) | solver | " + " | ".join(
        f"at {f:g}× the loop's time: at target, mean loss / target" for f in at
    )
    lines = [head + " |", "|" + "---|" * (3 + len(at))]
    for name, c in out["cases"].items():
        loop = statistics.median(c["reference_seconds"])
        for s in out["solvers"]:
            cells = []
            for j in range(len(at)):
                first = c["states"][s][0][j]
                more = [r[j] for r in c["states"][s][1:]]
                if first is None:
                    cells.append("–")
                    continue
                other = ", ".join("–" if m is None else f"{100 * m['reached']:.1f} %" for m in more)
                cells.append(
                    f"{100 * first['reached']:.1f} %"
                    + (f" ({other})" if other else "")
                    + f", {first['mean_ratio']:.5f}"
                )
            lines.append(f"| {name} | {loop:.2f} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(out: dict[str, Any]) -> str:
    if "batched_at" in out:
        return batched_markdown(out)
    who = "dnmf mu" if out.get("reference", "").startswith("dnmf") else "scikit-learn"
    head = f"| matrix | {who} (s) | " + " | ".join(out["solvers"]) + " |"
    lines = [head, "|" + "---|" * (2 + len(out["solvers"]))]
    for name, c in out["cases"].items():
        ref = statistics.median(c["reference_seconds"])
        cells = []
        for s in out["solvers"]:
            runs = c["runs"][s]
            ratios = [f"{t / ref:.2f}" if t else "–" for t, _ in runs]
            cells.append(f"{', '.join(ratios)}× ({runs[0][1]} its)")
        lines.append(f"| {name} | {ref:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m perf.solver_validation", description=_cli.description(__doc__)
    )
    p.add_argument(
        "--solvers",
        nargs="+",
        default=["hals-acc", "hals-acc-e"],
        choices=SOLVERS,
        metavar="SOLVER",
        help=f"dnmf solvers to time: {', '.join(SOLVERS)} (default hals-acc hals-acc-e)",
    )
    p.add_argument("--rounds", type=_cli.positive_int, default=2)
    p.add_argument("--threads", type=_cli.positive_int, default=2)
    p.add_argument("--deep", action="store_true", help="deep models against dnmf's MU")
    p.add_argument(
        "--batched", action="store_true", help="batches of small matrices against a loop"
    )
    p.add_argument(
        "--out",
        type=_cli.output_folder,
        required=True,
        help="folder for result.json, result.md",
    )
    a = p.parse_args(argv)
    if a.deep and a.batched:
        p.error("--deep and --batched are separate validations: give one")
    from benchmarks.io_utils import write_json, write_text

    with _cli.refusing(p):
        out = run(
            a.solvers,
            a.rounds,
            a.threads,
            a.deep,
            log=lambda s: print(s, file=sys.stderr),
            batched=a.batched,
        )
        write_json(a.out / "result.json", out)  # makes the folder
        write_text(a.out / "result.md", to_markdown(out) + "\n")
    print(to_markdown(out))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
