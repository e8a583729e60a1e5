"""Batched rank search against the same fits looped one by one, interleaved in one process.

``python -m perf.rank_selection_speed`` loads the face matrix (64×64 gray faces as columns,
4096 × 750 for the shipped set), runs ``dnmf.select_ranks`` over the candidate ranks × folds
(the batched ``gram`` solver), and loops the very same fits through the public API,
``dnmf.factorize(V * M, r, mask=M, solver='hals', seed=…)`` per candidate and fold, scoring
each on its held-out entries. Rounds alternate which method goes first. It prints and writes
(JSON and a markdown table) the time of each, their ratio per round, and the largest relative
difference between the two methods' held-out losses. ``--with-masked`` also times the general
masked solver on a 3-D batch per candidate (``solver='masked'``): the same arithmetic as the
loop, batched, which shows how much of the gain is batching alone.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

from dnmf.select import CV_SOLVER
from perf._problems import faces

DEFAULT_CANDIDATES = (4, 8, 12, 16, 24, 32, 48, 64)


def run_batched(V, args, solver: str = "gram"):
    from dnmf.select import select_ranks

    t, c = time.perf_counter(), time.process_time()
    sel = select_ranks(
        V,
        list(args.candidates),
        folds=args.folds,
        max_iter=args.max_iter,
        tol=0,
        seed=args.seed,
        init=args.init,
        solver=solver,
        device=args.device,
    )
    if args.device and args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t, time.process_time() - c), sel.heldout[:, :, 0], sel


def run_loop(V, args, sel):
    """The same fits one at a time: ``factorize`` with fold ``f``'s mask and seed."""
    import dnmf

    t, c = time.perf_counter(), time.process_time()
    held = np.full((len(args.candidates), args.folds), np.nan)
    Vt = torch.as_tensor(V, device=args.device)
    for f in range(args.loop_folds or args.folds):
        E = torch.as_tensor(sel.heldout_mask(f), device=Vt.device)
        M = (~E).to(Vt.dtype)
        Ef = E.to(Vt.dtype)
        for i, r in enumerate(args.candidates):
            res = dnmf.factorize(
                Vt * M,
                r,
                mask=M,
                solver=CV_SOLVER,
                max_iter=args.max_iter,
                tol=0,
                init=args.init,
                seed=int(sel.fit_seeds[f, 0]),
            )
            R = res.reconstruct().sub_(Vt).square_()  # ½ Σ (Λ − V)² over the held-out entries
            held[i, f] = 0.5 * float(R.mul_(Ef).sum(dtype=torch.float64)) / float(E.sum())
    if Vt.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t, time.process_time() - c), held


def _num(x: float) -> float | None:
    """JSON has no NaN: folds the loop skipped are null."""
    return None if np.isnan(x) else float(x)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv: list[str] | None = None) -> int:
    from perf import _cli

    p = argparse.ArgumentParser(
        prog="python -m perf.rank_selection_speed", description=_cli.description(__doc__)
    )
    p.add_argument(
        "--data-dir",
        type=_cli.existing_folder,
        default=None,
        help="face folder (default: $DEBLUR_FACES_DIR, else the shipped set)",
    )
    p.add_argument("--size", type=_cli.positive_int, default=64)
    p.add_argument(
        "--candidates", type=_cli.positive_int, nargs="+", default=list(DEFAULT_CANDIDATES)
    )
    p.add_argument("--folds", type=_cli.positive_int, default=5)
    p.add_argument(
        "--max-iter", type=_cli.positive_int, default=200, help="iterations per fit (tol=0)"
    )
    p.add_argument("--rounds", type=_cli.positive_int, default=2)
    p.add_argument("--threads", type=_cli.positive_int, default=2)
    p.add_argument("--seed", type=_cli.seed, default=0)
    p.add_argument("--init", default="nndsvda", choices=("nndsvda", "random"))
    p.add_argument("--device", type=_cli.device_name, default=None)
    p.add_argument("--with-masked", action="store_true", help="also time solver='masked'")
    p.add_argument(
        "--loop-folds",
        type=_cli.positive_int,
        default=None,
        help="loop over the first N folds only and scale its time by folds / N (every fold "
        "costs the same; default: all folds)",
    )
    p.add_argument(
        "--out",
        type=_cli.output_json_and_md,
        default="docs/results/rank-selection/speed.json",
        help="JSON file; the table goes beside it, ending in .md "
        "(default docs/results/rank-selection/speed.json)",
    )
    args = p.parse_args(argv)
    if args.loop_folds is not None and args.loop_folds > args.folds:
        p.error(f"--loop-folds {args.loop_folds} is more than --folds {args.folds}")
    if args.device and args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: no CUDA device is available here")
    with _cli.refusing(p):  # a face folder without faces, candidates the data cannot take, ...
        return _main(args, argv)


