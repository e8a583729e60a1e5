"""``python -m dnmf.distributed``: the ``torchrun`` entry point (see `main`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import torch
import torch.distributed as dist

from .. import _validation as val
from .._solver import SOLVERS
from ..shards import ColumnShard, load_image_columns, load_npy_columns
from ._comm import Comm, agree
from ._fit import factorize_columns, gather_result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dnmf.distributed",
        description="Deep NMF with V's columns split across processes. Start it with torchrun "
        "(one process per shard) or plainly (one process).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--npy", help="V as a 2-D .npy file (m x n, samples as columns); read by memory map"
    )
    src.add_argument("--images", help="a folder of images, one column each (sorted by name)")
    p.add_argument(
        "--samples-as-rows", action="store_true", help="the .npy holds V transposed (n x m)"
    )
    p.add_argument("--size", type=int, default=None, help="resize images to SIZE x SIZE")
    p.add_argument("--rgb", action="store_true", help="images in RGB (default: gray)")
    p.add_argument("--ranks", type=int, nargs="+", required=True, help="inner ranks r1 ... rk")
    p.add_argument(
        "--beta", default="2", help="beta of the divergence (2, 1, 0, a float or a name)"
    )
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--init", default="nndsvda", choices=[i for i in val.INITS if i != "custom"])
    p.add_argument("--init-sample", type=int, default=2048, help="columns sampled for NNDSVD")
    p.add_argument(
        "--pretrain",
        default="true",
        help="layer-wise pretraining: true, false or iterations per layer",
    )
    p.add_argument(
        "--solver",
        default="auto",
        choices=list(SOLVERS),
        help="auto: HALS for beta=2 (accelerated and extrapolated for one layer), "
        "multiplicative updates otherwise",
    )
    p.add_argument("--l1", type=float, default=0.0)
    p.add_argument("--l2", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument(
        "--device", default="cpu", help="cpu or cuda (cuda: one GPU per process, LOCAL_RANK)"
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "gloo", "nccl"],
        help="auto: nccl for cuda, gloo for cpu",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--out", default=None, help="rank 0 gathers H and writes the result here (.npz)")
    p.add_argument("--verbose", action="store_true")
    return p


def _parse_beta(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _parse_pretrain(text: str) -> bool | int:
    t = text.strip().lower()
    if t in ("true", "yes", "1"):
        return True
    if t in ("false", "no", "0"):
        return False
    try:
        return int(t)
    except ValueError:
        raise SystemExit(f"--pretrain must be true, false or an int, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dnmf.distributed``: one process per shard under ``torchrun``.

    Under ``torchrun`` (``WORLD_SIZE`` in the environment) it joins the process group
    (``env://``; ``nccl`` for ``--device cuda``, else ``gloo``), reads only its columns
    (``--npy`` by memory map, or its slice of ``--images``), factorizes, and rank 0 gathers
    ``H`` and writes the result to ``--out`` atomically (read it with ``dnmf.load``) and prints
    one JSON line of diagnostics. Without ``torchrun`` it runs as one process. Exit status 2
    for bad input (reported by every rank), 0 on success.
    """
    args = _parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cuda = str(args.device).startswith("cuda")
    backend = args.backend if args.backend != "auto" else ("nccl" if cuda else "gloo")
    device: str = args.device
    if cuda:
        if not torch.cuda.is_available():
            print(
                "dnmf.distributed: error: --device cuda but torch sees no CUDA device",
                file=sys.stderr,
                flush=True,
            )
            return 2
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    started = int(os.environ.get("WORLD_SIZE", "1")) > 1 or "RANK" in os.environ
    if started:
        dist.init_process_group(backend)
    comm = Comm()
    tag = f"[rank {comm.rank}/{comm.world}] " if comm.world > 1 else ""
    try:
        _run(args, comm, device, backend if started else None)
        return 0
    except (ValueError, TypeError, OSError) as exc:
        print(f"{tag}dnmf.distributed: error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        if started:
            dist.destroy_process_group()


def _read_shard(args: argparse.Namespace, comm: Comm) -> ColumnShard:
    """Collective: this process's columns of ``--npy`` or ``--images`` (all fail together)."""
    err: BaseException | None = None
    shard = None
    try:
        if args.npy:
            shard = load_npy_columns(
                args.npy,
                comm.rank,
                comm.world,
                samples_as_rows=args.samples_as_rows,
                dtype=args.dtype,
            )
        else:
            shard = load_image_columns(
                args.images,
                comm.rank,
                comm.world,
                size=args.size,
                gray=not args.rgb,
                dtype=args.dtype,
            )
    except (OSError, ValueError, TypeError) as exc:
        err = exc
    agree(comm, err, "data")
    assert shard is not None
    return shard


def _run(args: argparse.Namespace, comm: Comm, device: str, backend: str | None) -> None:
    shard = _read_shard(args, comm)
    res = factorize_columns(
        shard.V,
        args.ranks,
        col_offset=shard.col_offset,
        n_cols=shard.n_cols,
        beta=_parse_beta(args.beta),
        max_iter=args.max_iter,
        tol=args.tol,
        init=args.init,
        pretrain=_parse_pretrain(args.pretrain),
        solver=args.solver,
        l1=args.l1,
        l2=args.l2,
        seed=args.seed,
        device=device,
        dtype=args.dtype,
        verbose=args.verbose,
        init_sample=args.init_sample,
    )
    secs = float(comm.max_(torch.tensor([res.seconds], dtype=torch.float64, device=device))[0])
    full = gather_result(res, device=device)
    if comm.rank != 0:
        return
    assert full is not None
    if args.out:
        full.save(args.out)
    info = {
        "world_size": comm.world,
        "backend": backend,
        "m": int(shard.V.shape[0]),
        "n": res.n_cols,
        "ranks": list(res.ranks),
        "n_iter": res.n_iter,
        "converged": res.converged,
        "loss": float(res.loss),
        "seconds": round(secs, 4),
        "out": args.out,
    }
    print(json.dumps(info), flush=True)
