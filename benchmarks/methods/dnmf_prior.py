"""``dnmf-prior``: non-blind Deep NMF patch prior + multiplicative updates through the known blur.

The dictionary ``W1…Wk`` is learned from the **sharp** training images only
(:class:`dnmf.deblur.prior.DeepNMFPrior`). Restoration solves
``min_{H≥0} ½‖y − A(assemble(W H))‖² + l1·ΣH`` with safeguarded accelerated multiplicative
updates, started from the codes of the padded-Wiener estimate (its balance chosen on ``val``,
as the ``wiener`` row does). The number of iterations and ``l1`` are chosen on ``val``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from benchmarks.classical import wiener_padded
from benchmarks.methods import _dnmf_common as common
from benchmarks.methods.base import BlurLike, Method, MethodContext
from benchmarks.pairs import PairSet
from dnmf.deblur.prior import DeepNMFPrior

BALANCES = [float(b) for b in np.logspace(-5, 0, 21)]


class DNMFPrior(Method):
    name = "dnmf-prior"
    description = (
        "non-blind: Deep NMF dictionary of sharp patches, accelerated multiplicative "
        "updates on the codes through the known blur, started from Wiener's codes"
    )
    sees_psf = True
    learns = True  # from sharp images only
    checkpointable = True

    settings: ClassVar[dict[str, Any]] = dict(
        size=6,
        stride=2,
        ranks=(128, 96),
        n_patches=12000,
        fit_iter=50,
        normalise=True,
        dc_atoms=True,
        init="x0",
        coder="hals",
        code_iter=10,
        accelerate=True,
    )
    tiny_settings: ClassVar[dict[str, Any]] = dict(
        size=4, stride=2, ranks=(16, 8), n_patches=2000, fit_iter=15, code_iter=5
    )
    #: a lighter budget for small images (the fast preset's default 64 px run must stay
    #: within a few minutes for all methods together); 128 px and up use ``settings``
    small_settings: ClassVar[dict[str, Any]] = dict(n_patches=6000, fit_iter=30)
    small_start_factors: ClassVar[list[float]] = [0.56]
    #: MU iterations through the blur (at least a few: the restoration is MU, not the start)
    iter_grid: ClassVar[list[int]] = [5, 10, 20]
    tiny_iter_grid: ClassVar[list[int]] = [5, 10]
    #: Wiener balances tried for the START (relative to the balance best for Wiener itself):
    #: the NMF coding removes some of a sharper Wiener estimate's noise
    start_factors: ClassVar[list[float]] = [0.3, 0.56, 1.0]
    l1_grid: ClassVar[list[float]] = [0.0]
    max_val_images: ClassVar[int] = 20

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.model: DeepNMFPrior | None = None
        self.balance: float | None = None  # best balance for Wiener itself (on val)
        self.start_balance: float | None = None  # balance of the Wiener start (on val)
        self.cache_file: str | None = None
        self.cache_hit = False
        self.val_scores: list[dict[str, Any]] | None = None
        self.balance_scores: list[float] | None = None
        self.select_seconds: float | None = None
        self.loaded_from: str | None = None

    def model_settings(self) -> dict[str, Any]:
        return common.preset_settings(
            self.ctx, self.name, self.settings, self.tiny_settings, self.small_settings
        )

    @staticmethod
    def _kernel(blur: BlurLike) -> torch.Tensor | None:
        return getattr(blur, "kernel", None)

    def _x0(self, y: torch.Tensor, blur: BlurLike, balance: float | None) -> torch.Tensor | None:
        k = self._kernel(blur)
        if k is None or balance is None:
            return None  # no PSF array: start from the codes of y itself
        return wiener_padded(y, k, balance).clamp(0, 1)

    def fit(self, train: PairSet, val: PairSet, blur: BlurLike) -> None:
        dev = torch.device(self.ctx.device)
        if self.model is None or self.loaded_from is None:
            self.model, path, self.cache_hit = common.load_or_fit(
                self.ctx,
                self.name,
                DeepNMFPrior,
                self.model_settings(),
                common.data_key(train.sharp),
                lambda model: model.fit(train.sharp),
            )
            self.cache_file = str(path) if path is not None else None
        if val is None or not len(val):
            return
        t0 = time.perf_counter()
        yv, sv = val.blurred.to(dev), val.sharp
        if self._kernel(blur) is not None:
            outs = wiener_padded(yv, self._kernel(blur), BALANCES)
            self.balance_scores = [common.mean_scores(o, sv)[0] for o in outs]
            self.balance = BALANCES[int(np.argmax(self.balance_scores))]
        # start balance, iterations and l1 on (up to) max_val_images validation images
        idx = torch.linspace(0, len(val) - 1, min(len(val), self.max_val_images)).round().long()
        ys, ss = yv[idx], sv[idx]
        small = self.ctx.preset.tiny or self.ctx.preset.size <= 64
        grid = self.tiny_iter_grid if small else self.iter_grid
        factors = (
            [1.0]
            if self.ctx.preset.tiny
            else self.small_start_factors
            if small
            else self.start_factors
        )
        starts = [None] if self.balance is None else [self.balance * f for f in factors]
        scores = []
        for bal in starts:
            x0 = self._x0(ys, blur, bal)
            for l1 in self.l1_grid:
                res = self.model.restore(ys, blur, x0=x0, n_iter=max(grid), l1=l1, snapshots=grid)
                for n in grid:
                    p, s = common.mean_scores(res.snapshots[n], ss)
                    scores.append(
                        {"start_balance": bal, "n_iter": n, "l1": l1, "val_psnr": p, "val_ssim": s}
                    )
        best = max(scores, key=lambda d: d["val_psnr"])
        self.model.n_iter, self.model.l1 = int(best["n_iter"]), float(best["l1"])
        self.start_balance = best["start_balance"]
        self.val_scores = scores
        self.select_seconds = time.perf_counter() - t0

    @torch.no_grad()
    def restore(self, y: torch.Tensor, blur: BlurLike) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call fit() or load() first")
        dev = torch.device(self.ctx.device)
        y = y.to(dev, torch.float32)
        bal = self.start_balance if self.start_balance is not None else self.balance
        return self.model.restore(y, blur, x0=self._x0(y, blur, bal)).x.clamp(0, 1).to("cpu")

    def save(self, path: str | Path) -> None:
        if self.model is None:
            raise RuntimeError(f"{self.name}: nothing to save, call fit() first")
        self.model.save(path)
        bal = self.start_balance if self.start_balance is not None else self.balance
        if bal is not None:  # keep the start's Wiener balance beside the dictionary
            np.save(str(path) + ".balance.npy", np.asarray(bal))

    def load(self, path: str | Path) -> None:
        self.model = DeepNMFPrior.load(path, device=torch.device(self.ctx.device))
        self.loaded_from = str(path)
        bal = Path(str(path) + ".balance.npy")
        if bal.is_file():
            self.balance = self.start_balance = float(np.load(bal))

    def info(self) -> dict[str, Any]:
        if self.model is None:
            return {}
        return {
            "params": self.model.get_params(),
            "n_parameters": self.model.n_parameters(),
            "wiener_balance": self.balance,
            "wiener_init_balance": self.start_balance,
            "dictionary_fit_seconds": self.model.fit_seconds_,
            "cache_file": self.cache_file,
            "cache_hit": self.cache_hit,
            "iter_l1_val": self.val_scores,
            "select_seconds": self.select_seconds,
            "loaded_from": self.loaded_from,
        }

    def figures(self, out_dir: Path) -> list[Path]:
        if self.model is None or self.model.Ws_ is None:
            return []
        m = self.model
        out: list[Path] = []
        p = common.plot_losses(
            Path(out_dir) / common.LOSS_FIG,
            f"{self.name}: ranks {list(m.ranks)} ({self.ctx.preset.name} preset)",
            m.loss_history_,
            m.pretrain_histories_,
        )
        if p is not None:
            out.append(p)
        c = m.channels_ or 3
        panels = [("W1 (first layer) atoms", common.tile_atoms(m.Ws_[0], c, m.size))]
        if len(m.Ws_) > 1:
            panels.append(
                (
                    f"W1…W{len(m.Ws_)} (effective dictionary)",
                    common.tile_atoms(m.dictionary(), c, m.size),
                )
            )
        out.append(
            common.plot_atoms(
                Path(out_dir) / common.ATOMS_FIG,
                panels,
                f"{self.name}: learned sharp-patch atoms (first 64)",
            )
        )
        return out


METHOD = DNMFPrior
