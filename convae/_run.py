"""The state one `convae.train` call carries between epochs, and how it starts."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from convae.checkpoint import (
    CheckpointError,
    check_compatible,
    check_meta,
    read_checkpoint,
    restore_rng_state,
)
from convae.config import LAST_NAME, TRAJECTORY_FIELDS, TrainConfig
from convae.data import PairData
from convae.distributed import check_same_data, rank_world
from convae.models import unwrap_model


@dataclass
class _Run:
    """What one `train` call carries from epoch to epoch (all of it checkpointed)."""

    config: TrainConfig
    device: torch.device
    rank: int
    world: int
    base: nn.Module  # the unwrapped model (what checkpoints hold)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    gen: torch.Generator  # shuffling only
    meta: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None

    @property
    def ddp(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _warn_config_changes(old: Mapping[str, Any], new: TrainConfig, path: Path) -> None:
    changed = [
        f"{k}: {old.get(k)!r} -> {getattr(new, k)!r}"
        for k in TRAJECTORY_FIELDS
        if k in old and old[k] != getattr(new, k)
    ]
    if changed:
        warnings.warn(
            f"resuming {path} with a different config ({'; '.join(changed)}); the "
            f"result will differ from an uninterrupted run",
            UserWarning,
            stacklevel=4,
        )


def _load_pairs(
    train_data: Any, val_data: Any, model_kwargs: Mapping[str, Any], run: _Run
) -> tuple[PairData, PairData | None]:
    """Both splits as `PairData`, on the GPU when they fit, channel count checked."""
    tr = PairData(train_data, "train_data")
    va = PairData(val_data, "val_data") if val_data is not None else None
    want_c = model_kwargs.get("in_channels")
    for d in (tr, va):
        if d is None:
            continue
        d.keep_on(run.device)
        if want_c is not None and d.channels != want_c:
            raise ValueError(
                f"{d.what} has {d.channels} channels but the model expects "
                f"{want_c} (in_channels={want_c})"
            )
    if run.ddp:
        check_same_data(tr, va, run.device)
    return tr, va


def _resume(run: _Run, path: Path, arch: str, model_kwargs: Mapping[str, Any], meta: Any) -> None:
    """Restore weights, optimizer, scaler, RNG, history and best-so-far from ``path``."""
    ckpt = read_checkpoint(path, map_location="cpu")
    check_compatible(ckpt, arch, dict(model_kwargs), path)
    if "optimizer_state" not in ckpt or ckpt.get("rng") is None:
        raise CheckpointError(
            f"{path} holds weights only (no optimizer/RNG state) "
            f"and cannot be resumed; resume from a {LAST_NAME}, or load "
            f"it for inference with convae.load_model()"
        )
    check_meta(ckpt.get("meta"), meta, path)
    if not run.meta:
        run.meta = dict(ckpt.get("meta") or {})
    _warn_config_changes(ckpt.get("config", {}), run.config, path)
    old_world = int(ckpt.get("config", {}).get("world_size", 1))
    if old_world != run.world:
        warnings.warn(
            f"resuming {path}, trained on {old_world} process(es), with "
            f"{run.world}: the sample order and the global batch change, so the "
            f"result will differ from an uninterrupted run",
            UserWarning,
            stacklevel=3,
        )
    run.base.load_state_dict(ckpt["model_state"])
    run.optimizer.load_state_dict(ckpt["optimizer_state"])
    for g in run.optimizer.param_groups:
        g["lr"] = run.config.lr
    if "scaler_state" in ckpt and run.scaler.is_enabled():
        run.scaler.load_state_dict(ckpt["scaler_state"])
    restore_rng_state(ckpt["rng"], run.gen)
    run.history = list(ckpt.get("history", []))
    run.start_epoch = int(ckpt["epoch"])
    if ckpt.get("best_val_loss") is not None:
        run.best_loss, run.best_epoch = float(ckpt["best_val_loss"]), ckpt.get("best_epoch")


def _step_model(
    model: nn.Module, run: _Run, n_train: int
) -> tuple[nn.Module, DistributedSampler | None]:
    """The module the steps run (DDP-wrapped, compiled) and, under DDP, the sampler."""
    step_model: nn.Module = model
    sampler: DistributedSampler | None = None
    if run.ddp:
        if not isinstance(model, DistributedDataParallel):
            # built after a resume has loaded the weights; DDP also broadcasts rank 0's
            # parameters and buffers, so every rank starts from the same model
            step_model = DistributedDataParallel(
                run.base, device_ids=[run.device.index] if run.device.type == "cuda" else None
            )
        # DistributedSampler only needs len() of what it samples: a range is enough.
        sampler = DistributedSampler(
            range(n_train),  # type: ignore[arg-type]
            num_replicas=run.world,
            rank=run.rank,
            shuffle=True,
            seed=run.config.seed,
            drop_last=False,
        )
    if run.config.compile:
        step_model = torch.compile(step_model)  # type: ignore[assignment]
    return step_model, sampler


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam over every parameter, unless the model makes its own: a model with a
    ``make_optimizer(lr)`` method (e.g. one that updates nonnegative factors multiplicatively)
    is trained with what that method returns, at ``lr`` (the schedule and resume set it on
    every parameter group)."""
    own = getattr(model, "make_optimizer", None)
    if callable(own):
        opt = own(lr)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                f"{type(model).__qualname__}.make_optimizer must return a "
                f"torch.optim.Optimizer, got {type(opt).__qualname__}"
            )
        return opt
    return torch.optim.Adam(model.parameters(), lr=lr)


def _start(model: nn.Module, config: TrainConfig, meta: Mapping[str, Any] | None) -> _Run:
    """Device, ranks, optimizer, scaler and generator of a fresh run."""
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("TrainConfig.device is 'cuda' but no CUDA device is available")
    rank, world = rank_world()
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if config.deterministic and device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    base = unwrap_model(model).to(device)
    use_amp = config.amp and device.type == "cuda"
    fp16 = config.amp_dtype == "float16"
    return _Run(
        config=config,
        device=device,
        rank=rank,
        world=world,
        base=base,
        optimizer=make_optimizer(base, config.lr),
        scaler=torch.amp.GradScaler("cuda", enabled=use_amp and fp16),
        gen=torch.Generator().manual_seed(config.seed),
        meta=dict(meta or {}),
    )
