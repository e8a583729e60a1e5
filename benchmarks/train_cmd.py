"""``deblur-bench train MODEL``: train a CNN on the train split, validate on the val split.

The training loop is `convae.train`; this command only supplies the data pipeline,
checkpoint folder and resume handling (the training CLI needs the data pipeline).

Distributed data parallel (PyTorch's ``torch.distributed`` + ``DistributedDataParallel``)::

    torchrun --standalone --nproc_per_node=2 -m benchmarks train convae-unet --out runs/u

Under torchrun (``WORLD_SIZE`` > 1, or ``--distributed``) every process loads the same
splits, joins the process group (gloo on CPU; nccl with ``--device cuda``, one GPU per
process, ``cuda:LOCAL_RANK``), and trains its ``DistributedSampler`` share;
``--batch-size`` is per process (global batch = batch size x processes).  Rank 0 alone
checks/creates ``--out``, prints, and writes checkpoints, ``train.json`` and the curve; the
other ranks wait for it at barriers.  ``--resume`` works the same way: every rank reads
the one ``last.pt`` (on a shared filesystem when the run spans nodes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import convae
from benchmarks.blur import BlurOperator
from benchmarks.degradation import (
    Degradation,
    DegradationFamily,
    Kernel,
    degradation_from_flags,
    parse_family,
)
from benchmarks.errors import UserError
from benchmarks.family_pairs import family_training
from benchmarks.io_utils import write_json
from benchmarks.methods import CNNMethod, MethodContext, check_options, get_method, registry
from benchmarks.methods._cnn import CURVE_NAME
from benchmarks.pipeline import Splits, prepare_splits
from benchmarks.presets import Preset, preset_for
from benchmarks.run_dir import RunFolder
from benchmarks.run_info import (
    data_folder,
    default_out,
    git_commit,
    peak_rss_mib,
    resolve_device,
    versions,
)
from convae.train import (
    DistributedInfo,
    barrier,
    destroy_distributed,
    env_world_size,
    init_distributed,
)

#: The ``train`` flags that reach the method as ``ctx.options`` (unset ones are left out).
TRAIN_OPTIONS = (
    "batch_size",
    "lr",
    "lr_schedule",
    "amp",
    "extra_photos",
    "augment_photos",
    "augment_faces",
)


def cnn_methods() -> list[str]:
    """The methods ``train`` trains: those marked ``trainable_cnn``."""
    return [n for n, c in registry().items() if c.trainable_cnn]


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """``["width=32", "depth=3"]`` → ``{"width": 32, "depth": 3}`` (literals, else strings)."""
    import ast

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"--model-arg wants KEY=VALUE with KEY a Python name, got {item!r}")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def _run_folder(args: argparse.Namespace) -> RunFolder:
    """The checkpoint folder: new, continued (``--resume`` in its own folder) or replaced.

    ``--resume A/last.pt`` continues in ``A``; with ``--out B`` it writes into ``B``, which must
    be new (or empty) unless ``--overwrite`` replaces a run folder this tool made.
    """
    resume = Path(args.resume) if args.resume else None
    if resume is not None and not resume.is_file():
        raise FileNotFoundError(f"--resume checkpoint not found: {resume}")
    default = resume.parent if resume is not None else default_out(f"train-{args.model}")
    return RunFolder(
        args.out or default,
        kind="train",
        overwrite=args.overwrite,
        protect=[data_folder(args.data_dir)],
        staged=False,  # checkpoints appear as they are written (a crash can be resumed)
        continue_in=resume.parent if resume is not None else None,
    )


def _shared_out_dir(
    args: argparse.Namespace, info: DistributedInfo | None, stack: contextlib.ExitStack
) -> tuple[Path, RunFolder | None]:
    """The checkpoint folder, checked, locked and created by rank 0 only (held open in
    ``stack``); every rank gets its path, rank 0 also the `RunFolder` to commit.

    An error on rank 0 (existing run folder, missing --resume file) is sent to the other
    ranks so that all of them stop with it instead of waiting forever at a barrier.
    """
    error: BaseException | None = None
    out: Path | None = None
    folder: RunFolder | None = None
    if info is None or info.is_main:
        try:
            folder = stack.enter_context(_run_folder(args))
            out = folder.path
        except (OSError, ValueError) as exc:
            error = exc
    if info is None:
        if error is not None:
            raise error
        return out, folder  # type: ignore[return-value]
    import torch.distributed as dist

    box: list[Any] = [
        None if error is not None else str(out),
        None if error is None else (type(error).__name__, str(error)),
    ]
    dist.broadcast_object_list(box, src=0)
    if box[1] is not None:
        if error is not None:
            raise error
        kind = {"FileExistsError": FileExistsError, "FileNotFoundError": FileNotFoundError}.get(
            box[1][0], UserError
        )
        raise kind(f"{box[1][1]} (reported by rank 0)")
    return Path(box[0]), folder


def main(args: argparse.Namespace) -> int:
    """Train ``args.model``; joins a DDP process group first when launched by torchrun."""
    import torch

    if not get_method(args.model).trainable_cnn:
        raise ValueError(
            f"`train` trains CNN methods ({', '.join(cnn_methods())}); "
            f"{args.model!r} is not one (it is fitted inside `deblur-bench run`)"
        )
    cls = cast("type[CNNMethod]", get_method(args.model))  # trainable_cnn: a CNNMethod
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (getattr(args, "distributed", False) or env_world_size() > 1):
        with contextlib.ExitStack() as stack:  # holds the run folder (lock) to the end
            return _train(args, cls, resolve_device(args.device), None, stack)
    resolve_device(args.device)  # same errors as the single-process command
    missing = [
        k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
    ]
    if missing:
        raise UserError(
            f"--distributed needs the environment torchrun sets ({', '.join(missing)} missing); "
            f"start it as `torchrun --nproc_per_node=N -m benchmarks train ...`"
        )
    info = init_distributed(args.device)
    try:
        with contextlib.ExitStack() as stack:
            return _train(args, cls, info.device, info, stack)
    finally:
        destroy_distributed()


@dataclass
class Training:
    """One ``train`` call's settings, resolved and checked before the folder exists."""

    args: argparse.Namespace
    cls: type[CNNMethod]
    device: Any
    info: DistributedInfo | None
    preset: Preset
    degradation: Degradation  # the model's, or, for a generalist, the one the splits load with
    family: DegradationFamily | None  # train --kernels: the degradations drawn per image
    options: dict[str, Any]

    @property
    def is_main(self) -> bool:
        return self.info is None or self.info.is_main

    @property
    def quiet(self) -> bool:
        return bool(self.args.quiet) or not self.is_main

    @property
    def blur(self) -> BlurOperator:
        return self.degradation.blur

    @property
    def blur_meta(self) -> dict[str, Any]:
        """What the checkpoints record: the degradation, or the family of a generalist."""
        return self.family.meta() if self.family is not None else self.degradation.meta()

    def method(self, out: Path) -> CNNMethod:
        """The method, writing into the checkpoint folder ``out``."""
        ctx = MethodContext(
            preset=self.preset,
            device=self.device,
            seed=self.args.seed,
            work_dir=out,
            quiet=self.quiet,
            blur_meta=self.blur_meta,
            options=self.options,
            noise=float(self.degradation.noise or 0.0),
        )
        return self.cls(ctx)


