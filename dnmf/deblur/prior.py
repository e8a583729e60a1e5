"""Non-blind deblurring with a Deep NMF patch prior and half-quadratic splitting.

`DeepNMFPrior` learns a Deep NMF dictionary of mean-removed sharp patches (ON/OFF
split, `dnmf.deblur.nmf_patch_prior`) from sharp images only, and restores a blurred
batch by annealed half-quadratic splitting (`dnmf.deblur.hqs.hqs_deblur`): an exact
whole-image x-step with the operator, then a z-step that codes every overlapping patch of the
current estimate with the dictionary at the stage's noise level (sparsity tied to the noise,
deeper layers as a prior on the codes) and averages the patches back
(`dnmf.deblur.patch_denoise.PatchDenoiser`). The fitted state and the model file are
`dnmf.deblur.dictionary.FittedDictionary`'s.

The first version, multiplicative updates on the codes through the blur, is an ablation kept
with the experiments outside the installed package (``experiments/mu_prior.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from .._solvers import SOLVERS
from .dictionary import FittedDictionary
from .hqs import HQSResult, LinearOperator, annealing_schedule, hqs_deblur
from .nmf_patch_prior import (
    CODINGS,
    DEPTHS,
    NMFPatchPrior,
    learn_onoff_dictionary,
    sample_centred_patches,
)
from .patch_denoise import PatchDenoiser

__all__ = ["DeepNMFPrior", "LinearOperator"]


class DeepNMFPrior(FittedDictionary):
    """Deep NMF patch prior + half-quadratic splitting (dictionary from sharp images only).

    Parameters (keyword-only, stored as given, checked at `fit`/`restore`)
    ----------
    size : patch side (px). ranks : Deep NMF ranks ``(r1, …, rk)``.
    n_patches, fit_iter, fit_solver : training patches, factorization iterations and
        `dnmf.factorize`'s solver (``"mu"``: the better prior on validation).
    colour : ``"opponent"`` (grey patches of the rotated channels) or ``"rgb"``.
    remove_mean : centre every patch before the prior (and the training patches).
    stride : patch grid step at restoration (1: every overlapping patch).
    coding : ``"semi"`` (signed first layer, nonnegative codes) or ``"onoff"``.
    depth : ``"layered"`` (layer-centric penalty ``γ``) or ``"product"`` (``W1…Wk`` as one).
    sparsity, sparsity_deep : L1 weight on ``h1`` / deeper codes, times the stage's ``σ``.
    gamma : layer-centric penalty weight. code_iter : HALS sweeps per block and stage.
    n_outer : block rounds per stage (layered). warm_start : codes carried across stages.
    mirror : every atom in both polarities (the ON/OFF halves swapped: ``−p``'s split).
    debias : rescale each patch estimate by least squares (undoes the L1 shrinkage).
    sigma_max, sigma_min, n_stages : annealing of the z-step's noise level (geometric).
    weight : x-step weight ``μ_k = weight / σ_k²``. x_step : ``"fft"`` or ``"cg"``.
    batch : images restored together. seed, device : as usual.

    The defaults are the benchmark's settings (chosen on the validation people); ``weight``
    suits 8-bit rounding noise (σ ≈ 0.0011): scale it with the noise variance.
    """

    FILE_KIND = "dnmf-prior-hqs"  # tags the model file: a first-version (MU) file is refused

    def __init__(
        self,
        *,
        size: int = 6,
        ranks: Sequence[int] = (128, 64),
        n_patches: int = 20000,
        fit_iter: int = 60,
        fit_solver: str = "mu",
        colour: str = "opponent",
        remove_mean: bool = True,
        stride: int = 2,
        coding: str = "semi",
        depth: str = "product",
        sparsity: float = 1.0,
        sparsity_deep: float = 0.0,
        gamma: float = 1.0,
        code_iter: int = 2,
        n_outer: int = 1,
        warm_start: bool = True,
        mirror: bool = False,
        debias: bool = False,
        sparsity_power: float = 1.5,
        gamma_power: float = 0.0,
        sigma_max: float = 0.1,
        sigma_min: float = 0.005,
        n_stages: int = 8,
        weight: float = 2e-7,
        x_step: str = "fft",
        batch: int = 8,
        seed: int = 0,
        device: Any = None,
    ) -> None:
        self.size, self.ranks = int(size), tuple(int(r) for r in ranks)
        self.n_patches, self.fit_iter, self.fit_solver = int(n_patches), int(fit_iter), fit_solver
        self.colour, self.remove_mean, self.stride = colour, bool(remove_mean), int(stride)
        self.coding, self.depth = coding, depth
        self.sparsity, self.sparsity_deep = float(sparsity), float(sparsity_deep)
        self.gamma, self.code_iter, self.n_outer = float(gamma), int(code_iter), int(n_outer)
        self.warm_start, self.mirror, self.debias = bool(warm_start), bool(mirror), bool(debias)
        self.sparsity_power, self.gamma_power = float(sparsity_power), float(gamma_power)
        self.sigma_max, self.sigma_min, self.n_stages = (
            float(sigma_max),
            float(sigma_min),
            int(n_stages),
        )
        self.weight, self.x_step, self.batch, self.seed = (
            float(weight),
            x_step,
            int(batch),
            int(seed),
        )
        self._init_fitted(device)

    # --------------------------------------------------------------- validation
    def _check(self) -> None:
        """All parameter checks, in one place (called by fit and restore)."""
        for name, allowed in (
            ("colour", ("rgb", "opponent")),
            ("coding", CODINGS),
            ("depth", DEPTHS),
            ("x_step", ("fft", "cg")),
            ("fit_solver", SOLVERS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("size", "n_patches", "fit_iter", "stride", "code_iter", "n_stages", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.ranks or min(self.ranks) < 1:
            raise ValueError(f"ranks must be positive integers, got {self.ranks!r}")
        if self.stride > self.size:
            raise ValueError(f"stride ({self.stride}) must not exceed size ({self.size})")
        for name in ("sparsity", "sparsity_deep", "n_outer"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not (self.gamma > 0 and self.weight > 0):
            raise ValueError(f"gamma and weight must be > 0, got {self.gamma}, {self.weight}")
        annealing_schedule(self.sigma_max, self.sigma_min, self.n_stages)

    # --------------------------------------------------------------- dictionary
    def fit(self, sharp: torch.Tensor) -> DeepNMFPrior:
        """Learn the dictionary from sharp images ``(N, C, H, W)`` in [0, 1]."""
        self._check()
        if sharp.ndim != 4:
            raise ValueError(f"sharp must be a (N, C, H, W) batch, got {tuple(sharp.shape)}")
        t0 = time.perf_counter()
        P = sample_centred_patches(
            sharp.to(self.device, torch.float32),
            size=self.size,
            colour=self.colour,
            n_patches=self.n_patches,
            seed=self.seed,
            remove_mean=self.remove_mean,
        )
        Ws, res = learn_onoff_dictionary(
            P, self.ranks, max_iter=self.fit_iter, seed=self.seed, solver=self.fit_solver
        )
        self._record_fit(Ws, res, sharp.shape[1], t0)
        return self

    def patch_prior(self) -> NMFPatchPrior:
        """The z-step's patch coder with this model's dictionary and coding settings."""
        return NMFPatchPrior(
            [W.to(self.device) for W in self.fitted_layers()],
            coding=self.coding,
            depth=self.depth,
            sparsity=self.sparsity,
            sparsity_deep=self.sparsity_deep,
            gamma=self.gamma,
            n_iter=self.code_iter,
            n_outer=self.n_outer,
            warm_start=self.warm_start,
            mirror=self.mirror,
            debias=self.debias,
            sparsity_power=self.sparsity_power,
            gamma_power=self.gamma_power,
        )

    def sigmas(self) -> list[float]:
        return annealing_schedule(self.sigma_max, self.sigma_min, self.n_stages)

    # --------------------------------------------------------------- restoration
    @torch.no_grad()
    def restore(
        self,
        y: torch.Tensor,
        op: LinearOperator,
        *,
        x0: torch.Tensor | None = None,
        snapshots: Sequence[int] = (),
    ) -> HQSResult:
        """Restore ``y`` (N, C, H, W) by HQS; ``x0`` (e.g. a Wiener estimate) is the first z.

        Images are restored ``batch`` at a time (each image's result does not depend on the
        others: the patch codes are independent columns).
        """
        self._check()
        prior = self.patch_prior()
        den = PatchDenoiser(
            prior,
            size=self.size,
            stride=self.stride,
            colour=self.colour,
            remove_mean=self.remove_mean,
            batch=self.batch,
        )
        y = y.to(self.device, torch.float32)
        starts = None if x0 is None else x0.to(self.device, torch.float32)
        parts: list[HQSResult] = []
        for i in range(0, len(y), self.batch):
            prior.reset()
            xb = None if starts is None else starts[i : i + self.batch]
            parts.append(
                hqs_deblur(
                    y[i : i + self.batch],
                    op,
                    den,
                    self.sigmas(),
                    weight=self.weight,
                    x0=xb,
                    x_step=self.x_step,
                    snapshots=snapshots,
                )
            )
        return HQSResult(
            x=torch.cat([p.x for p in parts]),
            sigmas=parts[0].sigmas,
            cg_iters=[n for p in parts for n in p.cg_iters],
            snapshots={k: torch.cat([p.snapshots[k] for p in parts]) for k in parts[0].snapshots},
        )

    # --------------------------------------------------------------- persistence
    def get_params(self) -> dict[str, Any]:
        keys = (
            "size", "ranks", "n_patches", "fit_iter", "fit_solver", "colour", "remove_mean",
            "stride", "coding", "depth", "sparsity", "sparsity_deep", "gamma", "code_iter",
            "n_outer", "warm_start", "mirror", "debias", "sparsity_power", "gamma_power",
            "sigma_max", "sigma_min", "n_stages", "weight", "x_step", "batch", "seed",
        )  # fmt: skip
        out = {k: getattr(self, k) for k in keys}
        out["ranks"] = list(self.ranks)
        return out
