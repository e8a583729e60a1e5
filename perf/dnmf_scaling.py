"""``python -m perf.dnmf_scaling``: strong scaling of ``dnmf.distributed`` on one machine.

One random nonnegative ``V`` (planted rank plus noise) is written to a temporary ``.npy``; for
each process count it starts that many local processes (``gloo`` on 127.0.0.1, one thread each,
via :func:`dnmf.distributed.run_local_batch`), each maps the file and keeps only its columns,
and every process runs :func:`dnmf.distributed.factorize_columns` for a fixed number of
iterations (``tol=0``, random init keyed by the seed, so every process count computes the same
factors). Reports seconds per iteration (the slowest process's wall time in
``factorize_columns``, best of ``--repeats`` runs in the same group), speed-up and parallel
efficiency against one process, the bytes all-reduced per iteration, and the largest relative
difference of ``W`` and ``H`` from the one-process result. Prints a markdown table
(``--out`` also writes it to a file; ``--json`` the raw numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perf._problems import planted_lowrank

FORMAT_VERSION = 1


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a64 - b64).max() / max(np.abs(b64).max(), 1e-300))


def _allreduce_worker(
    rank: int, world: int, port: int, numel: int, dtype: str, reps: int, out: str
) -> None:
    """Median time of one ``all_reduce`` of ``numel`` elements (a W-update's traffic)."""
    import datetime
    import statistics

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=300),
    )
    try:
        t = torch.ones(numel, dtype=getattr(torch, dtype))
        times = []
        for _ in range(reps + 2):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - t0)
        if rank == 0:
            Path(out).write_text(json.dumps(statistics.median(times[2:])))
    finally:
        dist.destroy_process_group()


