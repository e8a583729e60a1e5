"""A Deep NMF patch prior: sparse nonnegative codes of mean-removed patches at a given noise level.

Learning (sharp patches only): the mean-removed patches ``p`` are made nonnegative by the
ON/OFF split ``[p⁺; p⁻]`` (Hoyer 2002) and factorized by `dnmf.factorize`,
``[P⁺; P⁻] ≈ W1 W2 … Wk H``. The columns of every layer are scaled to unit norm (the product
is unchanged), so one sparsity weight means the same for every atom.

Coding a noisy patch matrix ``P`` (the z-step of `dnmf.deblur.hqs`) at noise level ``σ``:

* ``coding="onoff"`` codes ``[P⁺; P⁻]`` with ``W1`` (nonnegative, `dnmf.solve_h` by
  HALS) and returns ``(W1⁺ − W1⁻) h1`` where ``W1⁺``/``W1⁻`` are ``W1``'s two row blocks;
  ``coding="semi"`` codes ``P`` itself with the signed first layer ``D = W1⁺ − W1⁻`` and
  nonnegative codes (semi-NMF; the same exact coordinate descent, `dnmf._solvers.hals`'s HALS, since
  `dnmf.solve_h` accepts only nonnegative dictionaries).
* sparsity: ``l1 = sparsity · σ`` on ``h1`` (and ``l1 = sparsity_deep · σ`` on the deeper
  codes) — a soft threshold that scales with the noise, as for the lasso.
* depth (``depth="layered"``, k ≥ 2): the deeper layers are a prior on the codes through the
  layer-centric penalty ``½ γ ‖h_{l−1} − W_l h_l‖²``; the codes are found by block coordinate
  descent (each block a nonnegative least-squares problem with a stacked dictionary
  ``[W_l ; √γ I]``). ``depth="product"`` uses ``W1…Wk`` as one dictionary instead (depth as a
  product of matrices only).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch

import dnmf
from dnmf._solvers.hals import run_hals_codes

from .patch_denoise import patch_columns
from .patches import PatchGrid

__all__ = ["onoff", "sample_centred_patches", "learn_onoff_dictionary", "NMFPatchPrior"]

CODINGS = ("onoff", "semi")
#: the noise level at which ``sparsity`` and ``gamma`` are quoted (σ = 0.02 on [0, 1])
SIGMA_REF = 0.02
DEPTHS = ("layered", "product")


def onoff(P: torch.Tensor) -> torch.Tensor:
    """The ON/OFF split ``[P⁺; P⁻]`` of a signed ``(d, n)`` matrix (``2d × n``, nonnegative)."""
    return torch.cat([P.clamp_min(0), (-P).clamp_min(0)], dim=0)


def sample_centred_patches(
    sharp: torch.Tensor,
    *,
    size: int,
    colour: str,
    n_patches: int,
    seed: int = 0,
    remove_mean: bool = True,
) -> torch.Tensor:
    """``(d, n)`` mean-removed patches of sharp images (a seeded sample of a 2-px grid);
    ``remove_mean=False`` keeps the raw patches (an ablation)."""
    grid = PatchGrid(sharp.shape[-2], sharp.shape[-1], size, min(2, size))
    P = patch_columns(sharp.float(), grid, colour)
    if n_patches < P.shape[1]:
        g = torch.Generator().manual_seed(int(seed))
        P = P[:, torch.randperm(P.shape[1], generator=g)[:n_patches].to(P.device)]
    if not remove_mean:
        return P.contiguous()
    s2 = size**2
    Pc = P.reshape(P.shape[0] // s2, s2, -1)
    return (Pc - Pc.mean(dim=1, keepdim=True)).reshape(P.shape[0], -1).contiguous()


def normalise_layers(Ws: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Scale every layer's columns to unit norm, moving the scale into the next layer's rows
    (the product ``W1…Wk`` keeps its columns' directions; the last layer's scale goes into H)."""
    out = [W.clone() for W in Ws]
    for l, W in enumerate(out):
        n = W.norm(dim=0).clamp_min(1e-12)
        out[l] = W / n
        if l + 1 < len(out):
            out[l + 1] = out[l + 1] * n[:, None]
    return out


