"""Planted problems for ``dnmf.select_ranks``: how often is the planted rank chosen?

``python -m perf.rank_selection_planted`` runs, for 10 seeds each: a one-layer ``V = W H +
noise`` with rank 6 (candidates 4…8), a two-layer ``V = W1 W2 H + noise`` with ranks (12, 5)
(candidates ``rank_grid([8, 12], [3, 5, 8])``, product criterion) and pure uniform noise
(candidates 1…4), each with the iterations stated; and, with the library's defaults (no
``max_iter`` or ``tol`` given), an 80 × 120 rank-6 problem with noise at 5 % of the mean
(candidates 2…10). Factors are sparse (half the entries zero, the rest uniform), the noise is
Gaussian with 10 % of the mean of ``W H`` as its standard deviation unless stated (clipped at
0). It writes what each seed chose, its seconds and the held-out table of every run as JSON and
a markdown summary.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from perf._problems import planted_layers, uniform


def run(name: str, make, candidates, seeds, **kw) -> dict:
    import dnmf

    picks, tables, seconds = [], [], []
    for s in seeds:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dnmf.ConvergenceWarning)
            sel = dnmf.select_ranks(make(s), candidates, seed=s, **kw)
        seconds.append(time.perf_counter() - t)
        picks.append(list(sel.best) if isinstance(sel.best, tuple) else sel.best)
        res = sel.cv_results()
        tables.append(
            {
                k: v.tolist()
                for k, v in res.items()
                if k != "candidate" and not k.startswith("split")
            }
        )
        print(f"{name} seed {s}: chose {sel.best} ({seconds[-1]:.1f} s)", flush=True)
    return {
        "candidates": [list(c) if isinstance(c, tuple) else c for c in candidates],
        "settings": kw,
        "picks": picks,
        "tables": tables,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    from perf import _cli

    p = argparse.ArgumentParser(
        prog="python -m perf.rank_selection_planted", description=_cli.description(__doc__)
    )
    p.add_argument("--seeds", type=_cli.positive_int, default=10, help="seeds 0 … N-1 (default 10)")
    p.add_argument("--threads", type=_cli.positive_int, default=1)
    p.add_argument(
        "--out",
        type=_cli.output_json_and_md,
        default="docs/results/rank-selection/planted.json",
        help="JSON file; the summary goes beside it, ending in .md "
        "(default docs/results/rank-selection/planted.json)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import dnmf
    from benchmarks.io_utils import write_json, write_text

    seeds = range(args.seeds)
    out = {
        "format_version": 1,
        "torch": torch.__version__,
        "one_layer_rank6": run(
            "rank 6",
            lambda s: planted_layers(s, (6,)),
            [4, 5, 6, 7, 8],
            seeds,
            max_iter=400,
            tol=1e-7,
        ),
        "two_layers_12_5": run(
            "ranks (12, 5)",
            lambda s: planted_layers(s, (12, 5)),
            dnmf.rank_grid([8, 12], [3, 5, 8]),
            seeds,
            max_iter=300,
            tol=1e-7,
        ),
        "defaults_80x120_rank6": run(
            "rank 6, defaults",
            lambda s: planted_layers(s, (6,), m=80, n=120, noise=0.05),
            list(range(2, 11)),
            seeds,
        ),
        "pure_noise": run(
            "noise",
            lambda s: uniform(s, 40, 30),
            [1, 2, 3, 4],
            seeds,
            max_iter=200,
        ),
    }
    hits = {
        "one_layer_rank6": sum(p == 6 for p in out["one_layer_rank6"]["picks"]),
        "two_layers_12_5 (last rank 5)": sum(p[1] == 5 for p in out["two_layers_12_5"]["picks"]),
        "two_layers_12_5 (both ranks)": sum(p == [12, 5] for p in out["two_layers_12_5"]["picks"]),
        "pure_noise (rank 1)": sum(p == 1 for p in out["pure_noise"]["picks"]),
        "defaults_80x120_rank6": sum(p == 6 for p in out["defaults_80x120_rank6"]["picks"]),
    }
    out["hits"] = hits
    lines = ["| problem | chosen as planted | picks | seconds per search |", "|---|---|---|---|"]
    for key, n_hit in hits.items():
        rec = out[key.split(" ")[0]]
        secs = f"{min(rec['seconds']):.1f}–{max(rec['seconds']):.1f}"
        lines.append(f"| {key} | {n_hit} / {len(rec['picks'])} | {rec['picks']} | {secs} |")
    with _cli.refusing(p):
        write_json(args.out, out)
        write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
