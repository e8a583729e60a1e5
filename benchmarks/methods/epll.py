"""``epll``: Gaussian-mixture patch prior + half-quadratic splitting (Zoran & Weiss 2011).

The mixture is learned from the **sharp** training images only (`benchmarks.gmm_prior.EPLL`,
cached in the run folder like the Deep NMF dictionaries); the x-step weight is chosen on the
validation images. It is the classical patch-prior anchor next to ``dnmf-prior``, which runs
the same splitting loop with a Deep NMF prior.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from benchmarks.gmm_prior import EPLL as EPLLModel
from benchmarks.methods import _fitted_models as common
from benchmarks.methods import _hqs_common as hqs
from benchmarks.methods.base import BlurLike, Method, MethodContext
from benchmarks.pairs import PairSet


class EPLL(Method):
    name = "epll"
    description = (
        "non-blind: Gaussian-mixture prior of sharp mean-removed patches (EPLL), "
        "annealed half-quadratic splitting with the known blur"
    )
    sees_psf = True
    learns = True  # from sharp images only
    checkpointable = True

    settings: ClassVar[dict[str, Any]] = dict(
        size=8,
        n_components=50,
        n_patches=40000,
        colour="opponent",
        max_iter=60,
        stride=2,
        sigma_max=0.1,
        sigma_min=0.005,
        n_stages=8,
        weight=1e-7,
    )
    tiny_settings: ClassVar[dict[str, Any]] = dict(
        size=4, n_components=4, n_patches=2000, max_iter=20, n_stages=3
    )
    #: the fast preset (<= 64 px): as good on validation there, and the first run stays < 5 min
    small_settings: ClassVar[dict[str, Any]] = dict(n_patches=10000, max_iter=30)
    #: x-step weight per unit noise variance (``weight = f · this · σ̂²``, σ̂ measured on the
    #: validation pairs) and the factors ``f`` tried on validation
    weight_per_noise: ClassVar[float] = 0.16
    weight_factors: ClassVar[list[float]] = [0.25, 0.5, 1.0, 2.0]
    max_val_images: ClassVar[int] = 10

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.model: EPLLModel | None = None
        self.tuning = hqs.Tuning()

    def fit(self, train: PairSet, val: PairSet, blur: BlurLike) -> None:
        loaded = self.model if self.tuning.loaded_from is not None else None
        settings = common.preset_settings(
            self.ctx, self.name, self.settings, self.tiny_settings, self.small_settings
        )
        self.model = hqs.fit_and_tune(
            self.ctx, self.name, EPLLModel, settings, (train, val, blur),
            weight_per_noise=self.weight_per_noise, weight_factors=self.weight_factors,
            max_val_images=self.max_val_images, tuning=self.tuning, model=loaded,
        )  # fmt: skip

    @torch.no_grad()
    def restore(self, y: torch.Tensor, blur: BlurLike) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call fit() or load() first")
        return self.model.restore(y, blur).x.clamp(0, 1).to("cpu", torch.float32)

    def save(self, path: str | Path) -> None:
        if self.model is None:
            raise RuntimeError(f"{self.name}: nothing to save, call fit() first")
        self.model.save(path)

    def load(self, path: str | Path) -> None:
        self.model = hqs.load_model(EPLLModel, path, self.ctx, self.name)
        self.tuning.loaded_from = str(path)

    def info(self) -> dict[str, Any]:
        if self.model is None:
            return {}
        return {
            "params": self.model.get_params(),
            "n_parameters": self.model.n_parameters(),
            "mixture_fit_seconds": self.model.fit_seconds_,
            **self.tuning.as_dict(),
        }


METHOD = EPLL