def _settings(
    args: argparse.Namespace, cls: type[CNNMethod], device: Any, info: DistributedInfo | None
) -> Training:
    """Preset, blur and the method's options from the flags; every option checked."""
    options = {
        k: v for k in TRAIN_OPTIONS if (v := getattr(args, k, None)) is not None and v is not False
    }
    model_kwargs = parse_model_args(getattr(args, "model_arg", []) or [])
    if model_kwargs:
        options["model_kwargs"] = model_kwargs
    preset = preset_for(args)
    family = _family(args, cls, preset.jpeg_quality)
    if family is None:
        degradation = degradation_from_flags(args, jpeg_quality=preset.jpeg_quality)
    else:  # the splits load with the default one; every pair is then drawn from the family
        degradation = Degradation(Kernel(), family.noise[0], preset.jpeg_quality)
    check_options(options, degradation.blur)  # before the run folder exists
    return Training(args, cls, device, info, preset, degradation, family, options)


def _family(
    args: argparse.Namespace, cls: type[CNNMethod], jpeg_quality: int | None
) -> DegradationFamily | None:
    """``--kernels`` (with ``--noise`` or ``--noise-range``) as a family; None without it."""
    spec, noise_range = getattr(args, "kernels", None), getattr(args, "noise_range", None)
    if spec is None:
        if noise_range is not None:
            raise UserError(
                "--noise-range draws the noise of a --kernels family; with one kernel give --noise"
            )
        return None
    given = [
        f for f in ("kernel", "sigma", "kernel_size", "psf") if getattr(args, f, None) is not None
    ]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise UserError(f"--kernels draws the kernel of every training image: drop {flag}")
    if cls.sees_psf:
        raise UserError(f"--kernels trains a blind model; {args.model} is told the kernel")
    if noise_range is not None and args.noise:
        raise UserError("give --noise (one level) or --noise-range (drawn per image), not both")
    noise = noise_range if noise_range is not None else (args.noise, args.noise)
    return DegradationFamily(parse_family(spec), noise, jpeg_quality)


