"""Image denoisers built from a patch prior: every overlapping patch, mean removed, averaged back.

A patch prior only has to map a matrix of noisy, mean-removed patches ``(d, n)`` (one patch
per column) and a noise level to its estimate of the clean patches; `PatchDenoiser`
does the rest, the same way for every prior (EPLL's Gaussian mixture, the Deep NMF codes):

1. ``colour="opponent"`` rotates RGB into an orthonormal luminance / opponent basis and
   treats each of the three channels as a grey image (white noise stays white with the same
   σ; one grey prior serves all three); ``colour="rgb"`` keeps joint ``C·s²`` patches.
2. Patches every ``stride`` pixels (`dnmf.deblur.patches.PatchGrid`); ``stride=1`` is
   every overlapping patch, as EPLL does.
3. ``remove_mean``: each patch's mean (per channel) is taken out before the prior and put back
   after, unpenalised — the prior models the patch's structure, not its brightness.
4. The estimates of overlapping patches are averaged into the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .patches import PatchGrid

__all__ = ["OPPONENT", "to_opponent", "from_opponent", "PatchDenoiser", "patch_columns"]

#: orthonormal RGB → (luminance, red−blue, red+blue−2·green) rotation
OPPONENT = torch.tensor(
    [
        [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
        [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
        [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],
    ],
    dtype=torch.float64,
)

#: ``prior(patches (d, n), sigma) -> clean patches (d, n)``
PatchPrior = Callable[[torch.Tensor, float], torch.Tensor]


def to_opponent(x: torch.Tensor) -> torch.Tensor:
    """RGB ``(N, 3, H, W)`` to the orthonormal opponent basis (grey images pass unchanged)."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"colour='opponent' needs 1 or 3 channels, got {x.shape[1]}")
    return torch.einsum("ij,njhw->nihw", OPPONENT.to(x), x)


def from_opponent(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `to_opponent` (the rotation's transpose)."""
    if x.shape[1] == 1:
        return x
    return torch.einsum("ji,njhw->nihw", OPPONENT.to(x), x)


def _check_colour(colour: str) -> None:
    if colour not in ("rgb", "opponent"):
        raise ValueError(f"colour must be 'rgb' or 'opponent', got {colour!r}")


def patch_columns(x: torch.Tensor, grid: PatchGrid, colour: str) -> torch.Tensor:
    """Patches of ``x`` as columns ``(d, n)``: ``d = C·s²`` (rgb) or ``s²`` (opponent)."""
    _check_colour(colour)
    if colour == "opponent":
        x = to_opponent(x)
        x = x.reshape(-1, 1, *x.shape[-2:])
    P = grid.extract(x, mode="reflect")  # (B, d, L)
    return P.permute(1, 0, 2).reshape(P.shape[1], -1)


class PatchDenoiser:
    """``denoise(x, sigma)`` for image batches from a patch prior (see the module docstring).

    Parameters
    ----------
    prior : ``prior(patches, sigma) -> patches``, on mean-removed columns ``(d, n)``.
    size : patch side in pixels.
    stride : patch grid step (1: every overlapping patch).
    colour : ``"opponent"`` (grey patches of the three rotated channels) or ``"rgb"``.
    remove_mean : take every patch's mean out before the prior and put it back after.
    batch : images denoised together (bounds the memory of the patch matrix).
    """

    def __init__(
        self,
        prior: PatchPrior,
        *,
        size: int,
        stride: int = 1,
        colour: str = "opponent",
        remove_mean: bool = True,
        batch: int = 8,
    ) -> None:
        _check_colour(colour)
        self.prior, self.size, self.stride = prior, int(size), int(stride)
        self.colour, self.remove_mean, self.batch = colour, bool(remove_mean), int(batch)

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return torch.cat([self._one(xb, sigma) for xb in x.split(self.batch)])

    def _one(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        n, c, h, w = x.shape
        grid = PatchGrid(h, w, self.size, self.stride)
        P = patch_columns(x, grid, self.colour)  # (d, B·L)
        d = P.shape[0]
        if self.remove_mean:
            s2 = self.size**2
            Pc = P.reshape(d // s2, s2, -1)
            mean = Pc.mean(dim=1, keepdim=True)
            Q = self.prior((Pc - mean).reshape(d, -1), sigma)
            P = (Q.reshape(d // s2, s2, -1) + mean).reshape(d, -1)
        else:
            P = self.prior(P, sigma)
        P = P.reshape(d, -1, grid.n_patches).permute(1, 0, 2)  # (B, d, L)
        if self.colour == "opponent" and c == 3:
            return from_opponent(grid.assemble(P).reshape(n, c, h, w))
        return grid.assemble(P).reshape(n, c, h, w)