def learn_onoff_dictionary(
    P: torch.Tensor,
    ranks: Sequence[int],
    *,
    max_iter: int = 100,
    seed: int = 0,
    solver: str = "mu",
) -> tuple[list[torch.Tensor], Any]:
    """Deep NMF of the ON/OFF split of centred patches ``P`` (d, n); unit-norm layers.

    ``solver`` is `dnmf.factorize`'s; multiplicative updates with a fixed budget made the
    better prior on the validation faces (see the ablation), so they are the default here.
    """
    V = onoff(P)
    init = "nndsvda" if ranks[0] <= min(V.shape) else "random"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dnmf.ConvergenceWarning)
        res = dnmf.factorize(
            V, list(ranks), beta=2, max_iter=max_iter, tol=1e-5, init=init, seed=seed,
            solver=solver,
        )  # fmt: skip
    return normalise_layers([torch.as_tensor(W).float() for W in res.Ws]), res


#: columns coded per library call: a code block of r × 4096 floats stays in cache, where the
#: row-by-row HALS sweep over all columns at once would stream the whole code matrix per row
CHUNK = 4096


def _nnls(
    V: torch.Tensor, W: torch.Tensor, l1: float, n_iter: int, H: torch.Tensor | None
) -> torch.Tensor:
    """``min_{H≥0} ½‖V − W H‖² + l1·ΣH``, ``n_iter`` HALS sweeps (``W`` may be signed).

    Columns are independent problems, so they are solved in blocks of `CHUNK`.
    """
    out = torch.zeros(W.shape[1], V.shape[1], dtype=V.dtype, device=V.device)
    # solve_h takes nonnegative data and dictionaries only; semi-NMF coding has signed ones
    signed = not (bool((W >= 0).all()) and bool((V >= 0).all()))
    for j in range(0, V.shape[1], CHUNK):
        Vj = V[:, j : j + CHUNK]
        Hj = out[:, j : j + CHUNK] if H is None else H[:, j : j + CHUNK].clone()
        if signed:  # the same HALS sweep, which does not need the signs
            run_hals_codes(Vj, [W], Hj, max_iter=n_iter, tol=0.0, l1=l1, check_every=n_iter)
            out[:, j : j + CHUNK] = Hj
        else:
            res = dnmf.solve_h(
                Vj,
                [W],
                H=Hj,
                solver="hals",
                max_iter=n_iter,
                tol=0.0,
                l1=l1,
                warn=False,
                check_every=n_iter,
            )
            out[:, j : j + CHUNK] = torch.as_tensor(res.H)
    return out


