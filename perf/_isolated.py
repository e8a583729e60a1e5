"""One fit per process, for a peak memory per row (``perf.time_to_target``'s workload cases).

`call` runs a module-level function in a process of its own and returns what it returned, the
process's peak resident memory (``getrusage``'s ``ru_maxrss``, `benchmarks.run_info.peak_rss_mib`)
and its resident memory when the function started (after the libraries were imported), or the
error that ended it: an exception's type and message, or the signal that killed the process
(an out-of-memory kill is a row of the table, not the end of the run).

The processes are forked from a *forkserver* that has imported the libraries once. A process
started by ``fork`` + ``exec`` (``subprocess``, multiprocessing's ``spawn``) inherits its
parent's ``ru_maxrss`` on Linux: a child whose own peak was 11 MB reported the 426 MB of the
process that started it. A child forked by the forkserver starts its count afresh (its own
pages: the forkserver's few hundred MB of imported libraries, which every row shares, and what
it allocates), so every row's peak is its own.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.run_info import peak_rss_mib

#: Modules the forkserver imports once, so that each fit's process starts with them loaded
#: (and its start-up costs no import time).
PRELOAD = ["perf._workloads"]

_context: Any = None


def context() -> Any:
    """The forkserver context (made on first use, with `PRELOAD`)."""
    global _context
    if _context is None:
        _context = mp.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


@dataclass
class Isolated:
    """What one process returned (``value``) or why it ended without a value (``error``)."""

    value: Any = None
    peak_rss_mib: float | None = None
    start_rss_mib: float | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)


def current_rss_mib() -> float | None:
    """This process's resident memory now (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _child(conn: Any, fn: Callable[..., Any], args: tuple, threads: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    start = current_rss_mib()
    try:
        with threadpool_limits(limits=threads):
            value = fn(*args)
        conn.send(Isolated(value, peak_rss_mib(), start))
    except BaseException as exc:  # noqa: BLE001 - every failure is a row, MemoryError included
        why = f"{type(exc).__name__}: {exc}".strip()
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
        conn.send(Isolated(None, peak_rss_mib(), start, why[:500] + where))
    finally:
        conn.close()


def call(fn: Callable[..., Any], *args: Any, threads: int = 1) -> Isolated:
    """``fn(*args)`` in a process of its own with ``threads`` threads (torch's and the BLAS'),
    waited for; ``fn`` and ``args`` must pickle (``fn`` at a module's top level)."""
    ctx = context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args, threads), daemon=True)
    proc.start()
    send.close()
    try:
        try:
            out: Isolated = recv.recv()
        except EOFError:  # the process died without a word: killed, or crashed in C
            out = None  # type: ignore[assignment]
        proc.join()
    finally:
        recv.close()
        if proc.is_alive():  # interrupted while waiting: leave no fit running
            proc.kill()
            proc.join()
    if out is None:
        return Isolated(error=_exit_reason(proc.exitcode))
    return out


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"the process was killed by {name}{hint}"
    return f"the process ended with exit code {code} before reporting"
