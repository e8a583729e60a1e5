"""``nmf-coupled``: one-layer coupled-dictionary NMF, blind (the ablation of ``dnmf-coupled``).

The model is `dnmf.deblur.coupled.CoupledDeblur`; its settings are the ones picked on
the validation people by ``experiments/deblur_ablation.py`` (see
``docs/results/deblur-dnmf.md``); the number of coding iterations is chosen on ``val`` at fit time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import torch

from benchmarks.methods import _fitted_models as common
from benchmarks.methods._tuning import pick
from benchmarks.methods.base import BlurLike, Method, MethodContext
from benchmarks.pairs import PairSet
from dnmf.deblur.coupled import CoupledDeblur


class NMFCoupled(Method):
    name = "nmf-coupled"
    description = (
        "blind coupled patch dictionary, 1-layer NMF: contrast-normalised blurred "
        "context -> nonnegative split of the residual, output block refit on test-time "
        "codes, HALS coding"
    )
    learns = True
    checkpointable = True

    #: model settings for full-size presets (picked on validation, see the module docstring)
    settings: ClassVar[dict[str, Any]] = dict(
        size=6,
        context=3,
        stride=3,
        ranks=(256,),
        target="residual",
        normalise="contrast",
        refit=True,
        n_patches=16000,
        fit_iter=60,
        coder="hals",
        code_iter=10,
    )
    tiny_settings: ClassVar[dict[str, Any]] = dict(
        size=4, context=2, stride=2, ranks=(16,), n_patches=2000, fit_iter=15, code_iter=10
    )
    #: a lighter fit budget for small images (the fast preset's default 64 px run must stay
    #: within a few minutes for all methods together); 128 px and up use ``settings``
    small_settings: ClassVar[dict[str, Any]] = dict(n_patches=5000, fit_iter=25, ranks=(128,))
    #: HALS sweeps for the codes of the blurred patches, chosen on ``val``
    code_iter_grid: ClassVar[list[int]] = [5, 10, 20]
    tiny_code_iter_grid: ClassVar[list[int]] = [5, 10]

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.model: CoupledDeblur | None = None
        self.cache_file: str | None = None
        self.cache_hit = False
        self.val_scores: list[dict[str, Any]] | None = None
        self.select_seconds: float | None = None
        self.loaded_from: str | None = None

    def model_settings(self) -> dict[str, Any]:
        return common.preset_settings(
            self.ctx, self.name, self.settings, self.tiny_settings, self.small_settings
        )

    def fit(self, train: PairSet, val: PairSet, blur: BlurLike) -> None:
        if self.model is not None and self.loaded_from is not None:
            return
        self.model, path, self.cache_hit = common.load_or_fit(
            self.ctx,
            self.name,
            CoupledDeblur,
            self.model_settings(),
            common.data_key(train.blurred, train.sharp),
            lambda model: model.fit(train.blurred, train.sharp),
        )
        self.cache_file = str(path) if path is not None else None
        if val is not None and len(val):
            t0 = time.perf_counter()
            grid = (
                self.tiny_code_iter_grid
                if self.ctx.preset.tiny or self.ctx.preset.size <= 64
                else self.code_iter_grid
            )
            best, self.val_scores = pick(
                grid, lambda n: self.model.restore(val.blurred, code_iter=n), val.sharp
            )
            self.model.code_iter = int(best)
            self.select_seconds = time.perf_counter() - t0

    @torch.no_grad()
    def restore(self, y: torch.Tensor, blur: BlurLike) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call fit() or load() first")
        return self.model.restore(y).to("cpu", torch.float32)

    def save(self, path: str | Path) -> None:
        if self.model is None:
            raise RuntimeError(f"{self.name}: nothing to save, call fit() first")
        self.model.save(path)

    def load(self, path: str | Path) -> None:
        self.model = common.load_model_file(
            CoupledDeblur, path, torch.device(self.ctx.device), self.name
        )
        self.loaded_from = str(path)

    def info(self) -> dict[str, Any]:
        if self.model is None:
            return {}
        return {
            "params": self.model.get_params(),
            "n_parameters": self.model.n_parameters(),
            "dictionary_fit_seconds": self.model.fit_seconds_,
            "cache_file": self.cache_file,
            "cache_hit": self.cache_hit,
            "code_iter_val": self.val_scores,
            "select_seconds": self.select_seconds,
            "loaded_from": self.loaded_from,
        }

    def figures(self, out_dir: Path) -> list[Path]:
        if self.model is None:
            return []
        out: list[Path] = []
        m = self.model
        title = f"{self.name}: ranks {list(m.ranks)} ({self.ctx.preset.name} preset)"
        p = common.plot_losses(
            Path(out_dir) / common.LOSS_FIG, title, m.loss_history_, m.pretrain_histories_
        )
        if p is not None:
            out.append(p)
        c = m.channels_ or 3
        side_b = m.size + 2 * m.context
        W1 = m.Ws_[0]
        mb = m.W_blur_.shape[0]
        panels = [
            (
                f"W1 blurred block ({'positive part of ' if m.normalise == 'contrast' else ''}"
                f"{side_b}px context)",
                common.tile_atoms(W1[:mb], c, side_b),
            )
        ]
        Wo = W1[mb:]
        if m.target == "residual":
            half = Wo.shape[0] // 2
            panels.append(
                (
                    "W1 output block: residual⁺ − residual⁻",
                    common.tile_atoms(Wo[:half] - Wo[half:], c, m.size),
                )
            )
        else:
            panels.append(("W1 output block: sharp patch", common.tile_atoms(Wo, c, m.size)))
        out.append(
            common.plot_atoms(
                Path(out_dir) / common.ATOMS_FIG,
                panels,
                f"{self.name}: first-layer atoms (first 64)",
            )
        )
        return out


METHOD = NMFCoupled
