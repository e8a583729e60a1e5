"""A/B of dnmf's fused first-layer pass against the two whole products it replaces.

``dnmf`` (β = 2, CPU, ``r1 ≤ rk``) computes ``V Hᵀ``, the ``W1`` update and ``W1ᵀ V`` in one
pass over blocks of rows of ``V`` (``dnmf._solvers.mu.run_mu(fused_block_bytes=)``). This
times, in one process and interleaved round by round, the same fit from fixed factors with the
pass off (a block larger than ``V``) and at a few block sizes, next to scikit-learn's
``NMF(solver="mu")``, on ``python -m perf.nmf_speed``'s matrix::

    python -m perf.fused_pass_ab --threads 2 --rounds 15 \\
        --json docs/results/nmf-speed-fused/ab-threads2.json

It prints, per variant, the median time per iteration and the median and quartiles of its
within-round ratio to scikit-learn (the shared machine's drifts cancel in that ratio).
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from typing import Any

import numpy as np
import torch

from benchmarks.io_utils import write_json
from dnmf._solvers import mu as _mu
from perf import _cli
from perf._fits import sklearn_mu
from perf._problems import random_problem
from perf._timing import environment, time_round_robin


def run_ab(
    m: int = 4096,
    n: int = 2048,
    rank: int = 64,
    n_iter: int = 60,
    rounds: int = 15,
    threads: int = 2,
    block_bytes: tuple[int, ...] = (4 << 20, 8 << 20),
    seed: int = 0,
) -> dict[str, Any]:
    """Interleaved timings of the variants; returns a JSON-ready dict."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    V, W0, H0 = random_problem(m, n, rank, np.float32, seed)
    Vt = torch.from_numpy(V)
    default = _mu.FUSED_BLOCK_BYTES

    def dnmf_with(block_bytes):
        def fit():  # dnmf.factorize(init="custom") minus its input checks, at this block size
            Ws, H = [torch.from_numpy(W0.copy())], torch.from_numpy(H0.copy())
            return _mu.run_mu(Vt, Ws, H, max_iter=n_iter, tol=0, fused_block_bytes=block_bytes)

        return fit

    sk = sklearn_mu(V, W0, H0, n_iter)

    def sklearn_fit():
        with threadpool_limits(limits=threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sk()

    variants = {"sklearn NMF(mu)": sklearn_fit, "dnmf, whole products": dnmf_with(1 << 62)}
    for b in block_bytes:
        size = f"{b / 2**20:g} MiB" if b >= 2**20 else f"{b} B"
        variants[f"dnmf, fused {size} blocks"] = dnmf_with(b)
    timed = time_round_robin(list(variants.values()), rounds, torch.device("cpu"))
    ref = np.array(timed[0][1])
    rows = []
    for name, (_, times, out) in zip(variants, timed):
        ratio = np.array(times) / ref
        loss = float(out.loss) if hasattr(out, "loss") else None
        rows.append(
            {
                "variant": name,
                "ms_per_iter": 1e3 * statistics.median(times) / n_iter,
                "repeat_ms_per_iter": [1e3 * t / n_iter for t in times],
                "ratio_to_sklearn_median": float(np.median(ratio)),
                "ratio_to_sklearn_quartiles": [float(q) for q in np.percentile(ratio, [25, 75])],
                "final_loss": loss,
            }
        )
    return {
        "experiment": "fused_pass_ab",
        "config": {
            "m": m,
            "n": n,
            "rank": rank,
            "n_iter": n_iter,
            "rounds": rounds,
            "threads": threads,
            "block_bytes": list(block_bytes),
            "seed": seed,
            "default_block_bytes": default,
        },
        "environment": environment(threads, torch.device("cpu")),
        "results": rows,
    }


def to_markdown(out: dict[str, Any]) -> str:
    c = out["config"]
    lines = [
        f"V {c['m']}×{c['n']}, rank {c['rank']}, float32, {c['n_iter']} iterations, "
        f"{c['rounds']} interleaved rounds, {c['threads']} threads",
        "",
        "| variant | ms / iteration (median) | × scikit-learn within a round: median (quartiles) |",
        "|---|---|---|",
    ]
    for r in out["results"]:
        lo, hi = r["ratio_to_sklearn_quartiles"]
        lines.append(
            f"| {r['variant']} | {r['ms_per_iter']:.2f} | "
            f"{r['ratio_to_sklearn_median']:.3f} ({lo:.3f}–{hi:.3f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m perf.fused_pass_ab", description=_cli.description(__doc__)
    )
    p.add_argument("--threads", type=_cli.positive_int, default=2)
    p.add_argument("--rounds", type=_cli.positive_int, default=15)
    p.add_argument("--iters", type=_cli.positive_int, default=60)
    p.add_argument(
        "--blocks",
        type=_cli.positive_int,
        nargs="+",
        default=[4, 8],
        metavar="MIB",
        help="fused block sizes to time, in MiB (default 4 8)",
    )
    p.add_argument("--json", type=_cli.output_file, help="write the results as JSON here")
    a = p.parse_args(argv)
    out = run_ab(
        n_iter=a.iters,
        rounds=a.rounds,
        threads=a.threads,
        block_bytes=tuple(b << 20 for b in a.blocks),
    )
    print(to_markdown(out))
    if a.json:
        with _cli.refusing(p):
            write_json(a.json, out)  # makes the folder, writes atomically
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
