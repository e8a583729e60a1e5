"""``dnmf-prior``: non-blind Deep NMF patch prior + half-quadratic splitting with the known blur.

The dictionary ``W1…Wk`` is learned from the **sharp** training images only
(`dnmf.deblur.prior.DeepNMFPrior`: ON/OFF split of mean-removed patches). Restoration
alternates an exact whole-image step with the blur operator and a sparse nonnegative coding
of every overlapping patch at an annealed noise level; the x-step weight is chosen on the
validation images (as ``epll``'s is: both use `benchmarks.methods._hqs_common`).

The first version — multiplicative updates on the codes through the blur, started from the
codes of a Wiener estimate — stays reachable as an ablation with the setting
``solver="mu"`` (``MethodContext(options={"dnmf-prior_settings": {"solver": "mu"}})``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from benchmarks.classical import wiener_padded
from benchmarks.methods import _dnmf_common as common
from benchmarks.methods import _hqs_common as hqs
from benchmarks.methods._tuning import best_wiener_balance
from benchmarks.methods.base import BlurLike, Method, MethodContext
from benchmarks.pairs import PairSet
from dnmf.deblur.mu_prior import DeepNMFPriorMU
from dnmf.deblur.prior import DeepNMFPrior

#: the first version's settings and selection grids (``solver="mu"``)
MU_SETTINGS: dict[str, Any] = dict(
    size=6, stride=2, ranks=(128, 96), n_patches=12000, fit_iter=50, normalise=True,
    dc_atoms=True, init="x0", coder="hals", code_iter=10, accelerate=True,
)  # fmt: skip
MU_ITER_GRID = [5, 10, 20]
MU_START_FACTORS = [0.3, 0.56, 1.0]


class DNMFPrior(Method):
    name = "dnmf-prior"
    description = (
        "non-blind: Deep NMF dictionary of sharp mean-removed patches (ON/OFF), "
        "half-quadratic splitting with the known blur and sparse codes of every patch"
    )
    sees_psf = True
    learns = True  # from sharp images only
    checkpointable = True

    settings: ClassVar[dict[str, Any]] = dict(
        solver="hqs",
        size=6,
        ranks=(128, 64),
        n_patches=20000,
        fit_iter=60,
        colour="opponent",
        stride=2,
        coding="semi",
        depth="product",
        sparsity=1.0,
        sparsity_power=1.5,
        code_iter=2,
        sigma_max=0.1,
        sigma_min=0.005,
        n_stages=8,
        weight=2e-7,
    )
    tiny_settings: ClassVar[dict[str, Any]] = dict(
        size=4, ranks=(16, 8), n_patches=2000, fit_iter=15, n_stages=3, stride=2
    )
    #: the fast preset's 64 px run must stay within a few minutes for all methods together
    small_settings: ClassVar[dict[str, Any]] = dict(n_patches=10000, fit_iter=50, stride=2)
    #: x-step weight per unit noise variance (``weight = f · this · σ̂²``, σ̂ measured on the
    #: validation pairs) and the factors ``f`` tried on validation
    weight_per_noise: ClassVar[float] = 0.16
    weight_factors: ClassVar[list[float]] = [0.25, 0.5, 1.0, 2.0]
    max_val_images: ClassVar[int] = 10

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.model: DeepNMFPrior | DeepNMFPriorMU | None = None
        self.tuning = hqs.Tuning()
        # solver="mu" only: the Wiener balances of the start
        self.balance: float | None = None
        self.start_balance: float | None = None

    def model_settings(self) -> dict[str, Any]:
        return common.preset_settings(
            self.ctx, self.name, self.settings, self.tiny_settings, self.small_settings
        )

    def _solver(self) -> str:
        solver = self.model_settings().get("solver", "hqs")
        if solver not in ("hqs", "mu"):
            raise ValueError(f"dnmf-prior solver must be 'hqs' or 'mu', got {solver!r}")
        return str(solver)

    # --------------------------------------------------------------- fit
    def fit(self, train: PairSet, val: PairSet, blur: BlurLike) -> None:
        if self._solver() == "mu" or isinstance(self.model, DeepNMFPriorMU):
            self._fit_mu(train, val, blur)
            return
        loaded = self.model if self.tuning.loaded_from is not None else None
        settings = {k: v for k, v in self.model_settings().items() if k != "solver"}
        self.model = hqs.fit_and_tune(
            self.ctx, self.name, DeepNMFPrior, settings, (train, val, blur),
            weight_per_noise=self.weight_per_noise, weight_factors=self.weight_factors,
            max_val_images=self.max_val_images, tuning=self.tuning, model=loaded,
        )  # fmt: skip

    def _fit_mu(self, train: PairSet, val: PairSet, blur: BlurLike) -> None:
        """The first version's fit: dictionary, Wiener balance, start balance and MU
        iterations on (up to 20) validation images."""
        s = {**MU_SETTINGS, **{k: v for k, v in self.model_settings().items() if k in MU_SETTINGS}}
        if self.ctx.preset.tiny:
            s.update(size=4, ranks=(16, 8), n_patches=2000, fit_iter=15, code_iter=5)
        if self.model is None or self.tuning.loaded_from is None:
            self.model, path, self.tuning.cache_hit = common.load_or_fit(
                self.ctx, f"{self.name}-mu", DeepNMFPriorMU, s, common.data_key(train.sharp),
                lambda m: m.fit(train.sharp),
            )  # fmt: skip
            self.tuning.cache_file = str(path) if path is not None else None
        kernel = getattr(blur, "kernel", None)
        if val is None or not len(val) or kernel is None:
            return
        t0 = time.perf_counter()
        self.balance, _ = best_wiener_balance(val.blurred, kernel, val.sharp)
        ys, ss = hqs.val_subset(val, 20)
        grid = [5, 10] if self.ctx.preset.tiny else MU_ITER_GRID
        best: tuple[float, float, int] = (-np.inf, self.balance, grid[0])
        for f in [1.0] if self.ctx.preset.tiny else MU_START_FACTORS:
            x0 = wiener_padded(ys, kernel, self.balance * f).clamp(0, 1)
            res = self.model.restore(ys, blur, x0=x0, n_iter=max(grid), snapshots=grid)
            for n in grid:
                p = common.mean_scores(res.snapshots[n], ss)[0]
                best = max(best, (p, self.balance * f, n))
        _, self.start_balance, self.model.n_iter = best
        self.tuning.select_seconds = time.perf_counter() - t0

    # --------------------------------------------------------------- restore
    @torch.no_grad()
    def restore(self, y: torch.Tensor, blur: BlurLike) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call fit() or load() first")
        y = y.to(torch.device(self.ctx.device), torch.float32)
        if isinstance(self.model, DeepNMFPriorMU):
            kernel, bal = getattr(blur, "kernel", None), self.start_balance or self.balance
            x0 = None if kernel is None or bal is None else wiener_padded(y, kernel, bal)
            x0 = None if x0 is None else x0.clamp(0, 1)
            return self.model.restore(y, blur, x0=x0).x.clamp(0, 1).to("cpu")
        return self.model.restore(y, blur).x.clamp(0, 1).to("cpu", torch.float32)

    # --------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        if self.model is None:
            raise RuntimeError(f"{self.name}: nothing to save, call fit() first")
        self.model.save(path)
        bal = self.start_balance or self.balance
        if isinstance(self.model, DeepNMFPriorMU) and bal is not None:
            np.save(str(path) + ".balance.npy", np.asarray(bal))  # the MU start's balance

    def load(self, path: str | Path) -> None:
        cls = DeepNMFPriorMU if self._solver() == "mu" else DeepNMFPrior
        self.model = hqs.load_model(cls, path, self.ctx, self.name)
        self.tuning.loaded_from = str(path)
        bal = Path(str(path) + ".balance.npy")
        if cls is DeepNMFPriorMU and bal.is_file():
            self.balance = self.start_balance = float(np.load(bal))

    def info(self) -> dict[str, Any]:
        if self.model is None:
            return {}
        return {
            "solver": "mu" if isinstance(self.model, DeepNMFPriorMU) else "hqs",
            "params": self.model.get_params(),
            "n_parameters": self.model.n_parameters(),
            "dictionary_fit_seconds": self.model.fit_seconds_,
            "wiener_balance": self.balance,
            "wiener_init_balance": self.start_balance,
            **self.tuning.as_dict(),
        }

    def figures(self, out_dir: Path) -> list[Path]:
        m = self.model
        if m is None or m.Ws_ is None:
            return []
        out: list[Path] = []
        p = common.plot_losses(
            Path(out_dir) / common.LOSS_FIG,
            f"{self.name}: ranks {list(m.ranks)} ({self.ctx.preset.name} preset)",
            m.loss_history_,
            m.pretrain_histories_,
        )
        if p is not None:
            out.append(p)
        c = 1 if getattr(m, "colour", "rgb") == "opponent" else (m.channels_ or 3)
        W, what = m.Ws_[0], "W1 (first layer) atoms"
        if isinstance(m, DeepNMFPrior):  # the signed atoms the z-step codes with
            W = m.patch_prior().signed
            layers = len(m.Ws_) if m.depth == "product" else 1
            what = f"signed atoms of {' '.join(f'W{i + 1}' for i in range(layers))}"
        out.append(
            common.plot_atoms(
                Path(out_dir) / common.ATOMS_FIG,
                [(what, common.tile_atoms(W, c, m.size))],
                f"{self.name}: learned sharp-patch atoms (first 64)",
            )
        )
        return out


METHOD = DNMFPrior
