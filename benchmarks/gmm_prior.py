"""The Gaussian-mixture patch prior and EPLL (Zoran & Weiss, ICCV 2011), which restores with it
inside half-quadratic splitting: `GMMPatchPrior` and the model `EPLL` (fit, restore, save,
load). The benchmark's ``epll`` method is its adapter, `benchmarks.methods.epll`.

The prior is a scikit-learn `sklearn.mixture.GaussianMixture` of mean-removed
patches of **sharp** training images. Its patch MAP step under noise ``σ`` is EPLL's
approximation: each noisy patch ``p`` goes to the component ``k`` with the largest posterior
``π_k N(p; μ_k, Σ_k + σ²I)`` and is Wiener-filtered under it,
``μ_k + Σ_k (Σ_k + σ² I)⁻¹ (p − μ_k)`` (with the eigenvectors ``Σ_k = U diag(s) Uᵀ`` both are
a projection and a per-direction gain). The splitting loop and the patch plumbing (every
overlapping patch, mean removal, averaging, the colour rotation) are shared with the Deep NMF
prior: `dnmf.deblur.hqs.hqs_deblur` and `dnmf.deblur.patch_denoise.PatchDenoiser`.
It is not NMF, so it lives here, in ``benchmarks``.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.io_utils import atomic_write
from dnmf.deblur.hqs import LinearOperator, annealing_schedule, hqs_deblur
from dnmf.deblur.patch_denoise import PatchDenoiser, patch_columns
from dnmf.deblur.patches import PatchGrid

__all__ = ["GMMPatchPrior", "EPLL"]


class GMMPatchPrior:
    """Gaussian mixture of mean-removed ``size × size`` patches, as a patch MAP denoiser.

    ``covariances_`` are kept as eigen-pairs (``eigvecs_`` ``(K, d, d)``, ``eigvals_``
    ``(K, d)``); ``chunk`` bounds the patches scored at once.
    """

    def __init__(
        self,
        means: torch.Tensor,
        eigvecs: torch.Tensor,
        eigvals: torch.Tensor,
        weights: torch.Tensor,
        *,
        chunk: int = 16384,
    ) -> None:
        self.means_, self.eigvecs_ = means, eigvecs
        self.eigvals_, self.weights_ = eigvals.clamp_min(0), weights
        self.chunk = int(chunk)

    @classmethod
    def from_sklearn(cls, gmm: Any) -> GMMPatchPrior:
        s, U = np.linalg.eigh(gmm.covariances_)
        f = torch.float32
        return cls(
            torch.tensor(gmm.means_, dtype=f),
            torch.tensor(U, dtype=f),
            torch.tensor(s, dtype=f),
            torch.tensor(gmm.weights_, dtype=f),
        )

    @property
    def n_components(self) -> int:
        return int(self.weights_.shape[0])

    def to(self, device: torch.device | str) -> GMMPatchPrior:
        self.means_, self.eigvecs_, self.eigvals_, self.weights_ = (
            t.to(device) for t in (self.means_, self.eigvecs_, self.eigvals_, self.weights_)
        )
        return self

    def __call__(self, P: torch.Tensor, sigma: float) -> torch.Tensor:
        """Patch MAP of columns ``P`` (d, n) under noise ``sigma`` (most likely component)."""
        return torch.cat([self._chunk(Pc, sigma) for Pc in P.split(self.chunk, dim=1)], dim=1)

    def _chunk(self, P: torch.Tensor, sigma: float) -> torch.Tensor:
        X = P.T  # (n, d)
        var = self.eigvals_ + sigma**2  # (K, d)
        const = self.weights_.clamp_min(1e-30).log() - 0.5 * var.log().sum(dim=1)
        best = torch.empty(X.shape[0], device=X.device, dtype=torch.long)
        score = torch.full((X.shape[0],), -torch.inf, device=X.device, dtype=X.dtype)
        for k in range(self.n_components):  # one component at a time: (n, d) of memory
            proj = (X - self.means_[k]) @ self.eigvecs_[k]
            ll = const[k] - 0.5 * (proj.square() / var[k]).sum(dim=1)
            better = ll > score
            score = torch.where(better, ll, score)
            best = torch.where(better, torch.full_like(best, k), best)
        out = torch.empty_like(X)
        for k in best.unique().tolist():
            idx = (best == k).nonzero().squeeze(1)
            U, mu = self.eigvecs_[k], self.means_[k]
            gain = self.eigvals_[k] / (self.eigvals_[k] + sigma**2)
            out[idx] = mu + ((X[idx] - mu) @ U * gain) @ U.T
        return out.T


def _sample_patch_matrix(
    sharp: torch.Tensor, size: int, colour: str, n_patches: int, seed: int
) -> np.ndarray:
    """``(n, d)`` mean-removed training patches (rows), a seeded sample of a 2-px grid."""
    grid = PatchGrid(sharp.shape[-2], sharp.shape[-1], size, 2)
    P = patch_columns(sharp.float(), grid, colour)
    g = torch.Generator().manual_seed(int(seed))
    if n_patches < P.shape[1]:
        P = P[:, torch.randperm(P.shape[1], generator=g)[:n_patches]]
    s2 = size**2
    Pc = P.reshape(P.shape[0] // s2, s2, -1)
    P = (Pc - Pc.mean(dim=1, keepdim=True)).reshape(P.shape[0], -1)
    return P.T.double().numpy()


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:  # a file object: numpy appends no ".npz" to the name
        np.savez(fh, allow_pickle=False, **arrays)  # type: ignore[arg-type]


class EPLL:
    """EPLL deblurring: fit a Gaussian mixture on sharp patches, restore by annealed HQS.

    Keyword-only parameters, stored as given; `fit` learns ``prior_``. The schedule has
    ``n_stages`` noise levels from ``sigma_max`` to ``sigma_min`` (geometric) and the x-step
    weight ``μ_k = weight / σ_k²`` (see `dnmf.deblur.hqs`). The defaults are the
    benchmark's settings; ``weight`` suits 8-bit rounding noise (scale it with the noise
    variance).
    """

    def __init__(
        self,
        *,
        size: int = 8,
        n_components: int = 50,
        n_patches: int = 40000,
        colour: str = "opponent",
        max_iter: int = 60,
        reg_covar: float = 1e-6,
        stride: int = 2,
        sigma_max: float = 0.1,
        sigma_min: float = 0.005,
        n_stages: int = 8,
        weight: float = 1e-7,
        seed: int = 0,
        device: Any = None,
    ) -> None:
        self.size, self.n_components, self.n_patches = int(size), int(n_components), int(n_patches)
        self.colour, self.max_iter, self.reg_covar = colour, int(max_iter), float(reg_covar)
        self.stride, self.sigma_max, self.sigma_min = (
            int(stride),
            float(sigma_max),
            float(sigma_min),
        )
        self.n_stages, self.weight, self.seed = int(n_stages), float(weight), int(seed)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.prior_: GMMPatchPrior | None = None
        self.fit_seconds_: float | None = None
        self.converged_: bool | None = None

    def _check(self) -> None:
        if self.colour not in ("rgb", "opponent"):
            raise ValueError(f"colour must be 'rgb' or 'opponent', got {self.colour!r}")
        for name in ("size", "n_components", "n_patches", "max_iter", "stride", "n_stages"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.stride > self.size:
            raise ValueError(f"stride ({self.stride}) must not exceed size ({self.size})")
        annealing_schedule(self.sigma_max, self.sigma_min, self.n_stages)
        if not self.weight > 0:
            raise ValueError(f"weight must be > 0, got {self.weight!r}")

    def fit(self, sharp: torch.Tensor) -> EPLL:
        """Learn the mixture from sharp images ``(N, C, H, W)`` (no blurred image is seen)."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits

        self._check()
        t0 = time.perf_counter()
        X = _sample_patch_matrix(sharp, self.size, self.colour, self.n_patches, self.seed)
        gmm = GaussianMixture(
            n_components=self.n_components,
            covariance_type="full",
            max_iter=self.max_iter,
            reg_covar=self.reg_covar,
            random_state=self.seed,
        )
        # BLAS/OpenMP pools as wide as torch's: on a shared CPU the default (every core)
        # spins threads against each other (14x slower on two busy cores)
        with (
            warnings.catch_warnings(record=True) as caught,
            threadpool_limits(limits=torch.get_num_threads()),
        ):
            warnings.simplefilter("always", ConvergenceWarning)
            gmm.fit(X)
        for w in caught:  # pass the warning on, saying which model it is about
            if issubclass(w.category, ConvergenceWarning):
                warnings.warn(f"EPLL mixture: {w.message}", ConvergenceWarning, stacklevel=2)
        self.converged_ = bool(gmm.converged_)
        self.prior_ = GMMPatchPrior.from_sklearn(gmm).to(self.device)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def sigmas(self) -> list[float]:
        return annealing_schedule(self.sigma_max, self.sigma_min, self.n_stages)

    def denoiser(self) -> PatchDenoiser:
        if self.prior_ is None:
            raise RuntimeError("EPLL is not fitted: call fit() or load() first")
        return PatchDenoiser(self.prior_, size=self.size, stride=self.stride, colour=self.colour)

    @torch.no_grad()
    def restore(
        self,
        y: torch.Tensor,
        op: LinearOperator,
        *,
        x0: torch.Tensor | None = None,
        snapshots: tuple[int, ...] = (),
    ) -> Any:
        """Restore ``y`` (N, C, H, W); returns `dnmf.deblur.hqs.HQSResult`."""
        self._check()
        y = y.to(self.device, torch.float32)
        x0 = None if x0 is None else x0.to(self.device, torch.float32)
        return hqs_deblur(
            y, op, self.denoiser(), self.sigmas(), weight=self.weight, x0=x0, snapshots=snapshots
        )

    # --------------------------------------------------------------- persistence
    def get_params(self) -> dict[str, Any]:
        keys = (
            "size",
            "n_components",
            "n_patches",
            "colour",
            "max_iter",
            "reg_covar",
            "stride",
            "sigma_max",
            "sigma_min",
            "n_stages",
            "weight",
            "seed",
        )
        return {k: getattr(self, k) for k in keys}

    def n_parameters(self) -> int:
        p = self.prior_
        if p is None:
            return 0
        d = p.means_.shape[1]
        return int(p.n_components * (1 + d + d * (d + 1) // 2))

    def save(self, path: str | os.PathLike) -> None:
        if self.prior_ is None:
            raise RuntimeError("nothing to save: EPLL is not fitted")
        p = self.prior_
        arrays = {
            "params": np.asarray(json.dumps(self.get_params())),
            "means": p.means_.cpu().numpy(),
            "eigvecs": p.eigvecs_.cpu().numpy(),
            "eigvals": p.eigvals_.cpu().numpy(),
            "weights": p.weights_.cpu().numpy(),
            "fit_seconds": np.asarray(self.fit_seconds_ or 0.0),
        }
        atomic_write(path, lambda tmp: _savez(tmp, arrays))

    @classmethod
    def load(cls, path: str | os.PathLike, device: Any = None) -> EPLL:
        with np.load(path, allow_pickle=False) as z:
            if "params" not in z or "eigvecs" not in z:
                raise ValueError(f"{path} is not an EPLL checkpoint (no mixture in it)")
            obj = cls(**json.loads(str(z["params"])), device=device)
            t = {k: torch.from_numpy(z[k]) for k in ("means", "eigvecs", "eigvals", "weights")}
            obj.prior_ = GMMPatchPrior(t["means"], t["eigvecs"], t["eigvals"], t["weights"])
            obj.prior_.to(obj.device)
            obj.fit_seconds_ = float(z["fit_seconds"])
        return obj
