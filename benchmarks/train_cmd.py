"""``deblur-bench train MODEL``: train a CNN on the train split, validate on the val split.

The training loop is :func:`convae.train`; this command only supplies the data pipeline,
checkpoint folder and resume handling (DESIGN §2: the training CLI needs the pipeline).

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
from pathlib import Path
from typing import Any

import convae
from benchmarks.blur import make_blur
from benchmarks.cli_types import (
    device_name,
    finite_nonneg_float,
    finite_positive_float,
    nonneg_int,
    positive_int,
)
from benchmarks.errors import UserError
from benchmarks.extra_pairs import check_cnn_data, cnn_training_pairs
from benchmarks.io_utils import write_json
from benchmarks.methods import MethodContext, get_method, registry
from benchmarks.methods._cnn import CURVE_NAME, _CNNMethod
from benchmarks.pipeline import prepare_splits
from benchmarks.presets import PRESETS, add_protocol_args, get_preset
from benchmarks.run_dir import RunFolder
from benchmarks.runner import (
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


def cnn_methods() -> list[str]:
    return [n for n, c in registry().items() if issubclass(c, _CNNMethod)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="CNN method to train (convae, convae-unet)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    p.add_argument(
        "--data-dir",
        help="face folder, or builtin:faces / builtin:photos (default: the shipped face set)",
    )
    p.add_argument("--size", type=positive_int, help="image side in px (overrides the preset)")
    p.add_argument("--gray", action="store_true", default=None)
    p.add_argument("--max-images", type=nonneg_int, help="cap on images loaded (0 = all)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--sigma", type=finite_positive_float, help="Gaussian blur sigma (default 3)")
    p.add_argument("--kernel-size", type=positive_int, help="Gaussian kernel side (default 25)")
    p.add_argument("--psf")
    p.add_argument("--noise", type=finite_nonneg_float, default=0.0)
    p.add_argument(
        "--epochs", type=positive_int, help="total epochs (a resumed run continues to this)"
    )
    p.add_argument("--max-minutes", type=finite_positive_float, help="wall-clock cap of this call")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=finite_positive_float)
    p.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        help="constant (default) or cosine decay to 0 over --epochs or over "
        "--max-minutes, whichever ends first",
    )
    add_protocol_args(p)
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--resume", help="last.pt of an interrupted run to continue")
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--out", help="checkpoint folder (default results/<date-time>-train-MODEL/)")
    p.add_argument("--overwrite", action="store_true", help="replace a run folder this tool made")
    p.add_argument(
        "--extra-photos",
        type=nonneg_int,
        default=0,
        metavar="N",
        help="add N random crops of scikit-image's bundled photographs, degraded "
        "the same way, to the training pairs (validation/test stay faces)",
    )
    p.add_argument(
        "--augment-photos",
        action="store_true",
        help="give each extra photo crop a random flip / 90-degree turn before "
        "it is degraded (8 variants of every crop)",
    )
    p.add_argument(
        "--augment-faces",
        action="store_true",
        help="add the flips / 90-degree turns of the training faces under which the "
        "blur kernel is symmetric (all 8 for the Gaussian); exact extra pairs",
    )
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model constructor argument, repeatable (e.g. --model-arg width=32)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="DistributedDataParallel training; on by itself under torchrun with "
        "WORLD_SIZE > 1 (start with: torchrun --nproc_per_node=N -m "
        "benchmarks train ...); --batch-size is then per process",
    )


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
    ``stack``); every rank gets its path, rank 0 also the :class:`RunFolder` to commit.

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

    cls = get_method(args.model)
    if not issubclass(cls, _CNNMethod):
        raise ValueError(
            f"`train` trains CNN methods ({', '.join(cnn_methods())}); "
            f"{args.model!r} is not one (it is fitted inside `deblur-bench run`)"
        )
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


def _train(
    args: argparse.Namespace,
    cls: type[_CNNMethod],
    device: Any,
    info: DistributedInfo | None,
    stack: contextlib.ExitStack,
) -> int:
    import torch

    is_main = info is None or info.is_main
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True  # one image size: let cuDNN time its kernels once
    quiet = args.quiet or not is_main
    world = info.world_size if info is not None else 1
    preset = get_preset(args.preset).with_overrides(
        size=args.size,
        gray=args.gray,
        max_images=args.max_images,
        epochs=args.epochs,
        max_minutes=args.max_minutes,
        jpeg_quality=args.jpeg_quality,
        ssim_weight=args.ssim_weight,
    )
    model_kwargs = parse_model_args(getattr(args, "model_arg", []) or [])
    extra = getattr(args, "extra_photos", 0) or 0
    augment_photos = bool(getattr(args, "augment_photos", False))
    augment_faces = bool(getattr(args, "augment_faces", False))
    blur = make_blur(kernel_size=args.kernel_size, sigma=args.sigma, psf=args.psf)
    check_cnn_data(extra, augment_faces, blur)  # before the run folder exists
    out, folder = _shared_out_dir(args, info, stack)
    blur_meta = {**blur.meta(), "noise": args.noise, "quantization": "8-bit"}
    splits = prepare_splits(preset, args.data_dir, seed=args.seed, blur=blur, noise=args.noise)
    if not quiet:
        print(
            f"data: {splits.source}; train {len(splits.train)} / val {len(splits.val)} images, "
            f"{preset.size}px",
            file=sys.stderr,
        )
    options = {
        k: v
        for k, v in {
            "batch_size": args.batch_size,
            "lr": args.lr,
            "lr_schedule": getattr(args, "lr_schedule", None),
            "amp": args.amp or None,
            "model_kwargs": model_kwargs or None,
        }.items()
        if v is not None
    }
    method = cls(
        MethodContext(
            preset=preset,
            device=device,
            seed=args.seed,
            work_dir=out,
            quiet=quiet,
            blur_meta=blur_meta,
            options=options,
        )
    )
    try:
        model = method.build_model(int(splits.train.blurred.shape[1]))
    except TypeError as exc:  # an unknown --model-arg (the run folder is removed on the way out)
        raise ValueError(f"{args.model}: bad --model-arg ({exc})") from None
    train_b, train_s = cnn_training_pairs(
        splits.train.blurred,
        splits.train.sharp,
        blur,
        extra_photos=extra,
        augment_photos=augment_photos,
        augment_faces=augment_faces,
        noise=args.noise,
        seed=args.seed,
    )
    if not quiet and len(train_b) != len(splits.train):
        print(
            f"training pairs: {len(train_b) - extra} faces + {extra} photo crops", file=sys.stderr
        )
    config = method.train_config()
    if info is not None and not quiet:
        print(
            f"distributed: {world} processes ({info.backend}), batch {config.batch_size} per "
            f"process = {config.batch_size * world} per step; rank 0 writes {out}",
            file=sys.stderr,
        )
    t0 = time.perf_counter()
    result = convae.train(
        model,
        (train_b, train_s),
        (splits.val.blurred, splits.val.sharp),
        config,
        checkpoint_dir=out,
        resume_from=args.resume,
        meta=blur_meta,
        progress=not quiet,
    )
    seconds = time.perf_counter() - t0
    if is_main:
        _write_outputs(
            args,
            cls,
            out,
            preset,
            blur_meta,
            splits,
            result,
            seconds,
            device,
            info,
            {
                "extra_photos": extra,
                "model_args": model_kwargs,
                "augment_photos": augment_photos,
                "augment_faces": augment_faces,
            },
        )
        if folder is not None:  # a replaced run is swapped in only now
            out = folder.commit()
    barrier()  # the others leave only when rank 0's files are complete
    if is_main:
        best = (
            "none"
            if result.best_val_loss is None
            else f"{result.best_val_loss:.5f} at epoch {result.best_epoch}"
        )
        procs = f" on {world} processes" if info is not None else ""
        print(
            f"{args.model}: {result.epochs_completed} epochs ({result.stopped_reason}){procs}, "
            f"best val loss {best}, {result.images_per_s:.1f} images/s; checkpoints in {out} "
            f"(use --checkpoint {args.model}={out / 'best.pt'})"
        )
    return 0


def _write_outputs(
    args: argparse.Namespace,
    cls: type[_CNNMethod],
    out: Path,
    preset: Any,
    blur_meta: dict[str, Any],
    splits: Any,
    result: convae.TrainResult,
    seconds: float,
    device: Any,
    info: DistributedInfo | None,
    data_options: dict[str, Any],
) -> None:
    """Training curve and ``train.json`` (rank 0 only); ``data_options`` records
    ``--extra-photos`` and ``--model-arg`` as parsed."""
    import torch

    if result.history:
        convae.plot_history(result.history, out / CURVE_NAME, title=f"{args.model} training")
    distributed = None
    if info is not None:
        distributed = {
            "world_size": info.world_size,
            "backend": info.backend,
            "local_world_size": info.local_world_size,
            "batch_size_per_process": result.config.get("batch_size"),
            "global_batch_size": result.config.get("batch_size", 0) * info.world_size,
            "sampler": "torch.utils.data.distributed.DistributedSampler",
        }
    write_json(
        out / "train.json",
        {
            "format_version": 1,
            "command": sys.argv,
            "model": args.model,
            "architecture": cls.architecture,
            "parameters": result.parameters,
            "preset": preset.to_dict(),
            "blur": blur_meta,
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
            **data_options,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "distributed": distributed,
            "peak_rss_mib": peak_rss_mib(),
        },
    )
