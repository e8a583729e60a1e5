"""How the ``python -m perf.<tool>`` commands time their fits, and what they record about the
machine the times came from.

* `interleaved`: every function once per round, the order rotated from round to round and a
  rest before each timed call, so a slow spell of a shared machine hits every method alike;
* `time_round_robin`: one warm-up each, then the median of `interleaved` rounds;
* `environment`: the versions, threads, BLAS and device a result's JSON records;
* `busy_core`: a CPU-bound process pinned to one core while a timing runs (a shared machine).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

#: Seconds of rest before each timed call of an interleaved comparison (see `interleaved`).
SETTLE_S = 0.25


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; the CPU needs nothing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    fns: list[Callable[[], Any]],
    rounds: int,
    device: torch.device | None = None,
    settle: float | None = None,
) -> list[list[tuple[float, Any]]]:
    """Run every function of ``fns`` once per round; returns, per function, the wall time and
    output of each round (interleaved repeats: a slow spell of a shared machine hits every
    method alike instead of one method's block of repeats).

    Round ``r`` starts at function ``r mod len(fns)``, so no method always runs right after the
    same other one, and with several functions every timed call first waits ``settle`` seconds
    (default :data:`SETTLE_S`): a library's idle threads keep spinning for a while after its
    last product (OpenBLAS's for about 0.1 s) and would otherwise tax whichever call comes next.
    """
    settle = SETTLE_S if settle is None else settle
    runs: list[list[tuple[float, Any]]] = [[] for _ in fns]
    for r in range(rounds):
        for j in range(len(fns)):
            i = (r + j) % len(fns)
            if settle > 0 and len(fns) > 1:
                time.sleep(settle)
            if device is not None:
                sync(device)
            t0 = time.perf_counter()
            out = fns[i]()
            if device is not None:
                sync(device)
            runs[i].append((time.perf_counter() - t0, out))
    return runs


def time_round_robin(
    fns: list[Callable[[], Any]], repeats: int, device: torch.device, settle: float | None = None
) -> list[tuple[float, list[float], Any]]:
    """Median wall time (with all times and the last output) of each of ``fns``: one warm-up
    each, then ``repeats`` :func:`interleaved` rounds."""
    for fn in fns:
        fn()
    sync(device)
    out = []
    for runs in interleaved(fns, repeats, device, settle):
        times = [t for t, _ in runs]
        out.append((statistics.median(times), times, runs[-1][1]))
    return out


def environment(threads: int, device: torch.device) -> dict[str, Any]:
    """The versions, platform, thread settings, BLAS libraries and device of this run."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "device": str(device),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "env": {
            k: os.environ[k]
            for k in (
                "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE",
                "OMP_NUM_THREADS",
                "MKL_NUM_THREADS",
                "OPENBLAS_NUM_THREADS",
            )
            if k in os.environ
        },
    }
    try:
        env["loadavg_1min_at_start"] = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every OS
        pass
    try:
        import sklearn

        env["sklearn"] = sklearn.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        import threadpoolctl

        env["blas"] = [
            {k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for i in threadpoolctl.threadpool_info()
        ]
    except ImportError:  # pragma: no cover
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


#: The busy process: it spins on its core and ends by itself once its parent is gone (a parent
#: killed by a signal runs no cleanup; the loop checks every few tens of milliseconds).
BUSY_LOOP = """
import os, sys
core, parent = int(sys.argv[1]), int(sys.argv[2])
os.sched_setaffinity(0, {core})
n = 0
while True:
    n += 1
    if n % 200000 == 0 and os.getppid() != parent:
        break
"""


def check_core(core: int) -> int:
    """``core`` if this process may run on it (``os.sched_getaffinity``), else a ValueError
    naming the cores it may use."""
    if not hasattr(os, "sched_getaffinity"):
        raise ValueError("pinning a process to a core needs Linux (os.sched_setaffinity)")
    allowed = sorted(os.sched_getaffinity(0))
    if core not in allowed:
        raise ValueError(f"core {core} is not one this process may use ({allowed})")
    return core


@contextmanager
def busy_core(core: int) -> Iterator[subprocess.Popen]:
    """A CPU-bound Python process pinned to ``core`` for the duration of the block (yields
    its ``Popen``); it is killed and reaped when the block ends, by an exception too, and ends
    by itself if this process dies without running the block's end."""
    check_core(core)
    proc = subprocess.Popen(
        [sys.executable, "-c", BUSY_LOOP, str(core), str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        os.sched_setaffinity(proc.pid, {core})  # pinned now, not once its interpreter is up
        yield proc
    finally:
        proc.kill()
        proc.wait()
