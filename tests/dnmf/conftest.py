"""Fixtures of the dnmf tests (``device`` and ``faces_dir`` come from tests/conftest.py)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def planted(rng) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """An exact nonnegative V = W1 W2 H, 60 x 80 with ranks [12, 5]."""
    W1 = rng.random((60, 12))
    W2 = rng.random((12, 5))
    H = rng.random((5, 80))
    return W1 @ W2 @ H, [W1, W2], H


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    """Tiny problems: one thread. With the 2 cores shared, OpenMP/BLAS thread pools spin and
    make these 10x slower than single-threaded runs."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


def _sk_mu(X, W, H, beta, n_iter, l1_W=0.0, l1_H=0.0, l2_W=0.0, l2_H=0.0):
    from sklearn.decomposition._nmf import _fit_multiplicative_update

    params = inspect.signature(_fit_multiplicative_update).parameters
    assert {"X", "W", "H", "beta_loss", "max_iter", "tol"} <= set(params)  # the 1.9 signature
    W, H, n = _fit_multiplicative_update(
        X,
        W.copy(),
        H.copy(),
        beta_loss=beta,
        max_iter=n_iter,
        tol=0,
        l1_reg_W=l1_W,
        l1_reg_H=l1_H,
        l2_reg_W=l2_W,
        l2_reg_H=l2_H,
    )
    assert n == n_iter
    return W, H


@pytest.fixture
def sk_mu():
    """``sk_mu(X, W, H, beta, n_iter, l1_W=, l1_H=, l2_W=, l2_H=)``: scikit-learn's
    multiplicative updates from ``(W, H)`` for exactly ``n_iter`` iterations (copies in)."""
    return _sk_mu


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.fixture
def rel():
    """``rel(a, b)``: the largest absolute difference relative to the largest ``|b|``."""
    return _rel


# ---------------------------------------------------------------- deblurring tests (dnmf.deblur)
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


@pytest.fixture(scope="session")
def kit():
    """The deblurring tests' shared helpers: ``ConvBlur`` (zero-boundary blur) and
    ``ReflectBlur`` (reflect boundary, as the benchmark's), both with exact adjoints;
    ``synthetic`` (piecewise-constant colour images), ``quant`` (8 bits), ``psnr``."""
    from types import SimpleNamespace

    return SimpleNamespace(
        ConvBlur=_ConvBlur, ReflectBlur=_ReflectBlur, synthetic=_synthetic, quant=_quant,
        psnr=_psnr,
    )  # fmt: skip
