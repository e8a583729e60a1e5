"""Masked β = 2 fits: masked HALS against the masked multiplicative updates, to common targets.

``python -m perf.masked_solvers`` hides a random share of the entries of a matrix (``--hide``,
default 20 %) and fits the rest with ``dnmf.factorize(V * M, r, mask=M, solver=…)`` for each
solver (``hals``, ``hals-acc-e``, ``mu``), from the same NNDSVDa start, recording the masked
training loss after every iteration. The targets are the lowest training loss any solver reached
times ``1 + gap`` for each of ``--gaps`` (10 %, 1 %, 0.1 %); each solver's row gives the
iterations and the CPU seconds it took to reach each (CPU seconds of this process with one
thread: less sensitive to other jobs than wall time) and the loss per held-out entry after the
last iteration. Problems: the faces matrix (64×64 gray faces as columns, rank ``--rank``,
default 16) and a planted rank-6 matrix of 80 × 120 with noise at 5 % of its mean. It writes
JSON and a markdown table.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from perf._problems import faces, planted_layers

SOLVERS = ("hals", "hals-acc-e", "mu")


def fit_trace(V: np.ndarray, keep: np.ndarray, rank: int, solver: str, iters: int) -> dict:
    """One masked fit: training loss and CPU seconds after each iteration, and the loss per
    held-out entry at the end."""
    import dnmf

    M = keep.astype(V.dtype)
    losses: list[float] = []
    cpu: list[float] = []
    t0 = time.process_time()

    def record(_: int, loss) -> None:
        cpu.append(time.process_time() - t0)
        losses.append(float(loss))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dnmf.ConvergenceWarning)
        res = dnmf.factorize(
            V * M,
            rank,
            mask=M,
            solver=solver,
            init="nndsvda",
            max_iter=iters,
            tol=0,
            check_every=1,
            callback=record,
            seed=0,
        )
    held = ~keep
    err = (res.reconstruct() - V)[held]
    return {
        "train_loss": losses,
        "cpu_seconds": cpu,
        "heldout_end": float(0.5 * np.mean(err**2)),
        "n_iter": int(res.n_iter),
    }


def first_at(trace: dict, target: float) -> tuple[int | None, float | None]:
    """The first iteration (1-based) whose training loss is at most ``target``, and its CPU
    seconds; ``(None, None)`` when the budget ran out first."""
    for i, loss in enumerate(trace["train_loss"]):
        if loss <= target:
            return i + 1, trace["cpu_seconds"][i]
    return None, None


def problem(name: str, V: np.ndarray, rank: int, args) -> dict:
    keep = np.random.default_rng(args.seed).random(V.shape) >= args.hide
    traces = {s: fit_trace(V, keep, rank, s, args.iters) for s in args.solvers}
    best = min(min(t["train_loss"]) for t in traces.values())
    rows = {}
    for s, t in traces.items():
        reach = [first_at(t, best * (1 + gap)) for gap in args.gaps]
        rows[s] = {
            "iterations": [it for it, _ in reach],
            "cpu_seconds": [sec for _, sec in reach],
            "final_over_best": t["train_loss"][-1] / best,
            "heldout_end": t["heldout_end"],
        }
        print(f"{name} {s}: {rows[s]}", flush=True)
    return {"shape": list(V.shape), "rank": rank, "best": best, "rows": rows, "traces": traces}


def main(argv: list[str] | None = None) -> int:
    from perf import _cli

    p = argparse.ArgumentParser(
        prog="python -m perf.masked_solvers", description=_cli.description(__doc__)
    )
    p.add_argument("--data-dir", help="face folder (default: the shipped faces)")
    p.add_argument("--size", type=_cli.positive_int, default=64, help="face side in px")
    p.add_argument("--rank", type=_cli.positive_int, default=16, help="rank on the faces (16)")
    p.add_argument("--hide", type=float, default=0.2, help="share of entries hidden (0.2)")
    p.add_argument("--iters", type=_cli.positive_int, default=400, help="iterations per fit")
    p.add_argument(
        "--gaps",
        type=float,
        nargs="+",
        default=[0.1, 0.01, 0.001],
        help="targets: the best training loss × (1 + gap), each gap (0.1 0.01 0.001)",
    )
    p.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=SOLVERS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_cli.positive_int, default=1)
    p.add_argument("--out", type=_cli.output_json_and_md, default="masked_solvers.json")
    args = p.parse_args(argv)
    if not 0 < args.hide < 1:
        p.error(f"--hide must be in (0, 1), got {args.hide}")
    torch.set_num_threads(args.threads)
    from benchmarks.io_utils import write_json, write_text

    out = {
        "command": "python -m perf.masked_solvers " + " ".join(argv or []),
        "hide": args.hide,
        "iters": args.iters,
        "gaps": args.gaps,
        "threads": args.threads,
        "torch": torch.__version__,
        "problems": {
            f"faces r{args.rank}": problem(
                "faces", faces(args.data_dir, flag="--data-dir", size=args.size), args.rank, args
            ),
            "planted r6": problem(
                "planted", planted_layers(args.seed, (6,), m=80, n=120, noise=0.05), 6, args
            ),
        },
    }
    gaps = " / ".join(f"{g:g}" for g in args.gaps)
    lines = [
        f"{args.hide:.0%} of the entries hidden; targets: the best masked training loss of any "
        f"solver × (1 + gap), gap {gaps}; CPU seconds of one process, {args.threads} thread(s), "
        f"{args.iters} iterations per fit",
        "",
        f"| problem | solver | iterations to target ({gaps}) | CPU s to target ({gaps}) "
        "| final loss / best | held-out loss (end) |",
        "|---|---|---|---|---|---|",
    ]
    for name, rec in out["problems"].items():
        for s, row in rec["rows"].items():
            its = " / ".join("–" if i is None else str(i) for i in row["iterations"])
            secs = " / ".join("–" if c is None else f"{c:.2f}" for c in row["cpu_seconds"])
            lines.append(
                f"| {name} | {s} | {its} | {secs} | {row['final_over_best']:.4f} "
                f"| {row['heldout_end']:.6g} |"
            )
    with _cli.refusing(p):
        write_json(args.out, out)
        write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