class NMFPatchPrior:
    """``prior(P, sigma)``: Deep NMF codes of centred patches ``P`` (d, n), see module doc.

    Parameters
    ----------
    Ws : unit-norm layers ``W1 (2d × r1), W2 (r1 × r2), …`` of the ON/OFF dictionary.
    coding : ``"onoff"`` or ``"semi"``.
    depth : ``"layered"`` (layer-centric penalty) or ``"product"`` (one dictionary W1…Wk).
    sparsity, sparsity_deep : L1 weights on h1 and on the deeper codes, times σ.
    gamma : weight of the layer-centric penalty.
    n_iter : HALS sweeps per block; ``n_outer`` block-coordinate rounds (layered, k ≥ 2).
    warm_start : start each call from the previous call's codes when the patch matrix has the
        same shape (the HQS stages code the same patch grid again and again).
    """

    def __init__(
        self,
        Ws: Sequence[torch.Tensor],
        *,
        coding: str = "semi",
        depth: str = "layered",
        sparsity: float = 0.0,
        sparsity_deep: float = 0.0,
        gamma: float = 1.0,
        n_iter: int = 5,
        n_outer: int = 2,
        warm_start: bool = True,
        mirror: bool = False,
        debias: bool = False,
        sparsity_power: float = 1.0,
        gamma_power: float = 0.0,
    ) -> None:
        if coding not in CODINGS:
            raise ValueError(f"coding must be one of {CODINGS}, got {coding!r}")
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {DEPTHS}, got {depth!r}")
        self.Ws = list(Ws)
        self.coding, self.depth = coding, depth
        self.sparsity, self.sparsity_deep = float(sparsity), float(sparsity_deep)
        self.gamma, self.n_iter, self.n_outer = float(gamma), int(n_iter), int(n_outer)
        self.sparsity_power, self.gamma_power = float(sparsity_power), float(gamma_power)
        self.warm_start, self.mirror, self.debias = bool(warm_start), bool(mirror), bool(debias)
        self._codes: list[torch.Tensor] | None = None
        d2 = self.Ws[0].shape[0]
        W1 = self.Ws[0]
        if depth == "product":
            for W in self.Ws[1:]:
                W1 = W1 @ W
            W1 = W1 / W1.norm(dim=0).clamp_min(1e-12)
            self.layers = [W1]
        else:
            self.layers = list(self.Ws)
        if self.mirror:  # every atom in both polarities: [p⁺; p⁻] of −p swaps the halves
            L1 = self.layers[0]
            self.layers[0] = torch.cat([L1, torch.cat([L1[d2 // 2 :], L1[: d2 // 2]])], dim=1)
            self.layers[1:] = [torch.block_diag(W, W) for W in self.layers[1:]]
        self.signed = self.layers[0][: d2 // 2] - self.layers[0][d2 // 2 :]

    def reset(self) -> None:
        """Forget the warm-start codes (a new batch of images)."""
        self._codes = None

    def __call__(self, P: torch.Tensor, sigma: float) -> torch.Tensor:
        codes = self._codes if self.warm_start else None
        if codes is not None and codes[0].shape[1] != P.shape[1]:
            codes = None
        codes = self.code(P, sigma, codes)
        self._codes = codes if self.warm_start else None
        out = self.signed @ codes[0]
        if self.debias:  # undo the L1 shrinkage: the least-squares scale along each estimate
            scale = (P * out).sum(0) / out.square().sum(0).clamp_min(1e-12)
            out = out * scale.clamp(0.0, 2.0)
        return out

    def code(
        self, P: torch.Tensor, sigma: float, codes: list[torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        """The codes ``[h1, h2, …]`` of the centred patches ``P`` at noise level ``sigma``."""
        V, W1 = (P, self.signed) if self.coding == "semi" else (onoff(P), self.layers[0])
        rel = sigma / SIGMA_REF
        t = sigma * rel ** (self.sparsity_power - 1.0) if sigma > 0 else 0.0
        l1 = [self.sparsity * t] + [self.sparsity_deep * t] * (len(self.layers) - 1)
        gamma = self.gamma * rel**self.gamma_power if sigma > 0 else self.gamma
        if len(self.layers) == 1:
            return [_nnls(V, W1, l1[0], self.n_iter, None if codes is None else codes[0])]
        g = math.sqrt(gamma)
        k = len(self.layers)
        if codes is None:  # no previous codes: each layer coded on its own, top down
            h = [_nnls(V, W1, l1[0], self.n_iter, None)]
            for l in range(1, k):
                h.append(_nnls(h[l - 1], self.layers[l], l1[l] / gamma, self.n_iter, None))
        else:
            h = list(codes)
        for _ in range(self.n_outer):
            for l in range(k):
                h[l] = self._block(l, V, W1, h, l1[l], g)
        return h

    def _block(
        self, l: int, V: torch.Tensor, W1: torch.Tensor, h: list[torch.Tensor], l1: float, g: float
    ) -> torch.Tensor:
        """One block: layer l's codes with its neighbours' fixed (stacked least squares)."""
        k = len(self.layers)
        if l == 0:
            A, B = W1, V
        else:  # fit to the layer above: ½γ‖h_{l−1} − W_l h_l‖²
            A, B = g * self.layers[l], g * h[l - 1]
        if l + 1 < k:  # and be explained by the layer below: ½γ‖h_l − W_{l+1} h_{l+1}‖²
            eye = g * torch.eye(A.shape[1], dtype=A.dtype, device=A.device)
            A = torch.cat([A, eye], dim=0)
            B = torch.cat([B, g * (self.layers[l + 1] @ h[l + 1])], dim=0)
        return _nnls(B, A, l1, self.n_iter, h[l])
