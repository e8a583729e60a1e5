"""One training epoch and what follows it: numbers, checkpoints, the stop decision."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from convae._run import _Run
from convae.checkpoint import (
    capture_rng_state,
    read_checkpoint,
    save_checkpoint,
)
from convae.config import BEST_NAME, LAST_NAME, cosine_factor
from convae.data import PairData
from convae.distributed import epoch_order
from convae.evaluation import _eval_sums, evaluate
from convae.loss import mse_ssim_loss


@dataclass
class _Budget:
    """The cosine schedule's progress from this call's time budget.

    Progress is the larger of the epoch fraction and the fraction of the budget. The time
    part is read at epoch ends only (and agreed over DDP ranks) and extrapolated within an
    epoch from the last epoch's length, so every rank and every step of an epoch sees the
    same lr.
    """

    seconds: float | None
    p0: float = 0.0  # fraction of the budget used at the start of this epoch
    p_epoch: float = 0.0  # fraction one epoch takes

    def progress(self, epoch: int, frac: float, epochs: int) -> float:
        done = (epoch + frac) / epochs
        if self.seconds is not None:
            done = max(done, self.p0 + frac * self.p_epoch)
        return done


def _train_epoch(
    run: _Run,
    step_model: nn.Module,
    tr: PairData,
    epoch: int,
    sampler: DistributedSampler | None,
    budget: _Budget,
    progress: bool,
    t0: float,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One pass over this rank's share: ``(sum of loss, sum of MSE, images)`` in float64.

    ``t0`` is the epoch's start (for the bar's images/s).
    """
    cfg, device = run.config, run.device
    run.base.train()
    step_model.train()
    order = epoch_order(tr.n, run.gen, epoch, sampler)
    set_epoch = getattr(tr.dataset, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)  # a dataset making its pairs on the fly per epoch, as samplers are told
    idx_batches = list(order.split(cfg.batch_size))
    if cfg.drop_last and len(idx_batches) > 1 and len(idx_batches[-1]) < cfg.batch_size:
        idx_batches.pop()
    bar = tqdm(
        total=sum(len(i) for i in idx_batches),
        unit="img",
        leave=False,
        disable=not (progress and run.is_main),
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
    )
    use_amp = cfg.amp and device.type == "cuda"  # AMP on CPU is silently off
    amp_dtype = torch.float16 if cfg.amp_dtype == "float16" else torch.bfloat16
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    # The epoch's mean training MSE, the figure the source reported (its loss was MSE
    # alone); equal to the loss when ssim_weight is 0.
    mse_sum = torch.zeros((), dtype=torch.float64, device=device)
    done, last_post = 0, 0.0
    for step, (b, s) in enumerate(tr.batches(idx_batches, device, cfg.num_workers)):
        if cfg.lr_schedule == "cosine":
            lr = cfg.lr * cosine_factor(budget.progress(epoch, step / len(idx_batches), cfg.epochs))
            for g in run.optimizer.param_groups:
                g["lr"] = lr
        autocast = torch.autocast("cuda", dtype=amp_dtype) if use_amp else contextlib.nullcontext()
        with autocast:
            out = step_model(b)
        loss = mse_ssim_loss(out.float(), s, ssim_weight=cfg.ssim_weight)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        loss_sum += loss.detach().double() * len(b)
        if cfg.ssim_weight == 0:
            mse_sum += loss.detach().double() * len(b)
        else:
            mse_sum += (out.detach().float() - s).square().mean().double() * len(b)
        done += len(b)
        bar.update(len(b))
        now = time.perf_counter()
        if bar.disable is False and now - last_post > 1.0:  # .item() syncs; rarely
            img_s = done * run.world / (now - t0)
            bar.set_postfix(loss=f"{loss_sum.item() / done:.5f}", img_s=f"{img_s:.1f}")
            last_post = now
    bar.close()
    return loss_sum, mse_sum, done


def _epoch_numbers(
    run: _Run, va: PairData | None, sums: tuple[torch.Tensor, torch.Tensor, int]
) -> tuple[float, float, int, dict[str, float] | None]:
    """Mean training loss and MSE, images, validation: all ranks' sums, rank 0's numbers."""
    loss_sum, mse_sum, done = sums
    eval_bs = run.config.eval_batch_size or run.config.batch_size
    w = run.config.ssim_weight
    if not run.ddp:
        val = (
            evaluate(run.base, va, batch_size=eval_bs, ssim_weight=w, device=run.device)
            if va is not None
            else None
        )
    else:  # validation split over the ranks; one all-reduce for train and val sums
        dev = run.device
        mine = torch.arange(run.rank, va.n, run.world) if va is not None else None
        vsum = (
            _eval_sums(run.base, va, mine, eval_bs, w, dev)  # type: ignore[arg-type]
            if va is not None
            else torch.zeros(3, dtype=torch.float64, device=dev)
        )
        count = torch.tensor(float(done), dtype=torch.float64, device=dev)
        stats = torch.cat([torch.stack([loss_sum, count, mse_sum]), vsum])
        dist.all_reduce(stats)
        dist.broadcast(stats, src=0)  # rank 0's numbers decide, bit for bit
        loss_sum, done, mse_sum = stats[0], int(stats[1].item()), stats[2]
        val = (
            {"loss": stats[3].item() / va.n, "mse": stats[4].item() / va.n}
            if va is not None
            else None
        )
    train_loss = loss_sum.item() / max(done, 1)
    return train_loss, mse_sum.item() / max(done, 1), done, val


