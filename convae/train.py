"""One flat training loop for every convae architecture (reference ConvAE, U-Net, ...).

Usage on your own tensors (``blurred``/``sharp`` float32 (N, C, H, W) in [0, 1])::

    from convae import ConvAE, TrainConfig, train
    model = ConvAE(in_channels=3)
    result = train(model, (blurred, sharp), (val_blurred, val_sharp),
                   TrainConfig(epochs=30, max_minutes=10), checkpoint_dir="runs/ae")
    # interrupted? continue exactly where it stopped:
    result = train(ConvAE(in_channels=3), (blurred, sharp), (val_blurred, val_sharp),
                   TrainConfig(epochs=30), checkpoint_dir="runs/ae",
                   resume_from="runs/ae/last.pt")

The loop is nanoGPT-like (one function, config in one dataclass) with what nanoGPT leaves
out: atomic checkpoints with RNG state, exact resume, best-on-validation selection and a
wall-clock budget that stops at an epoch boundary (so a resumed run stays exact).

Multi-process training uses PyTorch's own engine (``torch.distributed`` +
``DistributedDataParallel``).  Start every process under ``torchrun`` and call
:func:`init_distributed` first; :func:`train` then wraps the model in DDP itself::

    from convae.train import init_distributed, destroy_distributed
    info = init_distributed("cpu")          # gloo on CPU; "cuda" -> nccl on cuda:LOCAL_RANK
    try:
        result = train(model, train_pairs, val_pairs,
                       TrainConfig(device=str(info.device), batch_size=16),
                       checkpoint_dir="runs/ae")
    finally:
        destroy_distributed()

Under DDP: ``batch_size`` is per process (global batch = batch_size x world size, the
learning rate is not rescaled); each epoch's training indices come from
``torch.utils.data.distributed.DistributedSampler`` (seed = ``config.seed``, reshuffled per
epoch with ``set_epoch``); validation is sharded over the ranks and its sums all-reduced;
rank 0's numbers decide best epoch and stopping for every rank; only rank 0 writes
checkpoints, which hold the unwrapped module's weights (they load in a single process).
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from convae.checkpoint import (
    CheckpointError,
    capture_rng_state,
    check_compatible,
    check_meta,
    read_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from convae.loss import DEFAULT_SSIM_WEIGHT, mse_ssim_loss
from convae.models import architecture_of, count_parameters, unwrap_model

BEST_NAME = "best.pt"
LAST_NAME = "last.pt"

# Config fields whose change between a run and its resume breaks exact equivalence.
_TRAJECTORY_FIELDS = (
    "batch_size",
    "lr",
    "ssim_weight",
    "seed",
    "amp",
    "amp_dtype",
    "drop_last",
    "lr_schedule",
)
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Everything that decides a training run (defaults: the reference protocol, DESIGN §7)."""

    epochs: int = 100  # total epochs (a resumed run continues up to this)
    batch_size: int = 64
    lr: float = 1e-3  # Adam
    lr_schedule: str = "constant"  # or "cosine": decay to 0 over the epochs / time budget
    ssim_weight: float = DEFAULT_SSIM_WEIGHT  # loss = MSE + ssim_weight * (1 - SSIM)
    max_minutes: float | None = None  # wall-clock budget of this call; checked at epoch ends
    seed: int = 0  # seeds the shuffling generator (not model init)
    device: str = "cpu"
    amp: bool = False  # mixed precision; CUDA only, ignored on CPU
    amp_dtype: str = "float16"  # or "bfloat16" (no grad scaler then)
    compile: bool = False  # torch.compile the forward pass
    keep_best: bool = True  # at the end, load the best-validation weights
    eval_batch_size: int | None = None  # validation batch; default: batch_size
    drop_last: bool = False  # drop a last incomplete training batch
    num_workers: int = 0  # DataLoader workers, only for Dataset input
    deterministic: bool = False  # CUDA: cudnn.deterministic, no benchmark (global!)

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""

        def bad(name: str, want: str) -> ValueError:
            return ValueError(f"TrainConfig.{name} must be {want}, got {getattr(self, name)!r}")

        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise bad("epochs", "an int >= 0")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise bad("batch_size", "an int >= 1")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", "a positive float")
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", " or ".join(repr(x) for x in LR_SCHEDULES))
        if self.ssim_weight < 0:
            raise bad("ssim_weight", ">= 0")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise bad("max_minutes", "None or > 0")
        if self.amp_dtype not in ("float16", "bfloat16"):
            raise bad("amp_dtype", "'float16' or 'bfloat16'")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise bad("eval_batch_size", "None or an int >= 1")
        if self.num_workers < 0:
            raise bad("num_workers", "an int >= 0")
        torch.device(self.device)  # raises on a malformed device string

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring unknown keys (e.g. from an older checkpoint)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class TrainResult:
    """What a :func:`train` call did. ``history`` has one dict per epoch since the start
    (including epochs done before a resume): ``epoch``, ``train_loss``, ``train_mse``, ``val_loss``,
    ``val_mse``, ``seconds`` (epoch wall time incl. validation), ``train_seconds``,
    ``images_per_s`` (training throughput, all ranks together under DDP), ``lr``."""

    history: list[dict[str, Any]]
    epochs_completed: int  # total, including epochs before a resume
    epochs_run: int  # in this call
    best_epoch: int | None
    best_val_loss: float | None  # selection criterion (train loss when no val data)
    seconds: float  # wall time of this call
    images_per_s: float  # mean training throughput in this call
    stopped_reason: str  # "epochs", "max_minutes" or "callback"
    parameters: int
    config: dict[str, Any] = field(default_factory=dict)
    best_path: Path | None = None
    last_path: Path | None = None
    world_size: int = 1  # processes that trained (DDP); batch_size is per process

    @property
    def train_seconds(self) -> float:
        """Training wall time over all epochs in the history (incl. before a resume)."""
        return float(sum(h["seconds"] for h in self.history))


