"""Blind deblurring with a coupled (Deep) NMF dictionary learned from (blurred, sharp) pairs.

Training columns stack a blurred patch (optionally with ``context`` extra pixels on every side,
so it sees more than the sharp patch it predicts) over the sharp target, and factorize

    [w·Vb ; Vout] ≈ [W1b ; W1out] W2 … Wk H        (dnmf.factorize, Frobenius MU)

To restore, the codes ``H ≥ 0`` of the blurred patches are found with the blurred block of
the dictionary alone (multiplicative updates, optional L1), the output block gives the sharp
patch, and overlapping patches are averaged (`dnmf.deblur.patches.PatchGrid`).

Options (each measured in the ablation):

* ``target="sharp"`` stacks the sharp patch itself (the textbook coupled dictionary);
  ``target="residual"`` stacks a nonnegative split of the residual
  ``[(s − b)⁺ ; (s − b)⁻]`` and outputs ``b + W⁺H − W⁻H``.
* ``normalise`` divides every column by the mean of its blurred patch (contrast
  normalisation) and multiplies the output back.
* ``blur_weight`` (``w``) weights the blurred block in the joint factorization.
* ``coder`` computes the codes of the blurred features: ``"mu"`` (multiplicative updates,
  ``code_iter`` iterations) or ``"hals"`` (exact coordinate descent, ``code_iter`` sweeps;
  reaches the NNLS optimum far faster). ``restore_stride`` overrides the grid's stride at
  restoration (denser overlap averages more predictions per pixel).
* ``stages > 1`` makes a cascade: the next stage (same settings, seed + 1) is trained on this
  stage's outputs of the training images and restores this stage's output.
* ``refit`` re-learns the output block on the codes the blurred block alone gives (the codes
  restoration will see), with `dnmf.solve_h` on the transposed problem.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

import dnmf

from ._npz import load_npz, save_npz
from .codes import nonneg_codes
from .patches import PatchGrid

__all__ = ["CoupledDeblur"]


class CoupledDeblur:
    """Coupled-dictionary (Deep) NMF deblurring.

    Keyword-only parameters; fitted attributes end in ``_``.
    """

    def __init__(
        self,
        *,
        size: int = 8,
        context: int = 4,
        stride: int = 4,
        ranks: Sequence[int] = (256,),
        target: str = "residual",
        normalise: str = "contrast",
        contrast_floor: float = 0.02,
        blur_weight: float = 1.0,
        l1: float = 0.0,
        refit: bool = True,
        n_patches: int = 20000,
        fit_iter: int = 100,
        code_iter: int = 100,
        coder: str = "mu",
        restore_stride: int | None = None,
        stages: int = 1,
        seed: int = 0,
        device=None,
        batch_size: int = 16,
    ) -> None:
        if target not in ("sharp", "residual"):
            raise ValueError(f"target must be 'sharp' or 'residual', got {target!r}")
        self.size, self.context, self.stride = int(size), int(context), int(stride)
        self.ranks = tuple(int(r) for r in ranks)
        if normalise not in ("none", "mean", "contrast"):
            raise ValueError(f"normalise must be 'none', 'mean' or 'contrast', got {normalise!r}")
        if target == "sharp" and normalise == "contrast":
            raise ValueError("normalise='contrast' needs target='residual' (the mean is removed)")
        self.target, self.normalise, self.blur_weight = target, normalise, float(blur_weight)
        self.contrast_floor = float(contrast_floor)
        self.l1, self.refit = float(l1), bool(refit)
        self.n_patches, self.fit_iter, self.code_iter = (
            int(n_patches),
            int(fit_iter),
            int(code_iter),
        )
        if coder not in ("mu", "hals"):
            raise ValueError(f"coder must be 'mu' or 'hals', got {coder!r}")
        self.coder = coder
        if int(stages) < 1:
            raise ValueError(f"stages must be >= 1, got {stages!r}")
        self.stages = int(stages)
        self.next_: CoupledDeblur | None = None  # the following stage (stages > 1)
        self.restore_stride = None if restore_stride is None else int(restore_stride)
        self.seed, self.batch_size = int(seed), int(batch_size)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.Ws_: list[torch.Tensor] | None = None  # joint factors W1 (stacked), W2, …
        self.W_blur_: torch.Tensor | None = None  # effective blurred block (m_b × r_k)
        self.W_out_: torch.Tensor | None = None  # effective output block (m_o × r_k)
        self.channels_: int | None = None
        self.loss_history_: np.ndarray | None = None
        self.pretrain_histories_: list[np.ndarray] = []
        self.fit_seconds_: float | None = None

    # ------------------------------------------------------------------ features
    def _features(self, blurred: torch.Tensor, grid: PatchGrid):
        """Blurred context patches (weighted, normalised), centre patches and the patch means."""
        B = grid.extract(blurred, context=self.context, mode="reflect")
        Bc = grid.extract(blurred, mode="reflect")
        if self.normalise == "contrast":
            mean = B.mean(dim=-2, keepdim=True)
            mu = B.std(dim=-2, keepdim=True) + self.contrast_floor
            Z = (B - mean) / mu
            return self.blur_weight * torch.cat([Z.clamp_min(0), (-Z).clamp_min(0)], dim=-2), Bc, mu
        if self.normalise == "mean":
            mu = B.mean(dim=-2, keepdim=True).clamp_min(1e-3)
        else:
            mu = torch.ones_like(B[..., :1, :])
        return self.blur_weight * B / mu, Bc, mu

    def _targets(self, sharp_c: torch.Tensor, Bc: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        if self.target == "sharp":
            return sharp_c / mu
        r = (sharp_c - Bc) / mu
        return torch.cat([r.clamp_min(0), (-r).clamp_min(0)], dim=-2)

    def _columns(
        self, blurred: torch.Tensor, sharp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, h, w = blurred.shape
        grid = PatchGrid(h, w, self.size, self.stride)
        Vb, Bc, mu = self._features(blurred, grid)
        S = grid.extract(sharp, mode="reflect")
        Vo = self._targets(S, Bc, mu)
        Vb = Vb.permute(1, 0, 2).reshape(Vb.shape[1], -1)
        Vo = Vo.permute(1, 0, 2).reshape(Vo.shape[1], -1)
        if self.n_patches < Vb.shape[1]:
            g = torch.Generator().manual_seed(self.seed)
            idx = torch.randperm(Vb.shape[1], generator=g)[: self.n_patches].to(Vb.device)
            Vb, Vo = Vb[:, idx], Vo[:, idx]
        return Vb.contiguous(), Vo.contiguous()

    def _code(self, Vb: torch.Tensor, n_iter: int, l1: float) -> torch.Tensor:
        """Codes of blurred features with the blurred block alone (MU or HALS sweeps)."""
        return nonneg_codes(Vb, self._fitted(self.W_blur_), n_iter=n_iter, l1=l1, coder=self.coder)

    @staticmethod
    def _fitted(W: torch.Tensor | None) -> torch.Tensor:
        if W is None:
            raise RuntimeError("CoupledDeblur is not fitted: call fit() or load() first")
        return W

    # ------------------------------------------------------------------ fit
    def fit(self, blurred: torch.Tensor, sharp: torch.Tensor) -> CoupledDeblur:
        """Learn the coupled dictionary from (blurred, sharp) batches ``(N, C, H, W)``."""
        if blurred.shape != sharp.shape or blurred.ndim != 4:
            raise ValueError(
                f"blurred {tuple(blurred.shape)} and sharp {tuple(sharp.shape)} "
                "must be equal (N, C, H, W) shapes"
            )
        t0 = time.perf_counter()
        dev = self.device
        Vb, Vo = self._columns(blurred.to(dev, torch.float32), sharp.to(dev, torch.float32))
        V = torch.cat([Vb, Vo], dim=0)
        k = len(self.ranks)
        init = "nndsvda" if self.ranks[0] <= min(V.shape) else "random"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=dnmf.ConvergenceWarning)
            res = dnmf.factorize(
                V,
                list(self.ranks),
                beta=2,
                max_iter=self.fit_iter,
                tol=1e-5,
                init=init,
                l1=[0.0] * k + [self.l1],
                seed=self.seed,
                solver="mu",  # the solver its settings were chosen with (validation)
            )
        Ws = [W.float() for W in res.Ws]
        W = Ws[-1]
        for Wl in reversed(Ws[:-1]):
            W = Wl @ W
        mb = Vb.shape[0]
        W_blur, W_out = W[:mb].contiguous(), W[mb:].contiguous()
        if self.refit:
            self.W_blur_ = W_blur
            H = self._code(Vb, self.code_iter, self.l1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=dnmf.ConvergenceWarning)
                W_out = (
                    dnmf.solve_h(
                        Vo.T.contiguous(),
                        [H.T.contiguous()],
                        H=W_out.T.contiguous(),
                        max_iter=self.fit_iter,
                        tol=1e-6,
                    )
                    .H.T.contiguous()
                    .float()
                )
        self.Ws_, self.W_blur_, self.W_out_ = Ws, W_blur, W_out
        self.channels_ = int(blurred.shape[1])
        self.loss_history_ = np.asarray(res.loss_history)
        self.pretrain_histories_ = [np.asarray(h) for h in res.pretrain_loss_histories]
        if self.stages > 1:
            # cascade: the next stage learns to restore this stage's outputs of the training set
            x1 = self._restore_one(blurred, self.code_iter, self.l1, None)
            params = {**self.get_params(), "stages": self.stages - 1, "seed": self.seed + 1}
            self.next_ = CoupledDeblur(**params, device=self.device).fit(x1, sharp)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    # ------------------------------------------------------------------ restore
    @torch.no_grad()
    def restore(
        self,
        blurred: torch.Tensor,
        *,
        code_iter: int | None = None,
        l1: float | None = None,
        stride: int | None = None,
    ) -> torch.Tensor:
        """Restore a batch ``(N, C, H, W)`` in [0, 1]; returns float32 on ``self.device``."""
        if self.W_blur_ is None:
            raise RuntimeError("CoupledDeblur is not fitted: call fit() or load() first")
        if blurred.ndim != 4 or blurred.shape[1] != self.channels_:
            raise ValueError(f"expected (N, {self.channels_}, H, W), got {tuple(blurred.shape)}")
        n_it = self.code_iter if code_iter is None else int(code_iter)
        lam = self.l1 if l1 is None else float(l1)
        x = self._restore_one(blurred, n_it, lam, stride)
        if self.next_ is not None:
            x = self.next_.restore(x, code_iter=code_iter, l1=l1, stride=stride)
        return x

    def _restore_one(
        self, blurred: torch.Tensor, n_it: int, lam: float, stride: int | None
    ) -> torch.Tensor:
        h, w = blurred.shape[-2:]
        st = stride if stride is not None else (self.restore_stride or self.stride)
        grid = PatchGrid(h, w, self.size, int(st))
        outs = []
        for y in blurred.to(self.device, torch.float32).split(self.batch_size):
            Vb, Bc, mu = self._features(y, grid)
            H = self._code(Vb, n_it, lam)
            O = self._fitted(self.W_out_) @ H
            if self.target == "sharp":
                P = O * mu
            else:
                m = O.shape[-2] // 2
                P = Bc + (O[..., :m, :] - O[..., m:, :]) * mu
            outs.append(grid.assemble(P).clamp_(0.0, 1.0))
        return torch.cat(outs)

    # ------------------------------------------------------------------ persistence
    def get_params(self) -> dict[str, Any]:
        return dict(
            size=self.size,
            context=self.context,
            stride=self.stride,
            ranks=list(self.ranks),
            target=self.target,
            normalise=self.normalise,
            contrast_floor=self.contrast_floor,
            blur_weight=self.blur_weight,
            l1=self.l1,
            refit=self.refit,
            n_patches=self.n_patches,
            fit_iter=self.fit_iter,
            code_iter=self.code_iter,
            coder=self.coder,
            restore_stride=self.restore_stride,
            stages=self.stages,
            seed=self.seed,
            batch_size=self.batch_size,
        )

    def n_parameters(self) -> int:
        own = int(sum(W.numel() for W in self.Ws_ or []))
        return own + (self.next_.n_parameters() if self.next_ is not None else 0)

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"W{i + 1}": W.cpu().numpy() for i, W in enumerate(self.Ws_ or [])}
        arrays.update(
            W_blur=self._fitted(self.W_blur_).cpu().numpy(),
            W_out=self._fitted(self.W_out_).cpu().numpy(),
            params=np.asarray(json.dumps(self.get_params())),
            channels=np.asarray(self.channels_),
            loss_history=np.asarray(self.loss_history_ if self.loss_history_ is not None else []),
        )
        for i, h in enumerate(self.pretrain_histories_):
            arrays[f"pretrain_{i + 1}"] = h
        if self.next_ is not None:
            arrays.update({f"next_{k}": v for k, v in self.next_._arrays().items()})
        return arrays

    @classmethod
    def _from_arrays(cls, z: Any, device=None, prefix: str = "") -> CoupledDeblur:
        params = json.loads(str(z[prefix + "params"]))
        obj = cls(**params, device=device)
        k = len(params["ranks"])
        dev = obj.device
        obj.Ws_ = [torch.from_numpy(z[f"{prefix}W{i + 1}"]).to(dev) for i in range(k)]
        obj.W_blur_ = torch.from_numpy(z[prefix + "W_blur"]).to(dev)
        obj.W_out_ = torch.from_numpy(z[prefix + "W_out"]).to(dev)
        obj.channels_ = int(z[prefix + "channels"])
        obj.loss_history_ = z[prefix + "loss_history"]
        obj.pretrain_histories_ = [
            z[f"{prefix}pretrain_{i + 1}"] for i in range(k) if f"{prefix}pretrain_{i + 1}" in z
        ]
        if obj.stages > 1:
            obj.next_ = cls._from_arrays(z, device=device, prefix=prefix + "next_")
        return obj

    def save(self, path: str | os.PathLike) -> None:
        if self.Ws_ is None:
            raise RuntimeError("nothing to save: the model is not fitted")
        save_npz(path, self._arrays())

    @classmethod
    def load(cls, path: str | os.PathLike, device=None) -> CoupledDeblur:
        """Read a model written by `save` (its SHA-256 verified: a damaged file is refused)."""
        return cls._from_arrays(load_npz(path), device=device)