def time_allreduce(world: int, numel: int, dtype: str, reps: int = 20) -> float:
    """Seconds per ``all_reduce`` of ``numel`` elements among ``world`` local gloo processes."""
    import torch.multiprocessing as mp

    from dnmf.distributed import free_port

    with tempfile.TemporaryDirectory(prefix="dnmf-allreduce-") as tmp:
        out = str(Path(tmp) / "t.json")
        mp.start_processes(
            _allreduce_worker,
            nprocs=world,
            start_method="spawn",
            args=(world, free_port(), numel, dtype, reps, out),
        )
        return float(json.loads(Path(out).read_text()))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_scaling(
    *,
    m: int = 4096,
    n: int = 8192,
    ranks: Sequence[int] = (64,),
    iters: int = 50,
    repeats: int = 3,
    worlds: Sequence[int] = (1, 2),
    dtype: str = "float32",
    seed: int = 0,
    threads: int = 1,
) -> dict[str, Any]:
    """Run the benchmark and return its numbers (see the module docstring)."""
    from dnmf.distributed import run_local_batch

    ranks = [int(r) for r in ranks]
    worlds = [int(w) for w in worlds]
    if 1 not in worlds:
        worlds = [1, *worlds]
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    ref = None
    with tempfile.TemporaryDirectory(prefix="dnmf-scaling-") as tmp:
        path = Path(tmp) / "V.npy"
        np.save(path, planted_lowrank(m, n, ranks[-1], seed, dtype))
        job = {
            "npy": str(path),
            "ranks": ranks,
            "kwargs": dict(init="random", seed=seed, max_iter=iters, tol=0, pretrain=False),
        }
        for world in worlds:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = run_local_batch([job] * repeats, world, threads=threads, timeout=3600)
            wall = time.perf_counter() - t0
            for o in out:
                if isinstance(o, BaseException):
                    raise o
            secs = [float(o.seconds) for o in out]
            res = out[-1]
            if world == 1:
                ref = res
            assert ref is not None
            rows.append(
                {
                    "processes": world,
                    "threads_each": threads,
                    "seconds": secs,
                    "s_per_iter": min(secs) / iters,
                    "final_loss": float(res.loss),
                    "rel_diff_W": _rel(res.W(), ref.W()),
                    "rel_diff_H": _rel(res.H, ref.H),
                    "wall_with_startup_s": wall,
                }
            )
    base = rows[0]["s_per_iter"]
    for r in rows:
        r["speedup"] = base / r["s_per_iter"]
        r["efficiency"] = r["speedup"] / r["processes"]
    itemsize = np.dtype(dtype).itemsize
    rk = ranks[-1]
    # The big message of an iteration: V Hᵀ (m × rk); the rest is rk × rk and two scalars.
    allreduce_s = {w: time_allreduce(w, m * rk, dtype) for w in worlds if w > 1}
    return {
        "format_version": FORMAT_VERSION,
        "config": {
            "m": m,
            "n": n,
            "ranks": ranks,
            "iters": iters,
            "repeats": repeats,
            "dtype": dtype,
            "seed": seed,
            "threads_each": threads,
            "backend": "gloo",
            "init": "random",
            "tol": 0,
        },
        "allreduce_bytes_per_iter": (m * rk + rk * rk) * itemsize + 2 * 8,
        "allreduce_seconds": {str(w): t for w, t in allreduce_s.items()},
        "machine": {
            "cpu": _cpu_name(),
            "logical_cpus": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "rows": rows,
    }


def to_markdown(result: dict[str, Any]) -> str:
    c, mach = result["config"], result["machine"]
    lines = [
        f"V {c['m']}×{c['n']} ({c['dtype']}), ranks {c['ranks']}, {c['iters']} iterations "
        f"(tol=0, random init, no pretraining), best of {c['repeats']} runs; backend gloo on "
        f"127.0.0.1, {c['threads_each']} thread per process; all-reduced per iteration: "
        f"{result['allreduce_bytes_per_iter'] / 2**20:.2f} MiB",
        "",
        f"Machine: {mach['cpu']}, {mach['logical_cpus']} logical CPUs, torch {mach['torch']}; "
        f"load average (1, 5, 15 min) {tuple(mach['load_avg_before'])} before, "
        f"{tuple(mach['load_avg_after'])} after",
        "",
        "| processes | threads each | s / iteration | speed-up | efficiency | max rel. diff W₁…Wₖ "
        "vs 1 process | max rel. diff H | final ½‖V−WH‖² |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['processes']} | {r['threads_each']} | {r['s_per_iter']:.4f} | "
            f"{r['speedup']:.2f}× | {100 * r['efficiency']:.0f}% | {r['rel_diff_W']:.1e} | "
            f"{r['rel_diff_H']:.1e} | {r['final_loss']:.6e} |"
        )
    for w, t in result.get("allreduce_seconds", {}).items():
        per_iter = next(r["s_per_iter"] for r in result["rows"] if r["processes"] == int(w))
        lines += [
            "",
            f"One all_reduce of V Hᵀ ({c['m']}×{c['ranks'][-1]} {c['dtype']}) among {w} "
            f"processes: {1e3 * t:.2f} ms, {100 * t / per_iter:.1f}% of a "
            f"{w}-process iteration (median of 20).",
        ]
    runs = "; ".join(
        f"{r['processes']} proc: " + ", ".join(f"{s:.2f}" for s in r["seconds"])
        for r in result["rows"]
    )
    lines += ["", f"Seconds per run (each {c['iters']} iterations, slowest process): {runs}."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.io_utils import write_text
    from perf import _cli

    p = argparse.ArgumentParser(
        prog="python -m perf.dnmf_scaling", description=_cli.description(__doc__)
    )
    p.add_argument("--m", type=_cli.positive_int, default=4096)
    p.add_argument("--n", type=_cli.positive_int, default=8192)
    p.add_argument("--ranks", type=_cli.positive_int, nargs="+", default=[64])
    p.add_argument("--iters", type=_cli.positive_int, default=50)
    p.add_argument("--repeats", type=_cli.positive_int, default=3)
    p.add_argument(
        "--worlds", type=_cli.positive_int, nargs="+", default=[1, 2], help="process counts"
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=_cli.positive_int, default=1, help="torch threads per process")
    p.add_argument("--seed", type=_cli.seed, default=0)
    p.add_argument(
        "--out", type=_cli.output_file, default=None, help="also write the markdown table here"
    )
    p.add_argument("--json", type=_cli.output_file, default=None, help="write the raw numbers here")
    a = p.parse_args(argv)
    if max(a.worlds) > a.n:
        p.error(f"--worlds: {max(a.worlds)} processes need at least as many columns (--n {a.n})")
    if max(a.ranks) > min(a.m, a.n):
        p.error(f"--ranks: each rank must be at most min(--m, --n) = {min(a.m, a.n)}")
    if a.out is not None and a.out == a.json:
        p.error("--out and --json name the same file")
    result = run_scaling(
        m=a.m,
        n=a.n,
        ranks=a.ranks,
        iters=a.iters,
        repeats=a.repeats,
        worlds=a.worlds,
        dtype=a.dtype,
        seed=a.seed,
        threads=a.threads,
    )
    md = to_markdown(result)
    print(md, end="")
    with _cli.refusing(p):
        for target, text in ((a.out, md), (a.json, json.dumps(result, indent=2) + "\n")):
            if target:
                write_text(target, text)  # makes the folder, writes atomically
    return 0


if __name__ == "__main__":
    sys.exit(main())
