"""Patch extraction and overlap-add assembly as linear torch ops with explicit adjoints.

A `PatchGrid` covers an ``H × W`` image with ``size × size`` patches every ``stride``
pixels. When ``(H - size)`` is not a multiple of the stride the image is padded (evenly, top
and bottom / left and right) just enough for the grid to cover it; patch pixels that fall
into the padding are dropped on assembly.

Patches are returned as ``(N, C·size·size, L)`` tensors (one patch per **column**, the
layout of `torch.nn.functional.unfold` and of ``dnmf``'s ``V``).

* `PatchGrid.fold_sum` (overlap-add) and `PatchGrid.extract` with ``mode="zeros"``
  are exact adjoints of each other.
* `PatchGrid.assemble` averages overlapping patches (``fold_sum`` divided by the number
  of patches covering each pixel); `PatchGrid.assemble_adjoint` is its exact adjoint.
* ``extract(x, context=c, mode="reflect")`` takes ``(size + 2c)``-pixel patches centred on the
  grid's patches (a larger context window), reflect-padded at the image border. Reflect mode
  is for feature extraction only (no adjoint is provided for it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["PatchGrid"]


def _pad_for(n: int, size: int, stride: int) -> tuple[int, int]:
    if n < size:
        total = size - n
    else:
        total = (-(n - size)) % stride
    return total // 2, total - total // 2


class PatchGrid:
    """The patch grid of an ``height × width`` image: ``size``-pixel patches every ``stride``."""

    def __init__(self, height: int, width: int, size: int, stride: int) -> None:
        for name, v in (("height", height), ("width", width), ("size", size), ("stride", stride)):
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if stride > size:
            raise ValueError(
                f"stride ({stride}) must not exceed the patch size ({size}): "
                "the patches would not cover the image"
            )
        self.height, self.width, self.size, self.stride = (
            int(height),
            int(width),
            int(size),
            int(stride),
        )
        self.pad_h = _pad_for(self.height, self.size, self.stride)
        self.pad_w = _pad_for(self.width, self.size, self.stride)
        self.padded = (self.height + sum(self.pad_h), self.width + sum(self.pad_w))
        self.n_h = (self.padded[0] - self.size) // self.stride + 1
        self.n_w = (self.padded[1] - self.size) // self.stride + 1

    @property
    def n_patches(self) -> int:
        return self.n_h * self.n_w

    def __repr__(self) -> str:
        return (
            f"PatchGrid({self.height}x{self.width}, size={self.size}, stride={self.stride}, "
            f"patches={self.n_h}x{self.n_w})"
        )

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[-2:]) != (self.height, self.width):
            raise ValueError(f"expected (N, C, {self.height}, {self.width}), got {tuple(x.shape)}")

    # ------------------------------------------------------------------ extraction
    def extract(self, x: torch.Tensor, *, context: int = 0, mode: str = "zeros") -> torch.Tensor:
        """Patches of ``x`` (N, C, H, W) as ``(N, C·k·k, L)`` with ``k = size + 2·context``.

        ``mode`` is how the image is extended beyond its border: ``"zeros"`` (the exact
        adjoint of `fold_sum`) or ``"reflect"`` (numpy/torch reflect, for features).
        """
        self._check(x)
        if mode not in ("zeros", "reflect"):
            raise ValueError(f"mode must be 'zeros' or 'reflect', got {mode!r}")
        c = int(context)
        if c < 0:
            raise ValueError(f"context must be >= 0, got {context!r}")
        pad = (self.pad_w[0] + c, self.pad_w[1] + c, self.pad_h[0] + c, self.pad_h[1] + c)
        if any(pad):
            if mode == "reflect":
                xp = _reflect_pad(x, pad)
            else:
                xp = F.pad(x, pad)
        else:
            xp = x
        return F.unfold(xp, kernel_size=self.size + 2 * c, stride=self.stride)

    # ------------------------------------------------------------------ assembly
    def fold_sum(self, patches: torch.Tensor) -> torch.Tensor:
        """Overlap-add ``(N, C·size², L)`` patches into ``(N, C, H, W)`` (adjoint of extract)."""
        if (
            patches.ndim != 3
            or patches.shape[-1] != self.n_patches
            or patches.shape[1] % (self.size**2)
        ):
            raise ValueError(
                f"expected (N, C*{self.size}**2, {self.n_patches}) patches, "
                f"got {tuple(patches.shape)}"
            )
        out = F.fold(patches, output_size=self.padded, kernel_size=self.size, stride=self.stride)
        t, l = self.pad_h[0], self.pad_w[0]
        return out[..., t : t + self.height, l : l + self.width]

    def counts(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """How many patches cover each pixel, ``(1, 1, H, W)``."""
        key = (str(device), dtype)
        cache = self.__dict__.setdefault("_counts", {})
        if key not in cache:
            ones = torch.ones(1, self.size**2, self.n_patches, device=device, dtype=dtype)
            cache[key] = self.fold_sum(ones)
        return cache[key]

    def assemble(self, patches: torch.Tensor) -> torch.Tensor:
        """Average overlapping patches into an image (a nonnegative linear map)."""
        return self.fold_sum(patches) / self.counts(patches.device, patches.dtype)

    def assemble_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Exact adjoint of `assemble`: ⟨assemble(p), y⟩ = ⟨p, assemble_adjoint(y)⟩."""
        return self.extract(y / self.counts(y.device, y.dtype), mode="zeros")


def _reflect_pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflect padding that also works when the pad exceeds the image (reflects repeatedly)."""
    l, r, t, b = pad
    h, w = x.shape[-2:]
    iy = _reflect_index(h, t, b, x.device)
    ix = _reflect_index(w, l, r, x.device)
    return x.index_select(-2, iy).index_select(-1, ix)


def _reflect_index(n: int, lo: int, hi: int, device) -> torch.Tensor:
    idx = torch.arange(-lo, n + hi, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx > n - 1, period - idx, idx)
