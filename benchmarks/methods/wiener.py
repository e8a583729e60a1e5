"""``wiener``: padded Wiener–Hunt deconvolution, balance chosen on the validation split."""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.classical import wiener_padded
from benchmarks.methods._tuning import WIENER_BALANCES, best_wiener_balance
from benchmarks.methods.base import BlurLike, Method
from benchmarks.pairs import PairSet

DEFAULT_BALANCE = 1e-3


class Wiener(Method):
    name = "wiener"
    description = (
        "classical, reflect-padded, Laplacian regulariser (scikit-image's default); "
        "solved on the blur operator itself for a kernel that is not symmetric"
    )
    sees_psf = True

    balance: float = DEFAULT_BALANCE
    scores: list[float] | None = None

    def _kernel(self, blur: BlurLike) -> torch.Tensor:
        kernel = getattr(blur, "kernel", None)
        if kernel is None:
            raise TypeError("wiener needs a blur operator with a .kernel (the PSF)")
        return kernel

    def fit(self, train: PairSet, val: PairSet, blur: BlurLike) -> None:
        dev = self.ctx.device
        y, sharp = val.blurred.to(dev), val.sharp.to(dev)
        self.balance, self.scores = best_wiener_balance(y, self._kernel(blur), sharp)

    def restore(self, y: torch.Tensor, blur: BlurLike) -> torch.Tensor:
        out = wiener_padded(y.to(self.ctx.device), self._kernel(blur), self.balance)
        return out.to("cpu", torch.float32)

    def info(self) -> dict[str, Any]:
        return {"balance": self.balance, "balance_grid": WIENER_BALANCES, "val_psnr": self.scores}


METHOD = Wiener
