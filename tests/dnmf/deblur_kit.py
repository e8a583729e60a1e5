"""The deblurring tests' shared helpers (the ``kit`` fixture of tests/dnmf and tests/experiments).

``ConvBlur`` (zero-boundary blur) and ``ReflectBlur`` (reflect boundary, as the benchmark's),
both with exact adjoints; ``synthetic`` (piecewise-constant colour images), ``quant`` (8 bits),
``psnr``.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F


class _ConvBlur:
    """Zero-boundary Gaussian blur by conv2d, with the exact adjoint (conv_transpose2d)."""

    def __init__(self, sigma=1.2, size=7):
        x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        g = torch.exp(-0.5 * (x / sigma) ** 2)
        k = torch.outer(g, g)
        self.k = (k / k.sum())[None, None]
        self.p = size // 2

    def _w(self, x):
        return self.k.to(x).expand(x.shape[1], 1, *self.k.shape[-2:])

    def A(self, x):
        return F.conv2d(x, self._w(x), padding=self.p, groups=x.shape[1])

    def A_adjoint(self, y):
        return F.conv_transpose2d(y, self._w(y), padding=self.p, groups=y.shape[1])


def _synthetic(n, size=24, seed=0):
    """Piecewise-constant colour images (rectangles on a background) in [0.1, 0.9]."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        img = torch.rand(3, 1, 1, generator=g) * 0.4 + 0.1 + torch.zeros(3, size, size)
        for _ in range(4):
            y0, x0 = torch.randint(0, size - 6, (2,), generator=g).tolist()
            h, w = torch.randint(4, 12, (2,), generator=g).tolist()
            img[:, y0 : y0 + h, x0 : x0 + w] = torch.rand(3, 1, 1, generator=g) * 0.8 + 0.1
        out[i] = img
    return out


def _quant(x):
    return (x.clamp(0, 1) * 255).round() / 255


def _psnr(a, b):
    return float((10 * torch.log10(1 / ((a.clamp(0, 1) - b) ** 2).mean(dim=(1, 2, 3)))).mean())


class _ReflectBlur:
    """Gaussian blur with reflect boundary (edge not repeated) and its exact adjoint (autograd)."""

    def __init__(self, sigma=1.2, size=7):
        x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        g = torch.exp(-0.5 * (x / sigma) ** 2)
        self.k = (torch.outer(g, g) / torch.outer(g, g).sum())[None, None]
        self.p = size // 2

    def A(self, x):
        xp = F.pad(x, (self.p,) * 4, mode="reflect")
        return F.conv2d(xp, self.k.to(x).expand(x.shape[1], 1, -1, -1), groups=x.shape[1])

    def A_adjoint(self, y):
        x = torch.zeros_like(y, requires_grad=True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad((self.A(x) * y).sum(), x)
        return g


def make_kit() -> SimpleNamespace:
    """The helpers above as one namespace (what the ``kit`` fixtures return)."""
    return SimpleNamespace(
        ConvBlur=_ConvBlur, ReflectBlur=_ReflectBlur, synthetic=_synthetic, quant=_quant,
        psnr=_psnr,
    )  # fmt: skip
