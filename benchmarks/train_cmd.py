"""``deblur-bench train MODEL``: train a CNN on the train split, validate on the val split.

The training loop is :func:`convae.train`; this command only supplies the data pipeline,
checkpoint folder and resume handling (DESIGN §2: the training CLI needs the pipeline).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import convae
from benchmarks.blur import make_blur
from benchmarks.io_utils import prepare_out_dir, write_json
from benchmarks.methods import MethodContext, get_method, registry
from benchmarks.methods._cnn import CURVE_NAME, _CNNMethod
from benchmarks.pipeline import prepare_splits
from benchmarks.presets import PRESETS, get_preset
from benchmarks.runner import default_out, git_commit, peak_rss_mib, resolve_device, versions


def cnn_methods() -> list[str]:
    return [n for n, c in registry().items() if issubclass(c, _CNNMethod)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="CNN method to train (convae, convae-unet)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    p.add_argument("--data-dir", help="face folder (default: data/faces/ or the embedded set)")
    p.add_argument("--size", type=int, help="image side in px (overrides the preset)")
    p.add_argument("--gray", action="store_true", default=None)
    p.add_argument("--max-images", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sigma", type=float, default=3.0)
    p.add_argument("--kernel-size", type=int, default=25)
    p.add_argument("--psf")
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--epochs", type=int, help="total epochs (a resumed run continues to this)")
    p.add_argument("--max-minutes", type=float, help="wall-clock cap of this call")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--resume", help="last.pt of an interrupted run to continue")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    p.add_argument("--out", help="checkpoint folder (default results/<date-time>-train-MODEL/)")
    p.add_argument("--overwrite", action="store_true")


def main(args: argparse.Namespace) -> int:
    import torch

    cls = get_method(args.model)
    if not issubclass(cls, _CNNMethod):
        raise ValueError(f"`train` trains CNN methods ({', '.join(cnn_methods())}); "
                         f"{args.model!r} is not one (it is fitted inside `deblur-bench run`)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    preset = get_preset(args.preset).with_overrides(size=args.size, gray=args.gray,
                                                    max_images=args.max_images,
                                                    epochs=args.epochs,
                                                    max_minutes=args.max_minutes)
    if args.resume:
        resume = Path(args.resume)
        if not resume.is_file():
            raise FileNotFoundError(f"--resume checkpoint not found: {resume}")
        out = Path(args.out) if args.out else resume.parent
        out.mkdir(parents=True, exist_ok=True)   # resuming continues in place
    else:
        out = prepare_out_dir(args.out or default_out(f"train-{args.model}"), args.overwrite)
    blur = make_blur(kernel_size=args.kernel_size, sigma=args.sigma, psf=args.psf)
    blur_meta = {**blur.meta(), "noise": args.noise, "quantization": "8-bit"}
    splits = prepare_splits(preset, args.data_dir, seed=args.seed, blur=blur, noise=args.noise)
    if not args.quiet:
        print(f"data: {splits.source}; train {len(splits.train)} / val {len(splits.val)} images, "
              f"{preset.size}px", file=sys.stderr)
    options = {k: v for k, v in {"batch_size": args.batch_size, "lr": args.lr,
                                 "amp": args.amp or None}.items() if v is not None}
    method = cls(MethodContext(preset=preset, device=device, seed=args.seed, work_dir=out,
                               quiet=args.quiet, blur_meta=blur_meta, options=options))
    model = method.build_model(int(splits.train.blurred.shape[1]))
    t0 = time.perf_counter()
    result = convae.train(model, (splits.train.blurred, splits.train.sharp),
                          (splits.val.blurred, splits.val.sharp), method.train_config(),
                          checkpoint_dir=out, resume_from=args.resume, meta=blur_meta,
                          progress=not args.quiet)
    seconds = time.perf_counter() - t0
    if result.history:
        convae.plot_history(result.history, out / CURVE_NAME, title=f"{args.model} training")
    write_json(out / "train.json", {
        "format_version": 1, "command": sys.argv, "model": args.model,
        "architecture": cls.architecture, "parameters": result.parameters,
        "preset": preset.to_dict(), "blur": blur_meta, "config": result.config,
        "data": {"source": splits.source, **splits.meta}, "seconds": seconds,
        "epochs_completed": result.epochs_completed, "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
        "images_per_s": result.images_per_s, "stopped_reason": result.stopped_reason,
        "history": result.history, "versions": versions(), "git_commit": git_commit(),
        "device": str(device), "threads": torch.get_num_threads(),
        "peak_rss_mib": peak_rss_mib()})
    best = ("none" if result.best_val_loss is None
            else f"{result.best_val_loss:.5f} at epoch {result.best_epoch}")
    print(f"{args.model}: {result.epochs_completed} epochs ({result.stopped_reason}), best val "
          f"loss {best}, {result.images_per_s:.1f} images/s; checkpoints in {out} "
          f"(use --checkpoint {args.model}={out / 'best.pt'})")
    return 0
