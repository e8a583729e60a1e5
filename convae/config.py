"""Training configuration and result records of `convae.train`."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from convae.loss import DEFAULT_SSIM_WEIGHT

BEST_NAME = "best.pt"  # weights of the best validation epoch (inference)
LAST_NAME = "last.pt"  # everything a resume needs, written every epoch

# Config fields whose change between a run and its resume breaks exact equivalence.
TRAJECTORY_FIELDS = (
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
#: largest TrainConfig.seed: torch generators take 64-bit seeds, and the DDP sampler seeds
#: with ``seed + epoch``, which must stay in range
MAX_SEED = 2**63 - 1


@dataclass
class TrainConfig:
    """Everything that decides a training run (defaults: the reference ConvAE protocol)."""

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
        """Raise ValueError naming the first bad field and what it must be.

        Every number must be finite: ``nan`` fails every comparison, so a range check alone
        would let ``ssim_weight=nan`` through (and train on plain MSE without a word).
        """

        def bad(name: str, want: str) -> ValueError:
            return ValueError(f"TrainConfig.{name} must be {want}, got {getattr(self, name)!r}")

        def integer(name: str, lo: int, hi: int | None = None, *, none: bool = False) -> None:
            v = getattr(self, name)
            if none and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not lo <= int(v):
                raise bad(name, ("None or " if none else "") + f"an int >= {lo}")
            if hi is not None and int(v) > hi:
                raise bad(name, f"an int in [{lo}, {hi}]")

        def real(name: str, lo: float, *, open_lo: bool, none: bool = False) -> None:
            v = getattr(self, name)
            if none and v is None:
                return
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or not (v > lo if open_lo else v >= lo):
                want = f"a finite number {'>' if open_lo else '>='} {lo:g}"
                raise bad(name, ("None or " if none else "") + want)

        def flag(name: str) -> None:
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "True or False")

        integer("epochs", 0)
        integer("batch_size", 1)
        real("lr", 0.0, open_lo=True)
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", " or ".join(repr(x) for x in LR_SCHEDULES))
        real("ssim_weight", 0.0, open_lo=False)
        real("max_minutes", 0.0, open_lo=True, none=True)
        integer("seed", 0, MAX_SEED)
        if not isinstance(self.device, (str, torch.device)):
            raise bad("device", "a device string such as 'cpu' or 'cuda:0'")
        if self.amp_dtype not in ("float16", "bfloat16"):
            raise bad("amp_dtype", "'float16' or 'bfloat16'")
        integer("eval_batch_size", 1, none=True)
        integer("num_workers", 0)
        for name in ("amp", "compile", "keep_best", "drop_last", "deterministic"):
            flag(name)
        try:
            torch.device(self.device)
        except RuntimeError:
            raise bad("device", "a device string such as 'cpu' or 'cuda:0'") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring unknown keys (e.g. from an older checkpoint)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class TrainResult:
    """What a `train` call did. ``history`` has one dict per epoch since the start
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