def _main(args: argparse.Namespace, argv: list[str] | None) -> int:
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # tol=0 runs fixed iterations on purpose
    V = faces(args.data_dir, flag="--data-dir", size=args.size)
    print(
        f"V {V.shape[0]} x {V.shape[1]}, candidates {args.candidates}, {args.folds} folds, "
        f"{args.max_iter} iterations, {args.threads} threads",
        flush=True,
    )
    # Folds and fit seeds depend on the seed only: one short search hands them to the loop.
    folds_and_seeds = run_batched(V, argparse.Namespace(**{**vars(args), "max_iter": 1}))[2]
    rounds = []
    for i in range(args.rounds):
        row: dict = {}
        order = ["batched", "loop"] if i % 2 == 0 else ["loop", "batched"]
        if args.with_masked:
            order.insert(1, "masked")
        arrays: dict[str, np.ndarray] = {}
        for name in order:
            time.sleep(0.25)  # let other threads' pools go idle before each timed call
            if name == "loop":
                (t, c), held = run_loop(V, args, folds_and_seeds)
                row["loop_measured_seconds"] = {"wall": t, "cpu": c}
                scale = args.folds / (args.loop_folds or args.folds)
                t, c = t * scale, c * scale
            else:
                (t, c), held, sel = run_batched(
                    V, args, solver="masked" if name == "masked" else "gram"
                )
            arrays[name] = held
            row[name] = {
                "seconds": t,
                "cpu_seconds": c,
                "heldout": [[_num(x) for x in r] for r in held],
            }
            if name != "loop":
                row[name]["stages"] = sel.stage_seconds
            print(f"round {i}: {name:8s} {t:8.2f} s (cpu {c:8.2f} s)", flush=True)
        ref = arrays["loop"]
        looped = ~np.isnan(ref)  # the folds the loop ran
        for name in ("loop", "masked", "batched"):
            if name in row:
                rel = np.abs(arrays[name][looped] / ref[looped] - 1)
                row[name]["max_rel_diff_vs_loop"] = float(np.max(rel))
        row["loop_over_batched"] = row["loop"]["seconds"] / row["batched"]["seconds"]
        # CPU time of this process: with one thread, what each method cost, whatever else
        # the machine was running meanwhile (wall time on a shared machine is not).
        row["loop_over_batched_cpu"] = row["loop"]["cpu_seconds"] / row["batched"]["cpu_seconds"]
        print(
            f"round {i}: loop / batched = {row['loop_over_batched']:.2f} (wall), "
            f"{row['loop_over_batched_cpu']:.2f} (cpu), "
            f"max rel diff {row['batched']['max_rel_diff_vs_loop']:.2e}",
            flush=True,
        )
        rounds.append(row)
        _write(args, argv, V, rounds)  # after every round: a cut-short run still leaves its rounds
    return 0


def _write(args: argparse.Namespace, argv: list[str] | None, V: np.ndarray, rounds: list) -> None:
    ratios = [r["loop_over_batched"] for r in rounds]
    result = {
        "format_version": 1,
        "command": "python -m perf.rank_selection_speed " + " ".join(argv or sys.argv[1:]),
        "V_shape": list(V.shape),
        "dtype": str(V.dtype),
        "candidates": list(args.candidates),
        "folds": args.folds,
        "max_iter": args.max_iter,
        "init": args.init,
        "loop_folds": args.loop_folds or args.folds,
        "threads": args.threads,
        "device": args.device or "cpu",
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "git_commit": _git_commit(),
        "rounds": rounds,
        "ratio_median": float(np.median(ratios)),
        "ratio_min": float(np.min(ratios)),
        "cpu_ratio_median": float(np.median([r["loop_over_batched_cpu"] for r in rounds])),
        "max_rel_diff": float(max(r["batched"]["max_rel_diff_vs_loop"] for r in rounds)),
    }
    from benchmarks.io_utils import write_json, write_text

    write_json(args.out, result)
    write_text(args.out.with_suffix(".md"), _markdown(result))
    print(_markdown(result), flush=True)


def _markdown(res: dict) -> str:
    names = [n for n in ("loop", "masked", "batched") if n in res["rounds"][0]]
    lines = [
        f"V {res['V_shape'][0]} × {res['V_shape'][1]} ({res['dtype']}), candidates "
        f"{res['candidates']}, {res['folds']} folds, {res['max_iter']} iterations per fit, "
        f"{res['init']} starts, "
        f"{res['threads']} threads, {res['device']}"
        + (
            f"; the loop ran {res['loop_folds']} of the folds and its time is scaled by "
            f"{res['folds']}/{res['loop_folds']} (every fold costs the same)"
            if res["loop_folds"] != res["folds"]
            else ""
        ),
        "",
        "| round | "
        + " | ".join(f"{n} wall (cpu) s" for n in names)
        + " | loop / batched, wall | loop / batched, cpu | max rel. diff |",
        "|---" * (len(names) + 4) + "|",
    ]
    for i, r in enumerate(res["rounds"]):
        cells = " | ".join(f"{r[n]['seconds']:.1f} ({r[n]['cpu_seconds']:.1f})" for n in names)
        lines.append(
            f"| {i} | {cells} | {r['loop_over_batched']:.2f}× | "
            f"{r['loop_over_batched_cpu']:.2f}× | {r['batched']['max_rel_diff_vs_loop']:.1e} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
