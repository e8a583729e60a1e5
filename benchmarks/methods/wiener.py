"""``wiener``: padded Wiener–Hunt deconvolution, balance chosen on the validation split."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmarks.classical import wiener_padded
from benchmarks.methods._tuning import best_by_psnr
from benchmarks.methods.base import BlurLike, Method
from benchmarks.pairs import PairSet

BALANCES = [float(b) for b in np.logspace(-5, 0, 21)]
DEFAULT_BALANCE = 1e-3


class Wiener(Method):
    name = "wiener"
    description = "classical, reflect-padded, Laplacian regulariser (scikit-image's default)"
    sees_psf = True

    balance: float = DEFAULT_BALANCE
    scores: list[float] | None = None

    def _kernel(self, blur: BlurLike) -> torch.Tensor:
        kernel = getattr(blur, "kernel", None)
        if kernel is None:
            raise TypeError("wiener needs a blur operator with a .kernel (the PSF)")
        return kernel

    def fit(self, train: PairSet, val: PairSet, blur: BlurLike) -> None:
        y = val.blurred.to(self.ctx.device)
        outs = wiener_padded(y, self._kernel(blur), BALANCES)
        self.balance, self.scores = best_by_psnr(BALANCES, outs, val.sharp.to(self.ctx.device))

    def restore(self, y: torch.Tensor, blur: BlurLike) -> torch.Tensor:
        out = wiener_padded(y.to(self.ctx.device), self._kernel(blur), self.balance)
        return out.to("cpu", torch.float32)

    def info(self) -> dict[str, Any]:
        return {"balance": self.balance, "balance_grid": BALANCES, "val_psnr": self.scores}


METHOD = Wiener