def _train(
    args: argparse.Namespace,
    cls: type[CNNMethod],
    device: Any,
    info: DistributedInfo | None,
    stack: contextlib.ExitStack,
) -> int:
    import torch

    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True  # one image size: let cuDNN time its kernels once
    t = _settings(args, cls, device, info)
    out, folder = _shared_out_dir(args, info, stack)
    splits = prepare_splits(t.preset, args.data_dir, seed=args.seed, degradation=t.degradation)
    _say(
        t,
        f"data: {splits.source}; train {len(splits.train)} / val {len(splits.val)} images, "
        f"{t.preset.size}px",
    )
    method = t.method(out)
    try:
        model = method.build_model(int(splits.train.blurred.shape[1]))
    except TypeError as exc:  # an unknown --model-arg (the run folder is removed on the way out)
        raise ValueError(f"{args.model}: bad --model-arg ({exc})") from None
    if t.family is None:
        train = method.training_pairs(splits.train, t.blur)
        train_data: Any = (train.blurred, train.sharp)
    else:  # a generalist: fresh draws per image and epoch, validation drawn once
        train_data, val, train = family_training(
            splits.train, splits.val, t.family, t.options, args.seed
        )
        splits.val = val if val is not None else splits.val
        _say(
            t,
            f"training on {len(train_data)} sharp images, degraded per epoch: "
            f"{t.family.describe()}",
        )
    method.prepare_model(model, train, splits.val, t.blur, resume=args.resume is not None)
    config = method.train_config()
    if info is not None:
        _say(
            t,
            f"distributed: {info.world_size} processes ({info.backend}), batch "
            f"{config.batch_size} per process = {config.batch_size * info.world_size} per step; "
            f"rank 0 writes {out}",
        )
    t0 = time.perf_counter()
    result = convae.train(
        model,
        train_data,
        (splits.val.blurred, splits.val.sharp),
        config,
        checkpoint_dir=out,
        resume_from=args.resume,
        meta=t.blur_meta,
        progress=not t.quiet,
    )
    seconds = time.perf_counter() - t0
    if t.is_main:
        _write_outputs(t, out, splits, result, seconds)
        if folder is not None:  # a replaced run is swapped in only now
            out = folder.commit()
    barrier()  # the others leave only when rank 0's files are complete
    if t.is_main:
        print(_done_message(t, result, out))
    return 0


def _say(t: Training, msg: str) -> None:
    if not t.quiet:
        print(msg, file=sys.stderr)


def _done_message(t: Training, result: convae.TrainResult, out: Path) -> str:
    best = (
        "none"
        if result.best_val_loss is None
        else f"{result.best_val_loss:.5f} at epoch {result.best_epoch}"
    )
    procs = f" on {t.info.world_size} processes" if t.info is not None else ""
    name = t.args.model
    return (
        f"{name}: {result.epochs_completed} epochs ({result.stopped_reason}){procs}, "
        f"best val loss {best}, {result.images_per_s:.1f} images/s; checkpoints in {out} "
        f"(use --checkpoint {name}={out / 'best.pt'})"
    )


def _distributed_record(t: Training, result: convae.TrainResult) -> dict[str, Any] | None:
    if t.info is None:
        return None
    return {
        "world_size": t.info.world_size,
        "backend": t.info.backend,
        "local_world_size": t.info.local_world_size,
        "batch_size_per_process": result.config.get("batch_size"),
        "global_batch_size": result.config.get("batch_size", 0) * t.info.world_size,
        "sampler": "torch.utils.data.distributed.DistributedSampler",
    }


def _write_outputs(
    t: Training, out: Path, splits: Splits, result: convae.TrainResult, seconds: float
) -> None:
    """Training curve and ``train.json`` (rank 0 only), with the data options as parsed."""
    import torch

    args = t.args
    if result.history:
        convae.plot_history(result.history, out / CURVE_NAME, title=f"{args.model} training")
    write_json(
        out / "train.json",
        {
            "format_version": 1,
            "command": sys.argv,
            "model": args.model,
            "architecture": t.cls.architecture,
            "parameters": result.parameters,
            "preset": t.preset.to_dict(),
            "degradation": t.degradation.to_json() if t.family is None else None,
            "family": t.family.to_json() if t.family is not None else None,
            "blur": t.blur_meta,
            "config": result.config,
            "data": {"source": splits.source, **splits.meta},
            "seconds": seconds,
            "epochs_completed": result.epochs_completed,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "images_per_s": result.images_per_s,
            "stopped_reason": result.stopped_reason,
            "history": result.history,
            "versions": versions(),
            "git_commit": git_commit(),
            "extra_photos": getattr(args, "extra_photos", 0) or 0,
            "model_args": t.options.get("model_kwargs", {}),
            "augment_photos": bool(getattr(args, "augment_photos", False)),
            "augment_faces": bool(getattr(args, "augment_faces", False)),
            "device": str(t.device),
            "threads": torch.get_num_threads(),
            "distributed": _distributed_record(t, result),
            "peak_rss_mib": peak_rss_mib(),
        },
    )
