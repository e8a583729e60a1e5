"""Fixtures of the dnmf tests (``device`` and ``faces_dir`` come from tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest


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