def _record_epoch(
    run: _Run,
    epoch: int,
    numbers: tuple[float, float, int, dict[str, float] | None],
    t_train: float,
    seconds: float,
) -> tuple[dict[str, Any], bool]:
    """Append the epoch's history record; track the best epoch (validation loss, else
    training loss). Returns the record and whether this epoch is the best so far."""
    train_loss, train_mse, done, val = numbers
    if not math.isfinite(train_loss):
        raise FloatingPointError(
            f"training loss became {train_loss} in epoch {epoch + 1}; "
            f"try a smaller lr (now {run.config.lr})"
        )
    rec = {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "train_mse": train_mse,
        "val_loss": val["loss"] if val else None,
        "val_mse": val["mse"] if val else None,
        "seconds": seconds,
        "train_seconds": t_train,
        "images_per_s": done / t_train if t_train > 0 else float("nan"),
        "lr": run.optimizer.param_groups[0]["lr"],
    }
    run.history.append(rec)
    crit = val["loss"] if val else train_loss
    improved = crit < run.best_loss
    if improved:
        run.best_loss, run.best_epoch = crit, epoch + 1
        if run.config.keep_best:
            run.best_state = {k: v.detach().cpu().clone() for k, v in run.base.state_dict().items()}
    return rec, improved


def _save_epoch(run: _Run, ckpt_dir: Path | None, epoch: int, improved: bool) -> None:
    """``best.pt`` when the epoch improved, ``last.pt`` (resumable) always; rank 0 only."""
    if ckpt_dir is None or not run.is_main:
        return
    common: dict[str, Any] = dict(
        config={**run.config.to_dict(), "world_size": run.world},
        epoch=epoch + 1,
        best_val_loss=run.best_loss,
        best_epoch=run.best_epoch,
        history=run.history,
        meta=run.meta,
    )
    if improved:
        save_checkpoint(ckpt_dir / BEST_NAME, run.base, **common)
    save_checkpoint(
        ckpt_dir / LAST_NAME,
        run.base,
        optimizer=run.optimizer,
        scaler=run.scaler if run.scaler.is_enabled() else None,
        rng=capture_rng_state(run.gen),
        **common,
    )


def _stop_decision(
    run: _Run, stop_cb: bool, budget: _Budget, t_start: float, seconds: float
) -> str | None:
    """``"callback"``, ``"max_minutes"`` or None; under DDP the ranks agree (max-reduced)."""
    if budget.seconds is not None:
        budget.p0 = (time.perf_counter() - t_start) / budget.seconds
        budget.p_epoch = seconds / budget.seconds
    stop_time = budget.seconds is not None and budget.p0 >= 1.0
    if run.ddp:  # every rank must leave the loop at the same epoch, or the others hang
        flags = torch.tensor(
            [float(stop_cb), float(stop_time), budget.p0, budget.p_epoch],
            dtype=torch.float64,
            device=run.device,
        )
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        stop_cb, stop_time = bool(flags[0].item()), bool(flags[1].item())
        budget.p0, budget.p_epoch = float(flags[2].item()), float(flags[3].item())
    if stop_cb:
        return "callback"
    return "max_minutes" if stop_time else None


def _keep_best(run: _Run, best_path: Path | None, resume_from: Path | None) -> None:
    """With ``keep_best``, end on the best epoch's weights (read back if before a resume)."""
    if not run.config.keep_best or run.best_epoch is None:
        return
    if run.history and run.best_epoch == run.history[-1]["epoch"]:
        return
    if run.best_state is None:  # best epoch came before a resume: read it back from disk
        cand = [
            p
            for p in (best_path, resume_from and resume_from.with_name(BEST_NAME))
            if p is not None and Path(p).is_file()
        ]
        if cand:
            run.best_state = read_checkpoint(cand[0])["model_state"]
        else:
            warnings.warn(
                f"best epoch {run.best_epoch} came before the resume and no "
                f"{BEST_NAME} was found; keeping the last weights",
                UserWarning,
                stacklevel=3,
            )
    if run.best_state is not None:
        run.base.load_state_dict(run.best_state)
