"""``deblur-bench run``: every method on the same held-out people, scored and written out.

A run reads straight through, one named step each:

1. `prepare` — the configuration: preset, device, methods, degradation, every check;
2. `load_data` — the face splits, degraded once (`benchmarks.pipeline`);
3. `fit_and_restore` — for each method, ``fit`` (or ``load``) then ``restore`` of the
   test images in batches; what a method needs beyond the pairs (extra CNN training pairs,
   say) it prepares itself from ``ctx.options``;
4. `score` — per-image metrics (`benchmarks.metrics`);
5. `benchmarks.run_outputs.write_run` — the tables, figures and ``run.json``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from benchmarks.degradation import degradation_from_flags
from benchmarks.errors import UserError
from benchmarks.methods import check_options, get_method, registry
from benchmarks.metrics import all_metrics
from benchmarks.pairs import PairSet
from benchmarks.pipeline import Splits, prepare_splits
from benchmarks.run_dir import RunFolder
from benchmarks.run_info import data_folder, default_out, resolve_device
from benchmarks.run_outputs import Examples, save_restorations, write_run
from benchmarks.run_plan import MethodRun, RunConfig, RunPlan  # (benchmarks.runner.RunConfig too)

RESTORE_BATCH = 64


def check_checkpoint_files(checkpoints: dict[str, str]) -> None:
    """Every ``--checkpoint METHOD=PATH`` names an existing file (checked before any work)."""
    for name, path in checkpoints.items():
        if not Path(path).is_file():
            what = "is a folder, not a file" if Path(path).is_dir() else "does not exist"
            raise FileNotFoundError(f"--checkpoint {name}={path}: {path} {what}")


def log(cfg: RunConfig, msg: str) -> None:
    if not cfg.quiet:
        print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- 1. configuration
def prepare(cfg: RunConfig) -> RunPlan:
    """Resolve and check the whole configuration, before the run folder exists."""
    preset = cfg.resolved_preset()
    device = resolve_device(cfg.device)
    names = cfg.methods or list(registry())
    for n in names:
        get_method(n)  # unknown names fail before any work is done
    for n in cfg.checkpoints:
        if n not in names:
            raise ValueError(f"--checkpoint given for {n!r}, which is not among --methods")
    if cfg.threads is not None and cfg.threads < 1:
        raise UserError(f"--threads must be an integer >= 1, got {cfg.threads}")
    degradation = degradation_from_flags(cfg, jpeg_quality=preset.jpeg_quality)
    options = cfg.method_options()
    check_options(_checked_here(options, names, cfg.checkpoints), degradation.blur)
    check_checkpoint_files(cfg.checkpoints)
    return RunPlan(cfg, preset, device, names, degradation, options)


def _checked_here(options: dict[str, Any], names: list[str], checkpoints: dict[str, str]) -> dict:
    """The options to check against the run's kernel. ``--tta`` is sound when the CNN's
    *training* kernel is unchanged by flips: the run's own kernel for a CNN trained in the run
    (or when no CNN row is loaded), a loaded checkpoint's when it is loaded (`CNNMethod.load`)."""
    cnn = [n for n in names if get_method(n).trainable_cnn]
    if not cnn or any(n not in checkpoints for n in cnn) or not options.get("tta"):
        return options
    return {k: v for k, v in options.items() if k != "tta"}


# --------------------------------------------------------------------------- 2. data
def load_data(plan: RunPlan) -> tuple[Splits, float]:
    """The identity-disjoint splits, degraded once; returns them and the seconds it took."""
    cfg, preset = plan.cfg, plan.preset
    t0 = time.perf_counter()
    splits = prepare_splits(preset, cfg.data_dir, seed=cfg.seed, degradation=plan.degradation)
    seconds = time.perf_counter() - t0
    m = splits.meta
    log(
        cfg,
        f"data: {splits.source} — {m['n_images']} images of {m['n_identities']} identities, "
        f"{preset.size}px {'gray' if preset.gray else 'RGB'}; train/val/test images "
        f"{m['n_train']}/{m['n_val']}/{m['n_test']}",
    )
    if cfg.data_dir is None:
        print(
            f"No --data-dir given: using the {splits.source} (see data/README.md for its "
            f"terms and for using your own face folder).",
            flush=True,
        )
    return splits, seconds


