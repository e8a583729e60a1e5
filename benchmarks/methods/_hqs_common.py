"""Shared plumbing of the two half-quadratic-splitting adapters (``epll``, ``dnmf-prior``).

Both learn a patch prior from the sharp training images (cached in the run's work folder by
`benchmarks.methods._fitted_models.load_or_fit`) and then choose the x-step weight on
(up to ``max_val_images``) validation images; the models themselves live in
`benchmarks.gmm_prior` and `dnmf.deblur.prior`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from benchmarks.methods import _fitted_models as common
from benchmarks.methods._tuning import best_index, mean_scores
from benchmarks.methods.base import BlurLike, Method, MethodContext
from benchmarks.pairs import PairSet


@dataclass
class Tuning:
    """What was chosen on validation (for ``run.json``)."""

    cache_file: str | None = None
    cache_hit: bool = False
    loaded_from: str | None = None
    noise_sigma: float | None = None
    weight_scores: list[dict[str, float]] = field(default_factory=list)
    select_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def val_subset(val: PairSet, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` validation pairs spread over the split (``linspace``), as the other adapters pick."""
    idx = torch.linspace(0, len(val) - 1, min(len(val), n)).round().long()
    return val.blurred[idx], val.sharp[idx]


def noise_sigma(val: PairSet, blur: BlurLike) -> float:
    """The input's noise level on the validation pairs: the standard deviation of
    ``y − A(sharp)`` (8-bit rounding alone gives ≈ 1/(255·√12) ≈ 0.0011)."""
    r = val.blurred.double() - blur.A(val.sharp.double())
    return float(r.std())


def fit_and_tune(
    ctx: MethodContext,
    name: str,
    model_cls: Any,
    settings: dict[str, Any],
    data: tuple[PairSet, PairSet, BlurLike],
    *,
    weight_per_noise: float,
    weight_factors: list[float],
    max_val_images: int,
    tuning: Tuning,
    model: Any = None,
) -> Any:
    """Fit (or reuse the cached) prior on the sharp training images, then set it to the
    validation noise level ``σ̂`` (`noise_sigma`): the last stage denoises at
    ``max(sigma_min, σ̂)`` and ``weight = f · weight_per_noise · σ̂²`` with ``f`` the best of
    ``weight_factors`` by mean PSNR on ``max_val_images`` validation images (recorded in
    ``tuning``; μ_k = weight/σ_k² is then σ̂²/σ_k² up to that constant, as in plug-and-play
    HQS). A ``model`` given (loaded from a checkpoint) is only tuned. Returns the model."""
    train, val, blur = data
    path = None
    if model is None:
        model, path, hit = common.load_or_fit(
            ctx, name, model_cls, settings, common.data_key(train.sharp),
            lambda m: m.fit(train.sharp),
        )  # fmt: skip
        tuning.cache_file, tuning.cache_hit = (str(path) if path else None), hit
    if val is None or not len(val):
        return model
    t0 = time.perf_counter()
    tuning.noise_sigma = noise_sigma(val, blur)
    yv, sv = val_subset(val, max_val_images)
    tuning.weight_scores = set_noise_level(
        model, yv, sv, blur, tuning.noise_sigma, float(settings.get("sigma_min", model.sigma_min)),
        weight_per_noise=weight_per_noise, weight_factors=weight_factors,
    )  # fmt: skip
    tuning.select_seconds = time.perf_counter() - t0
    if path is not None:  # the cached file becomes a complete checkpoint (tuned settings)
        model.save(path)
    return model


def set_noise_level(
    model: Any,
    yv: torch.Tensor,
    sv: torch.Tensor,
    blur: BlurLike,
    sigma: float,
    sigma_min: float,
    *,
    weight_per_noise: float,
    weight_factors: list[float],
) -> list[dict[str, float]]:
    """Set ``model.sigma_min = max(sigma_min, σ̂)`` and the best ``weight`` of
    ``f · weight_per_noise · σ̂²`` over ``weight_factors`` on ``(yv, sv)``; returns the scores
    (with the seconds per image of each restore)."""
    model.sigma_min = min(max(sigma_min, sigma), model.sigma_max)
    scores = []
    for f in weight_factors:
        model.weight = f * weight_per_noise * sigma**2
        t0 = time.perf_counter()
        x = model.restore(yv, blur).x
        sec = (time.perf_counter() - t0) / len(yv)
        p, s = mean_scores(x, sv)
        scores.append({"weight": model.weight, "val_psnr": p, "val_ssim": s, "s_per_image": sec})
    model.weight = scores[best_index([d["val_psnr"] for d in scores])]["weight"]
    return scores


def load_model(model_cls: Any, path: str | Path, ctx: MethodContext, what: str) -> Any:
    """``model_cls.load`` with the project's clear error for a file that is not a checkpoint."""
    return common.load_model_file(model_cls, path, torch.device(ctx.device), what)


class HQSPriorMethod(Method):
    """A patch prior learned from sharp patches, restored by half-quadratic splitting with the
    known blur: what ``epll`` and ``dnmf-prior`` share (fit and tune, restore, save, load,
    info). A subclass names its model class, settings per preset and the ``info`` key of the
    prior's fit time."""

    sees_psf = True
    learns = True  # from sharp images only
    checkpointable = True

    model_class: ClassVar[Any]
    #: the key of ``info()`` that holds the prior's fit seconds
    fit_seconds_key: ClassVar[str]
    settings: ClassVar[dict[str, Any]]
    tiny_settings: ClassVar[dict[str, Any]]
    small_settings: ClassVar[dict[str, Any]]
    #: x-step weight per unit noise variance (``weight = f · this · σ̂²``, σ̂ measured on the
    #: validation pairs) and the factors ``f`` tried on validation
    weight_per_noise: ClassVar[float] = 0.16
    weight_factors: ClassVar[list[float]] = [0.25, 0.5, 1.0, 2.0]
    max_val_images: ClassVar[int] = 10

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.model: Any = None
        self.tuning = Tuning()

    def model_settings(self) -> dict[str, Any]:
        """The model's settings for the run's preset."""
        return common.preset_settings(
            self.ctx, self.name, self.settings, self.tiny_settings, self.small_settings
        )

    def fit(self, train: PairSet, val: PairSet, blur: BlurLike) -> None:
        loaded = self.model if self.tuning.loaded_from is not None else None
        self.model = fit_and_tune(
            self.ctx, self.name, self.model_class, self.model_settings(), (train, val, blur),
            weight_per_noise=self.weight_per_noise, weight_factors=self.weight_factors,
            max_val_images=self.max_val_images, tuning=self.tuning, model=loaded,
        )  # fmt: skip

    @torch.no_grad()
    def restore(self, y: torch.Tensor, blur: BlurLike) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call fit() or load() first")
        y = y.to(torch.device(self.ctx.device), torch.float32)
        return self.model.restore(y, blur).x.clamp(0, 1).to("cpu", torch.float32)

    def save(self, path: str | Path) -> None:
        if self.model is None:
            raise RuntimeError(f"{self.name}: nothing to save, call fit() first")
        self.model.save(path)

    def load(self, path: str | Path) -> None:
        self.model = load_model(self.model_class, path, self.ctx, self.name)
        self.tuning.loaded_from = str(path)

    def info(self) -> dict[str, Any]:
        if self.model is None:
            return {}
        return {
            "params": self.model.get_params(),
            "n_parameters": self.model.n_parameters(),
            self.fit_seconds_key: self.model.fit_seconds_,
            **self.tuning.as_dict(),
        }
