"""Fixtures of the dnmf tests (``device`` and ``faces_dir`` come from tests/conftest.py)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from tests.dnmf.deblur_kit import make_kit


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
@pytest.fixture(scope="session")
def kit():
    """The deblurring tests' shared helpers (`tests.dnmf.deblur_kit`): ``ConvBlur``
    (zero-boundary blur) and ``ReflectBlur`` (reflect boundary, as the benchmark's), both with
    exact adjoints; ``synthetic`` (piecewise-constant colour images), ``quant`` (8 bits),
    ``psnr``."""
    return make_kit()
