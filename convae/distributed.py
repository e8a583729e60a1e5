"""Multi-process training helpers: torchrun's environment, the process group, samplers.

`convae.train` wraps the model in ``DistributedDataParallel`` itself inside an
initialized process group of two or more ranks; these functions set that group up and
answer where this process sits in it.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler

from convae.data import PairData

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process sits in a distributed run (see `init_distributed`)."""

    rank: int  # global rank, 0 .. world_size - 1
    local_rank: int  # rank on this node (picks the GPU)
    world_size: int  # processes in all
    local_world_size: int  # processes on this node
    backend: str  # "gloo" (CPU) or "nccl" (CUDA)
    device: torch.device  # this process's device: cpu, or cuda:LOCAL_RANK

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that prints and writes files."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when this process was started by ``torchrun`` (``RANK`` and ``WORLD_SIZE`` set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset), as torchrun sets it."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an int, got {os.environ['WORLD_SIZE']!r}") from None


def init_distributed(
    device: str | torch.device = "cpu", *, backend: str | None = None, timeout_minutes: float = 30.0
) -> DistributedInfo:
    """Join the process group described by torchrun's environment variables.

    ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` must be set (``LOCAL_RANK``
    and ``LOCAL_WORLD_SIZE`` default to ``RANK`` / ``WORLD_SIZE``).  ``device="cpu"``
    uses the ``gloo`` backend; ``device="cuda"`` uses ``nccl`` and this process's GPU is
    ``cuda:LOCAL_RANK`` (so a node needs as many visible GPUs as processes).  ``backend``
    overrides the choice.  If a process group already exists it is reused.
    """
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"distributed training runs on cpu or cuda, got device {str(dev)!r}")
    missing = [
        k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
    ]
    if missing and not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"distributed training needs the environment torchrun sets ({', '.join(missing)} "
            f"missing); start it as `torchrun --nproc_per_node=N -m benchmarks train ...`"
        )
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed support")
    rank = int(os.environ.get("RANK", "0"))
    world = env_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was requested but no CUDA device is available")
        n_gpu = torch.cuda.device_count()
        if dev.index is not None and world > 1:
            raise ValueError(
                f"pass --device cuda (not {dev}) for distributed training: each "
                f"process uses cuda:LOCAL_RANK"
            )
        if local_rank >= n_gpu or local_world > n_gpu:
            raise ValueError(
                f"--device cuda with {local_world} processes on this node needs "
                f"{local_world} GPUs, but {n_gpu} are visible; use "
                f"--nproc_per_node={n_gpu} or --device cpu"
            )
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes)
        )
    else:
        backend = str(dist.get_backend())
    return DistributedInfo(
        rank=dist.get_rank(),
        local_rank=local_rank,
        world_size=dist.get_world_size(),
        local_world_size=local_world,
        backend=backend,
        device=dev,
    )


def destroy_distributed() -> None:
    """Leave the process group (a no-op when none is initialized)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (a no-op outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def epoch_order(
    n: int, gen: torch.Generator, epoch: int, sampler: DistributedSampler | None = None
) -> torch.Tensor:
    """This process's training indices for ``epoch``.

    Single process: a permutation drawn from the checkpointed generator ``gen``.  Under DDP:
    ``DistributedSampler``'s share for this rank (seeded permutation, padded by wrapping so
    every rank gets ``ceil(n / world)`` indices, then every world-th index).
    """
    if sampler is None:
        return torch.randperm(n, generator=gen)
    sampler.set_epoch(epoch)
    return torch.as_tensor(list(sampler), dtype=torch.long)


def check_same_data(tr: PairData, va: PairData | None, device: torch.device) -> None:
    """Refuse to train when the ranks hold different data (it would hang or silently differ)."""

    def fingerprint(d: PairData | None) -> list[float]:
        if d is None:
            return [0.0, 0.0]
        if d.dataset is not None:
            return [float(d.n), 0.0]
        total = sum(
            float(b.sum(dtype=torch.float64)) + 2.0 * float(s.sum(dtype=torch.float64))
            for b, s in zip(d.blurred.split(64), d.sharp.split(64))
        )  # no big copy
        return [float(d.n), total]

    mine = torch.tensor(fingerprint(tr) + fingerprint(va), dtype=torch.float64, device=device)
    rank, world = rank_world()
    every = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(every, mine)

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:  # counts exact, pixel sums ~1e-9
        return bool(
            torch.equal(a[0::2], b[0::2]) and torch.allclose(a[1::2], b[1::2], rtol=1e-9, atol=1e-6)
        )

    if any(not same(every[0], t) for t in every[1:]):
        rows = "; ".join(
            f"rank {r}: {int(t[0])} train / {int(t[2])} val images" for r, t in enumerate(every)
        )
        raise ValueError(
            f"the ranks hold different training data ({rows}, or the same "
            f"counts with other pixels); every process must load the same images "
            f"(same --data-dir, --seed, --max-images)"
        )
