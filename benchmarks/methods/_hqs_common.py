"""Shared plumbing of the two half-quadratic-splitting adapters (``epll``, ``dnmf-prior``).

Both learn a patch prior from the sharp training images (cached in the run's work folder by
:func:`benchmarks.methods._dnmf_common.load_or_fit`) and then choose the x-step weight on
(up to ``max_val_images``) validation images; the models themselves live in
:mod:`benchmarks.epll` and :mod:`dnmf.deblur.prior`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.methods import _dnmf_common as common
from benchmarks.methods.base import BlurLike, MethodContext
from benchmarks.pairs import PairSet


@dataclass
class Tuning:
    """What was chosen on validation (for ``run.json``)."""

    cache_file: str | None = None
    cache_hit: bool = False
    loaded_from: str | None = None
    weight_scores: list[dict[str, float]] = field(default_factory=list)
    select_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def val_subset(val: PairSet, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` validation pairs spread over the split (``linspace``), as the other adapters pick."""
    idx = torch.linspace(0, len(val) - 1, min(len(val), n)).round().long()
    return val.blurred[idx], val.sharp[idx]


def fit_and_tune(
    ctx: MethodContext,
    name: str,
    model_cls: Any,
    settings: dict[str, Any],
    data: tuple[PairSet, PairSet, BlurLike],
    *,
    weight_factors: list[float],
    max_val_images: int,
    tuning: Tuning,
) -> Any:
    """Fit (or reuse the cached) prior on the sharp training images, then pick ``weight``
    among ``weight_factors`` × the setting's weight by mean PSNR on ``max_val_images``
    validation images (recorded in ``tuning``). Returns the model."""
    train, val, blur = data
    model, path, hit = common.load_or_fit(
        ctx, name, model_cls, settings, common.data_key(train.sharp), lambda m: m.fit(train.sharp)
    )
    tuning.cache_file, tuning.cache_hit = (str(path) if path else None), hit
    if val is None or not len(val):
        return model
    t0 = time.perf_counter()
    yv, sv = val_subset(val, max_val_images)
    base = float(model.weight)
    scores = []
    for f in weight_factors:
        model.weight = base * f
        p, s = common.mean_scores(model.restore(yv, blur).x, sv)
        scores.append({"weight": model.weight, "val_psnr": p, "val_ssim": s})
    model.weight = max(scores, key=lambda d: d["val_psnr"])["weight"]
    tuning.weight_scores = scores
    tuning.select_seconds = time.perf_counter() - t0
    return model


def load_model(model_cls: Any, path: str | Path, ctx: MethodContext, what: str) -> Any:
    """``model_cls.load`` with the project's clear error for a file that is not a checkpoint."""
    loader = getattr(common, "load_model_file", None)
    dev = torch.device(ctx.device)
    if loader is not None:
        return loader(model_cls, path, dev, what)
    return model_cls.load(path, device=dev)
