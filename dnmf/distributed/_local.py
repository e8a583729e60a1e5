"""Run the column-split solver on local processes, without ``torchrun``.

`run_local` (one factorization) and `run_local_batch` (several, in one group of
processes: start-up dominates small runs) start ``spawn`` processes that join a ``gloo`` (or
``nccl``) group on 127.0.0.1, e.g. from a notebook, a test or a benchmark.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .. import _validation as val
from .._result import load
from ..shards import ColumnShard, column_range, load_npy_columns
from ._comm import Comm, agree
from ._fit import ShardedFactorizationResult, factorize_columns, gather_result


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for a local rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _job_shard(job: dict, rank: int, world: int) -> ColumnShard:
    if "shards" in job:
        blocks = job["shards"]
        if len(blocks) != world:
            raise ValueError(f"job has {len(blocks)} shards for {world} processes")
        n = sum(int(np.shape(b)[1]) for b in blocks)
        return ColumnShard(blocks[rank], sum(int(np.shape(b)[1]) for b in blocks[:rank]), n)
    if "npy" in job:
        return load_npy_columns(job["npy"], rank, world)
    V = job["V"]
    n = int(V.shape[1])
    if n < world:
        raise ValueError(f"V has {n} columns for {world} processes; every process needs one")
    a, b = column_range(n, rank, world)
    return ColumnShard(V[:, a:b], a, n)


def _local_worker(
    rank: int,
    world: int,
    port: int,
    jobs: list,
    outdir: str,
    threads: int,
    backend: str,
    timeout: float,
) -> None:
    """One process of `run_local_batch` (module level, so ``spawn`` can import it)."""
    torch.set_num_threads(threads)
    device = None
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout),
    )
    comm = Comm()
    try:
        for i, job in enumerate(jobs):
            try:
                _run_job(comm, job, device, os.path.join(outdir, f"job{i}"))
            except Exception as exc:  # noqa: BLE001 - reported to the parent per job
                with open(os.path.join(outdir, f"job{i}.rank{rank}.err"), "w") as fh:
                    fh.write(f"{type(exc).__name__}\n{exc}")
                if not getattr(exc, "collective", False):
                    raise  # the others may be stuck in a collective: end the whole run
    finally:
        dist.destroy_process_group()


def _run_job(comm: Comm, job: dict, device: str | None, stem: str) -> None:
    """One job on every process; rank 0 writes ``stem.npz`` (whole ``H``) and ``stem.json``."""
    err = None
    try:
        shard = _job_shard(job, comm.rank, comm.world)
    except (OSError, ValueError, TypeError) as exc:
        err = exc
    agree(comm, err, "data")
    kwargs = dict(job.get("kwargs", {}))
    if "H" in job:  # a whole H for init='custom': this process's columns of it
        c0 = shard.col_offset
        kwargs["H"] = job["H"][:, c0 : c0 + int(np.shape(shard.V)[1])]
    if device is not None:
        kwargs.setdefault("device", device)
    dist.barrier()
    res = factorize_columns(
        shard.V, job["ranks"], col_offset=shard.col_offset, n_cols=shard.n_cols, **kwargs
    )
    secs = comm.max_(torch.tensor([res.seconds], dtype=torch.float64, device=device or "cpu"))
    full = gather_result(res)
    if comm.rank == 0:
        assert full is not None
        Ws = [val.to_numpy(W) for W in full.Ws]
        dataclasses.replace(full, Ws=Ws, H=val.to_numpy(full.H)).save(f"{stem}.npz")
        with open(f"{stem}.json", "w") as fh:
            json.dump(
                {"seconds": float(secs[0]), "world_size": comm.world, "n_cols": res.n_cols}, fh
            )


_ERRORS = {"ValueError": ValueError, "TypeError": TypeError, "FileNotFoundError": FileNotFoundError}


def run_local_batch(
    jobs: Sequence[dict],
    world_size: int,
    *,
    threads: int = 1,
    backend: str = "gloo",
    timeout: float = 600.0,
) -> list[ShardedFactorizationResult | BaseException]:
    """Run several factorizations in one group of ``world_size`` local processes.

    Each job is a dict with the data — ``"V"`` (an array, split with
    `dnmf.shards.column_range`), ``"npy"`` (a path, each process reads its columns with
    `dnmf.shards.load_npy_columns`) or ``"shards"`` (one array per process) — plus
    ``"ranks"`` and optional ``"kwargs"`` for `factorize_columns` (and ``"H"``: a whole
    ``H`` for ``init='custom'``, split like ``V``). Processes are
    started with ``spawn`` and join a ``backend`` group on 127.0.0.1 (``nccl``: one GPU per
    process); ``threads`` sets ``torch.set_num_threads`` in each. Returns, per job, the
    gathered result (numpy, whole ``H``; ``seconds`` is the slowest process's time in
    `factorize_columns`) or the exception rank 0 raised for that job. Raises
    ``RuntimeError`` when a process dies or ``timeout`` seconds pass.
    """
    world_size = val.check_positive_int(world_size, "world_size")
    threads = val.check_positive_int(threads, "threads")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    jobs = list(jobs)
    with tempfile.TemporaryDirectory(prefix="dnmf-dist-") as outdir:
        ctx = mp.start_processes(
            _local_worker,
            nprocs=world_size,
            join=False,
            start_method="spawn",
            args=(world_size, free_port(), jobs, outdir, threads, backend, timeout),
        )
        deadline = time.monotonic() + timeout + 60
        try:
            while not ctx.join(timeout=0.5):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dnmf.distributed.run_local: no result after {timeout:g} s")
        except Exception as exc:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
            if isinstance(exc, RuntimeError) and "no result" in str(exc):
                raise
            raise RuntimeError(f"a dnmf.distributed worker failed: {exc}") from None
        out: list[ShardedFactorizationResult | BaseException] = []
        for i in range(len(jobs)):
            errf = Path(outdir) / f"job{i}.rank0.err"
            if errf.exists():
                name, _, msg = errf.read_text().partition("\n")
                out.append(_ERRORS.get(name, RuntimeError)(msg))
                continue
            res = load(Path(outdir) / f"job{i}.npz")
            extra = json.loads((Path(outdir) / f"job{i}.json").read_text())
            out.append(
                ShardedFactorizationResult(
                    **res.__dict__,
                    col_offset=0,
                    n_cols=extra["n_cols"],
                    rank=0,
                    world_size=extra["world_size"],
                    seconds=extra["seconds"],
                )
            )
    return out


def run_local(
    V: Any,
    ranks: int | Sequence[int],
    *,
    world_size: int,
    threads: int = 1,
    backend: str = "gloo",
    timeout: float = 600.0,
    **kwargs: Any,
) -> ShardedFactorizationResult:
    """`factorize_columns` on ``world_size`` local processes (no ``torchrun`` needed).

    ``V`` is a numpy array (each process gets a copy and keeps its columns) or the path of a
    ``.npy`` file (each process maps it and reads only its columns). Other keyword arguments go
    to `factorize_columns`. Returns the gathered result (numpy arrays, whole ``H``);
    ``seconds`` is the slowest process's time. Errors from the processes are raised here.
    """
    job: dict[str, Any] = {"ranks": ranks, "kwargs": kwargs}
    if isinstance(V, (str, os.PathLike)):
        job["npy"] = os.fspath(V)
    else:
        job["V"] = val.to_numpy(V)
    res = run_local_batch([job], world_size, threads=threads, backend=backend, timeout=timeout)[0]
    if isinstance(res, BaseException):
        raise res
    return res
