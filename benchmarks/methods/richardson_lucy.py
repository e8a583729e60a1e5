"""``richardson-lucy``: RL with the reflect-boundary operator, iterations chosen on validation."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from benchmarks.classical import richardson_lucy
from benchmarks.methods._tuning import best_index
from benchmarks.methods.base import BlurLike, Method
from benchmarks.metrics import psnr
from benchmarks.pairs import PairSet


class RichardsonLucy(Method):
    name = "richardson-lucy"
    description = "classical Richardson-Lucy, reflect boundary, iterations tuned on validation"
    sees_psf = True

    n_iter: int = 30
    scores: list[float] | None = None

    def max_iter(self) -> int:
        return int(self.ctx.options.get("max_iter", 20 if self.ctx.preset.tiny else 400))

    def fit(self, train: PairSet, val: PairSet, blur: BlurLike) -> None:
        sharp = val.sharp.to(self.ctx.device)
        scores: list[float] = []
        richardson_lucy(
            val.blurred.to(self.ctx.device),
            blur,
            self.max_iter(),
            callback=lambda k, x: scores.append(float(psnr(x, sharp).mean())),
        )
        self.scores = scores
        self.n_iter = 1 + best_index(scores)  # scores[k]: after k + 1 iterations
        if self.n_iter == len(scores) and not self.ctx.quiet:
            warnings.warn(
                f"richardson-lucy: best validation PSNR at the last searched "
                f"iteration ({self.n_iter}); more iterations might help",
                stacklevel=2,
            )

    def restore(self, y: torch.Tensor, blur: BlurLike) -> torch.Tensor:
        return richardson_lucy(y.to(self.ctx.device), blur, self.n_iter).to("cpu", torch.float32)

    def info(self) -> dict[str, Any]:
        return {
            "n_iter": self.n_iter,
            "max_iter_searched": self.max_iter(),
            "val_psnr_by_iter": self.scores,
        }


METHOD = RichardsonLucy
