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

The loop is nanoGPT-like (config in one dataclass, one epoch loop) with what nanoGPT leaves
out: atomic checkpoints with RNG state, exact resume, best-on-validation selection and a
wall-clock budget that stops at an epoch boundary (so a resumed run stays exact).

Multi-process training uses PyTorch's own engine (``torch.distributed`` +
``DistributedDataParallel``).  Start every process under ``torchrun`` and call
`init_distributed` first; `train` then wraps the model in DDP itself::

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

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn
from tqdm.auto import tqdm

from convae._epoch import (
    _Budget,
    _epoch_numbers,
    _keep_best,
    _record_epoch,
    _save_epoch,
    _stop_decision,
    _train_epoch,
)
from convae._run import _load_pairs, _resume, _start, _step_model
from convae.config import (
    BEST_NAME,
    LAST_NAME,
    LR_SCHEDULES,
    TrainConfig,
    TrainResult,
    cosine_factor,
)
from convae.distributed import (
    TORCHRUN_ENV,
    DistributedInfo,
    barrier,
    destroy_distributed,
    env_world_size,
    init_distributed,
    launched_by_torchrun,
)
from convae.evaluation import evaluate
from convae.models import architecture_of, count_parameters
from convae.plot import plot_history

__all__ = [
    "BEST_NAME",
    "LAST_NAME",
    "LR_SCHEDULES",
    "TORCHRUN_ENV",
    "DistributedInfo",
    "TrainConfig",
    "TrainResult",
    "barrier",
    "cosine_factor",
    "destroy_distributed",
    "env_world_size",
    "evaluate",
    "init_distributed",
    "launched_by_torchrun",
    "plot_history",
    "train",
]


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
        model: a registered convae architecture (see `convae.models`); trained in
            place and moved to ``config.device``.  Inside an initialized process group of
            two or more ranks it is wrapped in ``DistributedDataParallel`` here (a model
            the caller already wrapped is used as is).
        train_data, val_data: a ``(blurred, sharp)`` pair of float32 (N, C, H, W) tensors
            in [0, 1], an object with ``.blurred``/``.sharp`` tensors, or a ``Dataset``
            yielding (C, H, W) pairs.  ``val_data=None`` selects "best" on training loss.
            A training ``Dataset`` with a ``set_epoch(epoch)`` method (pairs made on the fly,
            drawn per epoch) is told each epoch's number before the epoch starts, also on
            resume, as PyTorch's samplers are.
        config: `TrainConfig` (defaults: the reference protocol).
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
    `init_distributed`): ``config.batch_size`` is per process, so one optimizer step
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
    run = _start(model, config, meta)
    arch, model_kwargs = architecture_of(model)
    tr, va = _load_pairs(train_data, val_data, model_kwargs, run)
    resume_path = Path(resume_from) if resume_from is not None else None
    if resume_path is not None:
        _resume(run, resume_path, arch, model_kwargs, meta)
    step_model, sampler = _step_model(model, run, tr.n)

    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    t_start = time.perf_counter()
    stopped, epochs_run, images_seen, train_time = "epochs", 0, 0, 0.0
    budget = _Budget(60.0 * config.max_minutes if config.max_minutes is not None else None)
    for epoch in range(run.start_epoch, config.epochs):
        t0 = time.perf_counter()
        sums = _train_epoch(run, step_model, tr, epoch, sampler, budget, progress, t0)
        t_train = time.perf_counter() - t0
        numbers = _epoch_numbers(run, va, sums)
        seconds = time.perf_counter() - t0
        rec, improved = _record_epoch(run, epoch, numbers, t_train, seconds)
        epochs_run += 1
        images_seen += numbers[2]
        train_time += t_train
        _save_epoch(run, ckpt_dir, epoch, improved)
        if progress and run.is_main:
            vs = f" val {rec['val_loss']:.5f}" if rec["val_loss"] is not None else ""
            tqdm.write(
                f"epoch {epoch + 1}/{config.epochs}: train {rec['train_loss']:.5f}{vs}"
                f"{' (best)' if improved else ''}  {seconds:.1f} s  "
                f"{rec['images_per_s']:.1f} img/s"
            )
        stop_cb = bool(callback is not None and callback(rec))
        reason = _stop_decision(run, stop_cb, budget, t_start, seconds)
        if reason is not None:
            stopped = reason
            break

    best_path = ckpt_dir / BEST_NAME if ckpt_dir else None
    last_path = ckpt_dir / LAST_NAME if ckpt_dir else None
    _keep_best(run, best_path, resume_path)
    if run.ddp:
        barrier()  # rank 0's files are complete before any rank returns
    return TrainResult(
        history=run.history,
        epochs_completed=run.history[-1]["epoch"] if run.history else run.start_epoch,
        epochs_run=epochs_run,
        best_epoch=run.best_epoch,
        best_val_loss=run.best_loss if run.best_epoch is not None else None,
        seconds=time.perf_counter() - t_start,
        images_per_s=images_seen / train_time if train_time > 0 else float("nan"),
        stopped_reason=stopped,
        parameters=count_parameters(run.base),
        config=config.to_dict(),
        world_size=run.world,
        best_path=best_path if best_path is not None and best_path.is_file() else None,
        last_path=last_path if last_path is not None and last_path.is_file() else None,
    )