# --------------------------------------------------------------------------- 3. methods
def fit_and_restore(
    name: str, plan: RunPlan, splits: Splits, work_dir: Path
) -> tuple[MethodRun, torch.Tensor]:
    """``fit`` on the training/validation pairs (or ``load`` its checkpoint), then ``restore``
    every test image; returns the run's record and the restorations (checked to be finite by
    `check_finite`, then clipped to [0, 1])."""
    cfg, test = plan.cfg, splits.test
    cls = get_method(name)
    method = cls(plan.context(work_dir))
    t0 = time.perf_counter()
    if name in cfg.checkpoints:
        method.load(cfg.checkpoints[name])
        log(cfg, f"[{name}] loaded {cfg.checkpoints[name]}")
    else:
        log(cfg, f"[{name}] fitting ...")
        method.fit(splits.train, splits.val, plan.blur)
    fit_seconds = time.perf_counter() - t0
    outputs = []
    t0 = time.perf_counter()
    batches = test.blurred.split(RESTORE_BATCH)
    for yb in tqdm(batches, desc=f"restore {name}", disable=cfg.quiet, leave=False):
        outputs.append(method.restore(yb, plan.blur).to("cpu", torch.float32))
    run = MethodRun(name, len(test), fit_seconds, time.perf_counter() - t0)
    x_hat = torch.cat(outputs)
    if x_hat.shape != test.sharp.shape:
        raise RuntimeError(
            f"method {name} returned {tuple(x_hat.shape)}, expected {tuple(test.sharp.shape)}"
        )
    check_finite(name, x_hat, test.names)
    x_hat = x_hat.clamp(0, 1)
    run.info = {
        "fit_seconds": run.fit_seconds,
        "restore_seconds": run.restore_seconds,
        "sec_per_image": run.sec_per_image,
        "sees_psf": cls.sees_psf,
        "learns": cls.learns,
        **method.info(),
    }
    run.figures = method.figures(work_dir)
    return run, x_hat


def check_finite(name: str, x_hat: torch.Tensor, names: list[str]) -> None:
    """Refuse restorations holding NaN or infinity, naming the method and the first such image.

    Checked before the clip to [0, 1], which would turn infinity into a white pixel and keep
    NaN, whose PSNR then spoils every mean of the tables. The run stops instead, as on any
    error: the staging folder goes, a run it would replace is kept."""
    bad = ~torch.isfinite(x_hat.flatten(1))
    per_image = bad.sum(dim=1)
    hit = per_image.nonzero().flatten().tolist()
    if not hit:
        return
    i = hit[0]
    values = x_hat[i][bad[i].reshape(x_hat[i].shape)]
    kinds = " and ".join(
        k for k, has in (("NaN", values.isnan().any()), ("infinity", values.isinf().any())) if has
    )
    more = f", and {len(hit) - 1} more of the {len(names)} test images" if len(hit) > 1 else ""
    raise UserError(
        f"method {name} returned {kinds} for test image {names[i]!r} "
        f"({int(per_image[i])} of {x_hat[i].numel()} values){more}; a restoration must be "
        "finite, so the run stops before scoring it"
    )


# --------------------------------------------------------------------------- 4. metrics
def score(run: MethodRun, x_hat: torch.Tensor, test: PairSet) -> list[dict[str, Any]]:
    """One row per test image: MSE, PSNR and SSIM of the restoration, seconds per image."""
    scores = all_metrics(x_hat, test.sharp)
    return [
        {
            "method": run.name,
            "image": test.names[i],
            "identity": test.identities[i],
            "mse": float(scores["mse"][i]),
            "psnr": float(scores["psnr"][i]),
            "ssim": float(scores["ssim"][i]),
            "seconds": run.sec_per_image,
        }
        for i in range(len(test))
    ]


# --------------------------------------------------------------------------- the run
def run_benchmark(cfg: RunConfig) -> dict[str, Any]:
    """Run every requested method, write the run folder, return the run record."""
    plan = prepare(cfg)
    folder = RunFolder(
        cfg.out or default_out(plan.preset.name),
        kind="run",
        overwrite=cfg.overwrite,
        protect=[data_folder(cfg.data_dir)],
    )
    threads = torch.get_num_threads()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        with folder:  # locked; a replaced run is swapped in only by folder.commit() at the end
            return _run_into(folder, plan)
    finally:
        torch.set_num_threads(threads)  # a caller in the same process keeps its own count


def _run_into(folder: RunFolder, plan: RunPlan) -> dict[str, Any]:
    """Data, then each method fitted, restoring and scored, then the run folder's files."""
    cfg, out = plan.cfg, folder.path
    torch.manual_seed(cfg.seed)
    splits, data_seconds = load_data(plan)
    test = splits.test
    examples = Examples(test)
    runs: list[MethodRun] = []
    rows: list[dict[str, Any]] = []
    for name in plan.names:
        run, x_hat = fit_and_restore(name, plan, splits, out / "methods" / name)
        runs.append(run)
        rows += score(run, x_hat, test)
        examples.add(name, x_hat)
        if cfg.save_images:
            save_restorations(out / "images" / name, x_hat, test.names)
        psnr, ssim = (sum(r[k] for r in rows[-len(test) :]) for k in ("psnr", "ssim"))
        log(
            cfg,
            f"[{name}] PSNR {psnr / len(test):.2f} dB, SSIM {ssim / len(test):.4f} "
            f"(fit {run.fit_seconds:.1f}s, {run.sec_per_image * 1000:.1f} ms/image)",
        )
    return write_run(folder, plan, splits, runs, rows, examples, data_seconds)
