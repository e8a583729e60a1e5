"""``deblur-bench sweep``: each method fitted (or loaded) once, scored over a grid of degradations.

A sweep reads straight through:

1. `prepare_sweep` — the configuration, checked before the run folder exists: preset, base
   degradation (the run's flags: what learned methods are fitted on), the grid of degradations
   (`expand_grid`), the method rows (``METHOD`` or ``METHOD@TAG`` with ``--checkpoint``), the
   numbers of tuning and test images;
2. the face splits, degraded once by the base degradation (`benchmarks.pipeline`);
3. `fit_once` — every learned method is fitted on the training/validation people (as ``run``
   fits it) or loaded from ``--checkpoint``, and saved into ``methods/<label>/``;
4. for each degradation of the grid: the validation and test faces degraded by it (seeded by
   the degradation, the same for every method), then each method's cell (`compute_cell`):
   a non-blind method re-tuned on ``--tune-images`` validation faces degraded by it, by the
   rule ``run`` uses for its one degradation; a blind one restores as fitted;
5. `benchmarks.sweep_outputs.write_sweep` — the long table, the summary, figures, ``run.json``.

Every finished cell is written to ``cells/<label>/<degradation>.json`` (atomically) as soon as
it is done, and ``sweep.json`` holds the configuration; ``--resume`` checks that the
configuration matches and computes only the cells that are missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from benchmarks.degradation import (
    Degradation,
    DegradationFamily,
    degradation_from_flags,
    degrade_pair,
    parse_family,
)
from benchmarks.errors import UserError
from benchmarks.figures import save_png
from benchmarks.io_utils import write_json
from benchmarks.methods import CNNMethod, Method, get_method, registry
from benchmarks.metrics import all_metrics
from benchmarks.pairs import PairSet
from benchmarks.pipeline import Splits, prepare_splits
from benchmarks.presets import preset_for
from benchmarks.run_dir import RunFolder, is_tool_made
from benchmarks.run_info import data_folder, default_out, resolve_device
from benchmarks.run_plan import parse_checkpoints
from benchmarks.runner import RESTORE_BATCH, check_checkpoint_files, check_finite
from benchmarks.sweep_outputs import write_sweep
from benchmarks.sweep_plan import (
    DEFAULT_TUNE_IMAGES,
    FORMAT_VERSION,
    FULL_GRID,
    FULL_NOISE,
    PRESET_GRIDS,
    PRESET_METHODS,
    PRESET_TEST_IMAGES,
    PRESET_TUNE_IMAGES,
    STATE,
    Fitted,
    SweepPlan,
    cell_path,
    cell_seed,
    expand_grid,
    file_sha256,
    parse_label,
)


def log(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def prepare_sweep(args: argparse.Namespace) -> SweepPlan:
    """Resolve and check the whole configuration, before the run folder exists."""
    preset = preset_for(args)
    device = resolve_device(args.device)
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be an integer >= 1, got {args.threads}")
    if args.resume and args.overwrite:
        raise UserError("--resume continues a sweep and --overwrite replaces it: give one")
    base = degradation_from_flags(args, jpeg_quality=preset.jpeg_quality)
    items, noise = PRESET_GRIDS.get(preset.name, (FULL_GRID, FULL_NOISE))
    grid = expand_grid(args.grid or items, args.grid_noise or noise, preset.jpeg_quality)
    labels = list(dict.fromkeys(args.methods or PRESET_METHODS.get(preset.name) or _all()))
    if "identity" not in labels:
        labels.insert(0, "identity")  # the blurred input: the gains are paired against it
    methods = {label: parse_label(label) for label in labels}
    checkpoints = parse_checkpoints(args.checkpoint)
    for label in checkpoints:
        if label not in methods:
            raise UserError(f"--checkpoint given for {label!r}, which is not among --methods")
    families = _families(args, methods, checkpoints, preset.jpeg_quality)
    for label, name in methods.items():
        cls = get_method(name)
        if "@" in label and label not in checkpoints and label not in families:
            raise UserError(
                f"--methods {label}: a tagged row is a trained model: give "
                f"--checkpoint {label}=PATH or --generalist {label}=FAMILY"
            )
        if cls.learns and not cls.checkpointable:
            raise UserError(f"{name} cannot be saved, so a sweep cannot fit it once and reuse it")
    check_checkpoint_files(checkpoints)
    test_images = (
        PRESET_TEST_IMAGES.get(preset.name) if args.test_images is None else args.test_images
    )
    test_images = test_images or None  # 0: every test image
    baseline = args.baseline or ("wiener" if "wiener" in labels else "identity")
    if baseline not in labels:
        raise UserError(
            f"--baseline {baseline!r} is not among the swept methods ({', '.join(labels)})"
        )
    options = {
        k: v
        for k in ("epochs", "max_minutes", "batch_size", "lr_schedule")
        if (v := getattr(args, k, None)) is not None
    }
    plan = SweepPlan(
        args,
        preset,
        device,
        base,
        grid,
        labels,
        methods,
        checkpoints,
        options,
        args.tune_images or PRESET_TUNE_IMAGES.get(preset.name, DEFAULT_TUNE_IMAGES),
        test_images,
        baseline,
        quiet=bool(args.quiet),
    )
    plan.checkpoint_sha256 = {label: file_sha256(p) for label, p in checkpoints.items()}
    plan.families = families
    for d in grid:  # images too small for a kernel fail now, not after the fits
        d.blur.check_image_size(preset.size, preset.size, what="a face")
    return plan


def _families(
    args: argparse.Namespace,
    methods: dict[str, str],
    checkpoints: dict[str, str],
    jpeg: int | None,
) -> dict[str, DegradationFamily]:
    """``--generalist LABEL=FAMILY`` (repeatable): rows trained on degradations drawn per image
    and epoch (noise from ``--generalist-noise``), like ``train --kernels``."""
    out: dict[str, DegradationFamily] = {}
    noise = args.generalist_noise or (0.0, 0.0)
    for item in args.generalist or []:
        label, sep, spec = item.partition("=")
        if not sep or not label or not spec:
            raise UserError(f"--generalist expects METHOD[@TAG]=FAMILY, got {item!r}")
        if label not in methods:
            raise UserError(f"--generalist given for {label!r}, which is not among --methods")
        if label in checkpoints:
            raise UserError(f"--generalist {label}: the row is loaded from --checkpoint; give one")
        cls = get_method(methods[label])
        if not cls.trainable_cnn or cls.sees_psf:
            raise UserError(f"--generalist {label}: only a blind CNN can train on a family")
        out[label] = DegradationFamily(parse_family(spec, flag="--generalist"), noise, jpeg)
    if args.generalist_noise is not None and not out:
        raise UserError("--generalist-noise applies to --generalist rows: there is none")
    return out


def _all() -> list[str]:
    return list(registry())


# --------------------------------------------------------------------------- the state
def check_state(folder: Path, plan: SweepPlan, resume: bool) -> dict[str, Any]:
    """``sweep.json``: written for a new sweep; with ``--resume``, the stored configuration must
    equal this one (and each method row's checkpoint), else nothing is reused."""
    path = folder / STATE
    state = {"config": plan.config(), "methods": {lb: plan.method_record(lb) for lb in plan.labels}}
    if resume and path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            old_config, old_methods = old["config"], dict(old["methods"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"--resume: cannot read {path}: {exc}") from None
        new_config = json.loads(json.dumps(state["config"], default=str))
        if old_config != new_config:
            diffs = sorted(
                k for k in {*old_config, *new_config} if old_config.get(k) != new_config.get(k)
            )
            raise UserError(
                f"--resume: the sweep in {plan.args.out} was made with other settings "
                f"(different: {', '.join(diffs)}); run without --resume into a new --out"
            )
        for label in plan.labels:
            rec = json.loads(json.dumps(state["methods"][label], default=str))
            if label in old_methods and old_methods[label] != rec:
                raise UserError(
                    f"--resume: the row {label} of the sweep in {plan.args.out} was made from "
                    f"another model ({old_methods[label].get('checkpoint')}); give it another "
                    f"label (--methods {plan.methods[label]}@NEW) or a new --out"
                )
        state["methods"] = {**old_methods, **state["methods"]}
    write_json(path, state)
    return state


def read_cell(folder: Path, plan: SweepPlan, label: str, degradation: Degradation) -> dict | None:
    """A finished cell's record, when it is there, whole, and of this configuration."""
    path = cell_path(folder, label, degradation)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(rec, dict)
        and rec.get("key") == plan.cell_key(label)
        and rec.get("degradation", {}).get("kernel_sha256") == degradation.kernel.digest()
        and rec.get("degradation", {}).get("noise") == degradation.noise
        and isinstance(rec.get("rows"), list)
        and path.with_suffix(".png").is_file()
    )
    return rec if ok else None


# --------------------------------------------------------------------------- fitting
def _model_file(folder: Path, label: str, cls: type[Method]) -> Path:
    return folder / "methods" / label / ("model.pt" if issubclass(cls, CNNMethod) else "model.npz")


def fit_once(folder: Path, plan: SweepPlan, splits: Splits, label: str) -> Fitted:
    """A learned row fitted on the training/validation people degraded by the base degradation
    (or loaded from its ``--checkpoint``), saved as ``methods/<label>/model.*``; on
    ``--resume`` the saved model is loaded again instead of fitted. Other rows need nothing."""
    cls = plan.cls(label)
    method = cls(plan.context(label, folder))
    if not cls.learns:
        return Fitted(label, method, None, {"fit_seconds": 0.0})
    done = folder / "methods" / label / "fitted.json"
    if label in plan.checkpoints:
        t0 = time.perf_counter()
        method.load(plan.checkpoints[label])
        rec = {"loaded_from": plan.checkpoints[label], "fit_seconds": time.perf_counter() - t0}
        return Fitted(label, method, Path(plan.checkpoints[label]), {**rec, "info": method.info()})
    path = _model_file(folder, label, cls)
    if done.is_file() and path.is_file():
        method.load(path)
        rec = json.loads(done.read_text(encoding="utf-8"))
        log(plan.quiet, f"[{label}] fitted before: {path}")
        return Fitted(label, method, path, rec)
    log(plan.quiet, f"[{label}] fitting on the training people ({plan.base.label}) ...")
    t0 = time.perf_counter()
    method.fit(splits.train, splits.val, plan.base.blur)
    seconds = time.perf_counter() - t0
    method.save(path)
    figures = [str(p.relative_to(folder)) for p in method.figures(folder / "methods" / label)]
    rec = {
        "fit_seconds": seconds,
        "file": str(path.relative_to(folder)),
        "figures": figures,
        "info": method.info(),
    }
    write_json(done, rec)
    return Fitted(label, method, path, rec)


def cell_method(plan: SweepPlan, folder: Path, fitted: Fitted) -> Method:
    """The instance that restores a cell: a blind row's fitted one; a non-blind learned row
    reloaded from its file (then re-tuned); a fresh one for the classical methods."""
    cls = plan.cls(fitted.label)
    if not cls.sees_psf:
        return fitted.method
    method = cls(plan.context(fitted.label, folder))
    if cls.learns and fitted.file is not None:
        method.load(fitted.file)
    return method


# --------------------------------------------------------------------------- cells
@dataclass
class CellInputs:
    """The validation (tuning) and test faces under one degradation."""

    degradation: Degradation
    tune: PairSet
    test: PairSet


def degrade_inputs(plan: SweepPlan, tune: PairSet, test: PairSet, d: Degradation) -> CellInputs:
    """``tune`` and ``test`` blurred by ``d`` (noise seeded by the degradation; the sharp images
    stay as loaded, JPEG copies already when the protocol has JPEG)."""

    def blurred(pairs: PairSet, part: str) -> PairSet:
        gen = torch.Generator().manual_seed(cell_seed(plan.args.seed, d, part))
        chunks = [
            degrade_pair(
                c, d.blur, noise=float(d.noise or 0.0), jpeg_quality=d.jpeg_quality, generator=gen
            )[0]
            for c in pairs.sharp.split(256)
        ]
        return PairSet(torch.cat(chunks), pairs.sharp, pairs.identities, pairs.names)

    return CellInputs(d, blurred(tune, "val"), blurred(test, "test"))


def compute_cell(
    plan: SweepPlan,
    folder: Path,
    fitted: Fitted,
    inputs: CellInputs,
    train: PairSet,
    example: int,
) -> dict[str, Any]:
    """One method under one degradation: re-tune (non-blind), restore the test faces, score;
    the record is written to ``cells/<label>/<degradation>.json`` with the example face's
    restoration beside it as a PNG, and returned."""
    label, d = fitted.label, inputs.degradation
    cls = plan.cls(label)
    method = cell_method(plan, folder, fitted)
    t0 = time.perf_counter()
    if cls.sees_psf:
        method.fit(train, inputs.tune, d.blur)
    tune_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    outs = [
        method.restore(yb, d.blur).to("cpu", torch.float32)
        for yb in inputs.test.blurred.split(RESTORE_BATCH)
    ]
    restore_seconds = time.perf_counter() - t0
    x_hat = torch.cat(outs)
    want = tuple(inputs.test.sharp.shape)
    if tuple(x_hat.shape) != want:
        raise RuntimeError(f"method {label} returned {tuple(x_hat.shape)}, expected {want}")
    check_finite(f"{label} under {d.label}", x_hat, inputs.test.names)  # before the clip
    x_hat = x_hat.clamp(0, 1)
    scores = all_metrics(x_hat, inputs.test.sharp)
    test = inputs.test
    rows = [
        {
            "image": test.names[i],
            "identity": test.identities[i],
            **{k: float(scores[k][i]) for k in ("psnr", "ssim", "mse")},
        }
        for i in range(len(test))
    ]
    path = cell_path(folder, label, d)
    save_png(path.with_suffix(".png"), x_hat[example])
    info = method.info() if cls.sees_psf else {}
    rec = {
        "format_version": FORMAT_VERSION,
        "label": label,
        "method": plan.methods[label],
        "degradation": d.to_json(),
        "key": plan.cell_key(label),
        "n_images": len(rows),
        "tune_seconds": tune_seconds,
        "restore_seconds": restore_seconds,
        "sec_per_image": restore_seconds / max(1, len(rows)),
        "example": {"index": example, "image": test.names[example]},
        "info": json.loads(json.dumps(info, default=str)),
        "rows": rows,
    }
    write_json(path, rec)  # last: a cell is done once its record is there
    return rec


def _subset(pairs: PairSet, n: int | None) -> PairSet:
    """``n`` pairs spread over ``pairs`` (``linspace``, as the tuning subsets are picked)."""
    if n is None or n >= len(pairs):
        return pairs
    idx = torch.linspace(0, len(pairs) - 1, n).round().long()
    return pairs.subset(idx)


# --------------------------------------------------------------------------- the command
def sweep_folder(plan: SweepPlan) -> RunFolder:
    """The run folder: new, continued (``--resume``) or replaced (``--overwrite``)."""
    args = plan.args
    out = Path(args.out or default_out(f"sweep-{plan.preset.name}"))
    args.out = str(out)
    target = out.expanduser().resolve()
    exists = target.is_dir() and any(target.iterdir())
    if args.resume and exists and not (target / STATE).is_file():
        raise UserError(f"--resume: {out} holds no sweep to continue ({STATE} is missing)")
    if (
        not args.resume
        and exists
        and (target / STATE).is_file()
        and is_tool_made(target)
        and not args.overwrite
    ):
        raise FileExistsError(
            f"output folder {out} already holds a sweep; pass --resume to continue it, "
            f"--overwrite to replace it, or choose another --out"
        )
    return RunFolder(
        out,
        kind="sweep",
        overwrite=args.overwrite,
        protect=[data_folder(args.data_dir)],
        staged=False,  # cells appear as they finish, so an interrupted sweep can be resumed
        continue_in=out if args.resume else None,
    )


def run_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Run the sweep the flags describe; returns what `write_sweep` returns."""
    plan = prepare_sweep(args)
    folder = sweep_folder(plan)
    threads = torch.get_num_threads()
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        with folder:
            return _sweep_into(folder, plan)
    finally:
        torch.set_num_threads(threads)


def _sweep_into(folder: RunFolder, plan: SweepPlan) -> dict[str, Any]:
    out, args = folder.path, plan.args
    check_state(out, plan, bool(args.resume))
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    splits = prepare_splits(plan.preset, args.data_dir, seed=args.seed, degradation=plan.base)
    data_seconds = time.perf_counter() - t0
    tune, test = _subset(splits.val, plan.tune_images), _subset(splits.test, plan.test_images)
    log(
        plan.quiet,
        f"data: {splits.source}; {plan.preset.size}px; fitting on {len(splits.train)} "
        f"training faces, re-tuning on {len(tune)} validation faces, scoring "
        f"{len(test)} test faces of {len(set(test.identities))} held-out people",
    )
    fitted = {label: fit_once(out, plan, splits, label) for label in plan.labels}
    cells = [(d, label) for d in plan.grid for label in plan.labels]
    done = {(d, lb): rec for d, lb in cells if (rec := read_cell(out, plan, lb, d)) is not None}
    log(
        plan.quiet,
        f"{len(cells)} cells: {len(done)} finished before, {len(cells) - len(done)} to compute",
    )
    example = len(test) // 2
    computed: list[str] = []
    t0 = time.perf_counter()
    bar = tqdm(total=len(cells), initial=len(done), desc="sweep", unit="cell", disable=plan.quiet)
    for d in plan.grid:
        todo = [lb for lb in plan.labels if (d, lb) not in done]
        if not todo:
            continue
        inputs = degrade_inputs(plan, tune, test, d)
        for label in todo:
            bar.set_postfix_str(f"{label} {d.label}")
            done[(d, label)] = compute_cell(plan, out, fitted[label], inputs, splits.train, example)
            computed.append(f"{label} {d.label}")
            bar.update(1)
    bar.close()
    cell_seconds = time.perf_counter() - t0
    return write_sweep(
        folder,
        plan,
        splits,
        tune,
        test,
        fitted,
        done,
        computed,
        {"data_seconds": data_seconds, "cells_seconds": cell_seconds},
    )
