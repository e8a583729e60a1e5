"""``python -m dnmf.distributed``: the ``torchrun`` entry point (see `main`)."""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from .. import _validation as val
from .._io import check_writable_target
from .._solvers import SOLVERS
from ..shards import ColumnShard, load_image_columns, load_npy_columns
from ._comm import Comm, agree
from ._fit import factorize_columns, gather_result

#: The command's name: argparse's refusals and every other error line start ``PROG: error:``.
PROG = "python -m dnmf.distributed"


# ``type=`` functions: a bad value is refused while parsing, before any process group is
# joined or any data read, with argparse's message naming the flag
# (``error: argument --threads: must be an integer >= 1, got '0'``).
def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= val.SEED_MAX:  # the library's range (torch's generators take it)
        raise argparse.ArgumentTypeError(
            f"must be an integer from 0 to 2**64 - 1 = {val.SEED_MAX}, got {text!r}"
        )
    return value


def _finite_nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _beta(text: str) -> float | str:
    """A number or one of scikit-learn's names, checked by the library's own check."""
    beta = _parse_beta(text)
    try:
        val.parse_beta(beta)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a real number or one of {sorted(val.BETA_NAMES)}, got {text!r}"
        ) from None
    return beta


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
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
    p.add_argument("--size", type=_positive_int, default=None, help="resize images to SIZE x SIZE")
    p.add_argument("--rgb", action="store_true", help="images in RGB (default: gray)")
    p.add_argument(
        "--ranks", type=_positive_int, nargs="+", required=True, help="inner ranks r1 ... rk"
    )
    p.add_argument(
        "--beta",
        type=_beta,
        default="2",
        help="beta of the divergence (2, 1, 0, a float or a name)",
    )
    p.add_argument("--max-iter", type=_positive_int, default=200)
    p.add_argument("--tol", type=_finite_nonneg_float, default=1e-4)
    p.add_argument("--init", default="nndsvda", choices=[i for i in val.INITS if i != "custom"])
    p.add_argument(
        "--init-sample", type=_positive_int, default=2048, help="columns sampled for NNDSVD"
    )
    p.add_argument(
        "--pretrain",
        type=_parse_pretrain,
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
    p.add_argument("--l1", type=_finite_nonneg_float, default=0.0)
    p.add_argument("--l2", type=_finite_nonneg_float, default=0.0)
    p.add_argument("--seed", type=_seed, default=0, help="0 to 2**64 - 1 (default 0)")
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
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads per process")
    p.add_argument(
        "--out",
        default=None,
        help="rank 0 gathers H and writes the result here (.npz); its folder must exist, and "
        "it is checked writable before the fit",
    )
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
        n = int(t)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"must be true, false or an integer >= 1 (iterations per layer), got {text!r}"
        )
    return n


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dnmf.distributed``: one process per shard under ``torchrun``.

    Under ``torchrun`` (``WORLD_SIZE`` in the environment) it joins the process group
    (``env://``; ``nccl`` for ``--device cuda``, else ``gloo``), reads only its columns
    (``--npy`` by memory map, or its slice of ``--images``), factorizes, and rank 0 gathers
    ``H`` and writes the result to ``--out`` atomically (read it with ``dnmf.load``) and prints
    one JSON line of diagnostics. Without ``torchrun`` it runs as one process. Exit status 2
    for bad input (reported by every rank), 0 on success. Flags are checked while parsing;
    ``--out`` is checked (a regular file or nothing in an existing, writable folder) before
    any data is read, so a fit never ends in an unwritable path.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.npy and (args.size is not None or args.rgb):
        parser.error("--size and --rgb apply to --images only")
    if args.images and args.samples_as_rows:
        parser.error("--samples-as-rows applies to --npy only")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cuda = str(args.device).startswith("cuda")
    backend = args.backend if args.backend != "auto" else ("nccl" if cuda else "gloo")
    device: str = args.device
    if cuda:
        if not torch.cuda.is_available():
            print(
                f"{PROG}: error: --device cuda but torch sees no CUDA device",
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
        print(f"{tag}{PROG}: error: {exc}", file=sys.stderr, flush=True)
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


def _reason(exc: OSError) -> str:
    """Why a write failed, in lower case as `deblur-bench` words it (``no space left on
    device``, ``read-only file system``)."""
    reason = exc.strerror or str(exc)
    return reason[:1].lower() + reason[1:]


def _check_out_path(path: str) -> None:
    """Refuse ``--out`` unless the result can be written there: an existing regular file or
    nothing, in an existing folder where this process can create a file (tried with a probe
    file, created and removed at once, so a read-only or full-quota folder is found now and
    not after the fit). Raises ``ValueError`` naming ``--out`` and the path."""
    p = Path(path)
    folder = p.parent
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "(its folder) does not exist"
        raise ValueError(f"--out {path}: {str(folder)!r} {why}")
    try:
        check_writable_target(p)
    except ValueError as exc:
        raise ValueError(f"--out: {exc}") from None
    probe = folder / f".{p.name}.probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise ValueError(f"cannot write --out {path}: {_reason(exc)}") from None
    probe.unlink()


def _check_out(args: argparse.Namespace, comm: Comm) -> None:
    """Collective: rank 0 (the one that writes) checks ``--out``; every process fails with it."""
    err: BaseException | None = None
    if args.out and comm.rank == 0:
        try:
            _check_out_path(args.out)
            if args.npy and Path(args.out).exists() and os.path.samefile(args.npy, args.out):
                raise ValueError(
                    f"--out {args.out} is the --npy input itself; write the result elsewhere"
                )
        except (ValueError, OSError) as exc:
            err = exc
    agree(comm, err, "--out")


def _run(args: argparse.Namespace, comm: Comm, device: str, backend: str | None) -> None:
    _check_out(args, comm)
    shard = _read_shard(args, comm)
    res = factorize_columns(
        shard.V,
        args.ranks,
        col_offset=shard.col_offset,
        n_cols=shard.n_cols,
        beta=args.beta,
        max_iter=args.max_iter,
        tol=args.tol,
        init=args.init,
        pretrain=args.pretrain,
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
        try:
            full.save(args.out)
        except OSError as exc:  # e.g. the disk filled during the fit: name the user's path
            raise ValueError(f"cannot write --out {args.out}: {_reason(exc)}") from None
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