def cosine_factor(progress: float) -> float:
    """Cosine decay from 1 (progress 0) to 0 (progress >= 1) of the ``cosine`` lr schedule."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


# --------------------------------------------------------------------------- data


def _check_images(t: torch.Tensor, what: str) -> None:
    if not t.is_floating_point():
        raise ValueError(f"{what} must be a float tensor in [0, 1], got dtype {t.dtype}")
    if t.numel() and (not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1):
        raise ValueError(
            f"{what} values must lie in [0, 1] (found min {t.min().item():.4g}, "
            f"max {t.max().item():.4g}); scale images to [0, 1] first"
        )


class _PairData:
    """Uniform view of training/validation pairs: tensors, a PairSet-like object, or a
    Dataset yielding ``(blurred, sharp)`` (C, H, W) tensors."""

    def __init__(self, data: Any, what: str) -> None:
        self.what = what
        self.dataset: Dataset | None = None
        if hasattr(data, "blurred") and hasattr(data, "sharp"):  # e.g. benchmarks PairSet
            data = (data.blurred, data.sharp)
        if (
            isinstance(data, (tuple, list))
            and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)
        ):
            b, s = data
            if b.ndim != 4 or b.shape != s.shape:
                raise ValueError(
                    f"{what}: blurred {tuple(b.shape)} and sharp {tuple(s.shape)} "
                    f"must be equal (N, C, H, W) shapes"
                )
            if b.shape[0] == 0:
                raise ValueError(f"{what} holds no images")
            _check_images(b, f"{what} blurred")
            _check_images(s, f"{what} sharp")
            self.blurred = b.float().contiguous()
            self.sharp = s.float().contiguous()
            self.n = int(b.shape[0])
            self.channels = int(b.shape[1])
        elif isinstance(data, Dataset):
            self.dataset = data
            try:
                self.n = len(data)  # type: ignore[arg-type]
            except TypeError:
                raise ValueError(f"{what}: the Dataset must define __len__") from None
            if self.n == 0:
                raise ValueError(f"{what} holds no images")
            first = data[0]
            if not (
                isinstance(first, (tuple, list))
                and len(first) == 2
                and first[0].ndim == 3
                and first[0].shape == first[1].shape
            ):
                raise ValueError(
                    f"{what}: the Dataset must yield (blurred, sharp) pairs of "
                    f"equal (C, H, W) tensors"
                )
            self.channels = int(first[0].shape[0])
        else:
            raise TypeError(
                f"{what} must be a (blurred, sharp) pair of (N, C, H, W) tensors, "
                f"an object with .blurred/.sharp, or a torch Dataset of pairs; "
                f"got {type(data).__name__}"
            )

    def keep_on(self, device: torch.device, *, max_fraction: float = 0.5) -> bool:
        """Move tensor pairs onto a CUDA ``device`` once, so batches are gathered there (no
        host copy per step), when they take at most ``max_fraction`` of its free memory.
        Returns whether they are there; a Dataset or a CPU device leaves things as they are."""
        if self.dataset is not None or device.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(device)
        if 2 * self.blurred.numel() * self.blurred.element_size() > max_fraction * free:
            return False
        self.blurred, self.sharp = self.blurred.to(device), self.sharp.to(device)
        return True

    def batches(
        self, index_batches: Sequence[torch.Tensor], device: torch.device, num_workers: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        non_blocking = device.type == "cuda"
        if self.dataset is None:
            for idx in index_batches:
                idx = idx.to(self.blurred.device)
                yield (
                    self.blurred[idx].to(device, non_blocking=non_blocking),
                    self.sharp[idx].to(device, non_blocking=non_blocking),
                )
            return
        loader = DataLoader(
            self.dataset,
            batch_sampler=[i.tolist() for i in index_batches],
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        for b, s in loader:
            if b.shape != s.shape or b.ndim != 4:
                raise ValueError(
                    f"{self.what}: mismatched pair shapes {tuple(b.shape)} and {tuple(s.shape)}"
                )
            _check_images(b, f"{self.what} blurred")
            _check_images(s, f"{self.what} sharp")
            yield (
                b.float().to(device, non_blocking=non_blocking),
                s.float().to(device, non_blocking=non_blocking),
            )


# --------------------------------------------------------------------------- distributed

#: environment variables ``torchrun`` sets for every worker (``env://`` rendezvous)
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process sits in a distributed run (see :func:`init_distributed`)."""

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


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _epoch_order(
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


def _check_same_data(tr: _PairData, va: _PairData | None, device: torch.device) -> None:
    """Refuse to train when the ranks hold different data (it would hang or silently differ)."""

    def fingerprint(d: _PairData | None) -> list[float]:
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
    rank, world = _rank_world()
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


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def _eval_sums(
    model: nn.Module,
    pairs: _PairData,
    indices: torch.Tensor,
    batch_size: int,
    ssim_weight: float,
    dev: torch.device,
) -> torch.Tensor:
    """float64 ``[sum of loss, sum of MSE, count]`` over ``pairs[indices]`` (eval mode)."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=dev)
    for b, s in pairs.batches(indices.split(batch_size) if len(indices) else [], dev):
        out = model(b).float()
        sums[0] += mse_ssim_loss(out, s, ssim_weight=ssim_weight, reduction="none").sum()
        sums[1] += (out - s).pow(2).flatten(1).mean(1).sum()
        sums[2] += len(b)
    return sums


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    *,
    batch_size: int = 64,
    ssim_weight: float = DEFAULT_SSIM_WEIGHT,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Mean loss and MSE of ``model`` over ``data`` (same forms as :func:`train` takes).

    Returns ``{"loss": ..., "mse": ...}`` averaged per image.  The model is put in eval
    mode and left there.  Runs on this process alone (no collectives).
    """
    pairs = data if isinstance(data, _PairData) else _PairData(data, "data")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    sums = _eval_sums(model, pairs, torch.arange(pairs.n), batch_size, ssim_weight, dev)
    return {"loss": sums[0].item() / pairs.n, "mse": sums[1].item() / pairs.n}


# --------------------------------------------------------------------------- training


def _warn_config_changes(old: Mapping[str, Any], new: TrainConfig, path: Path) -> None:
    changed = [
        f"{k}: {old.get(k)!r} -> {getattr(new, k)!r}"
        for k in _TRAJECTORY_FIELDS
        if k in old and old[k] != getattr(new, k)
    ]
    if changed:
        warnings.warn(
            f"resuming {path} with a different config ({'; '.join(changed)}); the "
            f"result will differ from an uninterrupted run",
            UserWarning,
            stacklevel=3,
        )


def train(
    model: nn.Module,
    train_data: Any,
    val_data: Any = None,
    config: TrainConfig | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    meta: Mapping[str, Any] | None = None,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """Train ``model`` on (blurred, sharp) pairs with ``MSE + λ(1 − SSIM)`` and Adam.

    Args:
        model: a registered convae architecture (see :mod:`convae.models`); trained in
            place and moved to ``config.device``.  Inside an initialized process group of
            two or more ranks it is wrapped in ``DistributedDataParallel`` here (a model
            the caller already wrapped is used as is).
        train_data, val_data: a ``(blurred, sharp)`` pair of float32 (N, C, H, W) tensors
            in [0, 1], an object with ``.blurred``/``.sharp`` tensors, or a ``Dataset``
            yielding (C, H, W) pairs.  ``val_data=None`` selects "best" on training loss.
        config: :class:`TrainConfig` (defaults: the reference protocol).
        checkpoint_dir: where to write ``last.pt`` (every epoch, resumable) and ``best.pt``
            (weights of the best validation epoch, inference only).  None: no files.
        resume_from: a ``last.pt`` to continue from; weights, optimizer, RNG states,
            history and best-so-far are restored, and training continues up to
            ``config.epochs``, reaching the same weights as an uninterrupted run.
        meta: JSON-able settings stored in the checkpoints (e.g. the blur); on resume a
            difference from the checkpoint's ``meta`` is warned about.
        progress: show a tqdm bar with loss and images/s, and one line per epoch.
        callback: called after each epoch (after checkpoints are written) with that epoch's
            history dict; returning ``True`` stops training (under DDP it runs on every
            rank, and one rank's ``True`` stops them all).

    Training stops after ``config.epochs`` epochs or at the first epoch end at which
    ``config.max_minutes`` of this call's wall time are used up, whichever comes first.

    Distributed (every rank calls this with the same data and config, after
    :func:`init_distributed`): ``config.batch_size`` is per process, so one optimizer step
    sees ``batch_size x world_size`` images; the epoch's indices come from
    ``DistributedSampler`` (padded so ranks have equal shares); the validation set is split
    over the ranks and the loss sums all-reduced; rank 0's numbers are broadcast so every
    rank takes the same best-epoch and stop decisions (``max_minutes`` and ``callback``
    flags are max-reduced: when one rank stops, all do); only rank 0 writes checkpoints,
    holding the unwrapped weights; a resume reads the same ``last.pt`` on every rank.
    ``history`` throughput (``images_per_s``) counts the images of all ranks.
    """
    config = config or TrainConfig()
    config.validate()
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("TrainConfig.device is 'cuda' but no CUDA device is available")
    rank, world = _rank_world()
    is_main = rank == 0
    ddp = world > 1
    if ddp and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    arch, model_kwargs = architecture_of(model)
    base = unwrap_model(model).to(device)

    tr = _PairData(train_data, "train_data")
    va = _PairData(val_data, "val_data") if val_data is not None else None
    for d in (tr, va):
        if d is not None:
            d.keep_on(device)
    want_c = model_kwargs.get("in_channels")
    for d in (tr, va):
        if d is not None and want_c is not None and d.channels != want_c:
            raise ValueError(
                f"{d.what} has {d.channels} channels but the model expects "
                f"{want_c} (in_channels={want_c})"
            )
    if ddp:
        _check_same_data(tr, va, device)

    if config.deterministic and device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    use_amp = config.amp and device.type == "cuda"  # AMP on CPU is silently off
    amp_dtype = torch.float16 if config.amp_dtype == "float16" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    optimizer = torch.optim.Adam(base.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)  # shuffling only, checkpointed

    history: list[dict[str, Any]] = []
    start_epoch = 0
    best_loss = math.inf
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None
    meta_n = dict(meta or {})
    if resume_from is not None:
        resume_from = Path(resume_from)
        ckpt = read_checkpoint(resume_from, map_location="cpu")
        check_compatible(ckpt, arch, model_kwargs, resume_from)
        if "optimizer_state" not in ckpt or ckpt.get("rng") is None:
            raise CheckpointError(
                f"{resume_from} holds weights only (no optimizer/RNG state) "
                f"and cannot be resumed; resume from a {LAST_NAME}, or load "
                f"it for inference with convae.load_model()"
            )
        check_meta(ckpt.get("meta"), meta, resume_from)
        if not meta_n:
            meta_n = dict(ckpt.get("meta") or {})
        _warn_config_changes(ckpt.get("config", {}), config, resume_from)
        old_world = int(ckpt.get("config", {}).get("world_size", 1))
        if old_world != world:
            warnings.warn(
                f"resuming {resume_from}, trained on {old_world} process(es), with "
                f"{world}: the sample order and the global batch change, so the "
                f"result will differ from an uninterrupted run",
                UserWarning,
                stacklevel=2,
            )
        base.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        for g in optimizer.param_groups:
            g["lr"] = config.lr
        if "scaler_state" in ckpt and scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler_state"])
        restore_rng_state(ckpt["rng"], gen)
        history = list(ckpt.get("history", []))
        start_epoch = int(ckpt["epoch"])
        if ckpt.get("best_val_loss") is not None:
            best_loss, best_epoch = float(ckpt["best_val_loss"]), ckpt.get("best_epoch")

    step_model: nn.Module = model
    sampler: DistributedSampler | None = None
    if ddp:
        if not isinstance(model, DistributedDataParallel):
            # built after a resume has loaded the weights; DDP also broadcasts rank 0's
            # parameters and buffers, so every rank starts from the same model
            step_model = DistributedDataParallel(
                base, device_ids=[device.index] if device.type == "cuda" else None
            )
        sampler = DistributedSampler(
            range(tr.n),
            num_replicas=world,
            rank=rank,  # type: ignore[arg-type]
            shuffle=True,
            seed=config.seed,
            drop_last=False,
        )
    if config.compile:
        step_model = torch.compile(step_model)  # type: ignore[assignment]

    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    best_path = ckpt_dir / BEST_NAME if ckpt_dir else None
    last_path = ckpt_dir / LAST_NAME if ckpt_dir else None
    eval_bs = config.eval_batch_size or config.batch_size
    n_params = count_parameters(base)
    t_start = time.perf_counter()
    stopped = "epochs"
    epochs_run = 0
    images_seen = 0
    train_time = 0.0

    # Cosine schedule: progress is the larger of the epoch fraction and the fraction of this
    # call's time budget.  The time part is read at epoch ends only (and agreed over DDP ranks)
    # and extrapolated within an epoch from the last epoch's length, so every rank and every
    # step of an epoch sees the same lr.
    budget_s = 60.0 * config.max_minutes if config.max_minutes is not None else None
    time_p0 = time_p_epoch = 0.0

    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        base.train()
        step_model.train()
        order = _epoch_order(tr.n, gen, epoch, sampler)
        idx_batches = list(order.split(config.batch_size))
        if config.drop_last and len(idx_batches) > 1 and len(idx_batches[-1]) < config.batch_size:
            idx_batches.pop()
        n_epoch = sum(len(i) for i in idx_batches)
        bar = tqdm(
            total=n_epoch,
            unit="img",
            leave=False,
            disable=not (progress and is_main),
            desc=f"epoch {epoch + 1}/{config.epochs}",
        )
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        # The epoch's mean training MSE, the figure the source reported (its loss was MSE
        # alone); equal to the loss when ssim_weight is 0.
        mse_sum = torch.zeros((), dtype=torch.float64, device=device)
        done = 0
        last_post = 0.0
        for step, (b, s) in enumerate(tr.batches(idx_batches, device, config.num_workers)):
            if config.lr_schedule == "cosine":
                frac = step / len(idx_batches)
                done_frac = (epoch + frac) / config.epochs
                if budget_s is not None:
                    done_frac = max(done_frac, time_p0 + frac * time_p_epoch)
                for g in optimizer.param_groups:
                    g["lr"] = config.lr * cosine_factor(done_frac)
            autocast = (
                torch.autocast("cuda", dtype=amp_dtype) if use_amp else contextlib.nullcontext()
            )
            with autocast:
                out = step_model(b)
            loss = mse_ssim_loss(out.float(), s, ssim_weight=config.ssim_weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach().double() * len(b)
            if config.ssim_weight == 0:
                mse_sum += loss.detach().double() * len(b)
            else:
                mse_sum += (out.detach().float() - s).square().mean().double() * len(b)
            done += len(b)
            bar.update(len(b))
            now = time.perf_counter()
            if bar.disable is False and now - last_post > 1.0:  # .item() syncs; rarely
                bar.set_postfix(
                    loss=f"{loss_sum.item() / done:.5f}", img_s=f"{done * world / (now - t0):.1f}"
                )
                last_post = now
        bar.close()
        t_train = time.perf_counter() - t0

        if ddp:  # validation split over the ranks; one all-reduce for train and val sums
            mine = (
                torch.arange(rank, va.n, world)
                if va is not None
                else torch.zeros(0, dtype=torch.long)
            )
            vsum = (
                _eval_sums(base, va, mine, eval_bs, config.ssim_weight, device)
                if va is not None
                else torch.zeros(3, dtype=torch.float64, device=device)
            )
            stats = torch.cat(
                [
                    torch.stack(
                        [
                            loss_sum,
                            torch.tensor(float(done), dtype=torch.float64, device=device),
                            mse_sum,
                        ]
                    ),
                    vsum,
                ]
            )
            dist.all_reduce(stats)
            dist.broadcast(stats, src=0)  # rank 0's numbers decide, bit for bit
            loss_sum, done, mse_sum = stats[0], int(stats[1].item()), stats[2]
            val = (
                {"loss": stats[3].item() / va.n, "mse": stats[4].item() / va.n}
                if va is not None
                else None
            )
        else:
            val = (
                evaluate(
                    base, va, batch_size=eval_bs, ssim_weight=config.ssim_weight, device=device
                )
                if va is not None
                else None
            )
        train_loss = loss_sum.item() / max(done, 1)
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"training loss became {train_loss} in epoch {epoch + 1}; "
                f"try a smaller lr (now {config.lr})"
            )
        seconds = time.perf_counter() - t0
        rec = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_mse": mse_sum.item() / max(done, 1),
            "val_loss": val["loss"] if val else None,
            "val_mse": val["mse"] if val else None,
            "seconds": seconds,
            "train_seconds": t_train,
            "images_per_s": done / t_train if t_train > 0 else float("nan"),
            "lr": optimizer.param_groups[0]["lr"],
        }
        history.append(rec)
        epochs_run += 1
        images_seen += done
        train_time += t_train

        crit = val["loss"] if val else train_loss
        improved = crit < best_loss
        if improved:
            best_loss, best_epoch = crit, epoch + 1
            if config.keep_best:
                best_state = {k: v.detach().cpu().clone() for k, v in base.state_dict().items()}
        common = dict(
            config={**config.to_dict(), "world_size": world},
            epoch=epoch + 1,
            best_val_loss=best_loss,
            best_epoch=best_epoch,
            history=history,
            meta=meta_n,
        )
        if ckpt_dir is not None and is_main:
            if improved:
                save_checkpoint(best_path, base, **common)  # type: ignore[arg-type]
            save_checkpoint(
                last_path,
                base,
                optimizer=optimizer,  # type: ignore[arg-type]
                scaler=scaler if scaler.is_enabled() else None,
                rng=capture_rng_state(gen),
                **common,
            )
        if progress and is_main:
            vs = f" val {rec['val_loss']:.5f}" if val else ""
            tqdm.write(
                f"epoch {epoch + 1}/{config.epochs}: train {train_loss:.5f}{vs}"
                f"{' (best)' if improved else ''}  {seconds:.1f} s  "
                f"{rec['images_per_s']:.1f} img/s"
            )
        stop_cb = bool(callback is not None and callback(rec))
        if budget_s is not None:
            time_p0, time_p_epoch = (time.perf_counter() - t_start) / budget_s, seconds / budget_s
        stop_time = budget_s is not None and time_p0 >= 1.0
        if ddp:  # every rank must leave the loop at the same epoch, or the others hang
            flags = torch.tensor(
                [float(stop_cb), float(stop_time), time_p0, time_p_epoch],
                dtype=torch.float64,
                device=device,
            )
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            stop_cb, stop_time = bool(flags[0].item()), bool(flags[1].item())
            time_p0, time_p_epoch = float(flags[2].item()), float(flags[3].item())
        if stop_cb:
            stopped = "callback"
            break
        if stop_time:
            stopped = "max_minutes"
            break

    if (
        config.keep_best
        and best_epoch is not None
        and (not history or best_epoch != history[-1]["epoch"])
    ):
        if best_state is None:  # best epoch came before a resume: read it back from disk
            cand = [
                p
                for p in (best_path, resume_from and Path(resume_from).with_name(BEST_NAME))
                if p is not None and Path(p).is_file()
            ]
            if cand:
                best_state = read_checkpoint(cand[0])["model_state"]
            else:
                warnings.warn(
                    f"best epoch {best_epoch} came before the resume and no "
                    f"{BEST_NAME} was found; keeping the last weights",
                    UserWarning,
                    stacklevel=2,
                )
        if best_state is not None:
            base.load_state_dict(best_state)
    if ddp:
        barrier()  # rank 0's files are complete before any rank returns

    return TrainResult(
        history=history,
        epochs_completed=history[-1]["epoch"] if history else start_epoch,
        epochs_run=epochs_run,
        best_epoch=best_epoch,
        best_val_loss=best_loss if best_epoch is not None else None,
        seconds=time.perf_counter() - t_start,
        images_per_s=images_seen / train_time if train_time > 0 else float("nan"),
        stopped_reason=stopped,
        parameters=n_params,
        config=config.to_dict(),
        world_size=world,
        best_path=best_path if best_path is not None and best_path.is_file() else None,
        last_path=last_path if last_path is not None and last_path.is_file() else None,
    )


# --------------------------------------------------------------------------- plotting


def plot_history(
    history: Sequence[Mapping[str, Any]], path: str | Path, *, title: str | None = None
) -> Path:
    """Plot train/val loss per epoch to a PNG (matplotlib, Agg backend); returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(ep, [h["train_loss"] for h in history], "o-", label="train", ms=3)
    val = [(h["epoch"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val), "s-", label="validation", ms=3)
        be, bl = min(val, key=lambda t: t[1])
        ax.plot([be], [bl], "k*", ms=10, label=f"best (epoch {be})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss  (MSE + λ(1 − SSIM))")
    losses = [h["train_loss"] for h in history] + [v for _, v in val]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 5:  # log only if it helps
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title or "training curve")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
