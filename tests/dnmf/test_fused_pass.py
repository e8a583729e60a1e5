"""The fused first-layer pass (β = 2, CPU): one pass over blocks of rows of V gives the same
factors as the two whole products it replaces, and it is used exactly where it is valid."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dnmf._solvers import mu as _mu
from dnmf._solvers.frobenius import FrobeniusSolver
from dnmf._solvers.loss import EPSILON, Penalties

#: Blocks of 7 rows for a float64 V with 20 columns (7 does not divide the row counts).
SMALL_BLOCKS = 7 * 20 * 8


@pytest.fixture
def small_blocks() -> int:
    return SMALL_BLOCKS


def _fit(V, Ws, H, *, max_iter, l1=0.0, l2=0.0, fused_block_bytes=_mu.FUSED_BLOCK_BYTES):
    """A fit from custom factors (what ``dnmf.factorize(init='custom')`` runs), numpy out."""
    Ws = [torch.tensor(W) for W in Ws]
    H = torch.tensor(H)
    n = len(Ws) + 1
    out = _mu.run_mu(
        torch.as_tensor(V),
        Ws,
        H,
        max_iter=max_iter,
        tol=0,
        penalties=Penalties([l1] * n, [l2] * n),
        fused_block_bytes=fused_block_bytes,
    )
    return SimpleNamespace(Ws=[W.numpy() for W in Ws], H=H.numpy(), loss_history=out.loss_history)


def _solver(V, ranks, **kw):
    V = torch.as_tensor(V)
    Ws = [torch.rand(a, b, dtype=V.dtype) for a, b in zip([V.shape[-2], *ranks[:-1]], ranks)]
    H = torch.rand(*V.shape[:-2], ranks[-1], V.shape[-1], dtype=V.dtype)
    if V.ndim == 3:
        Ws = [W.expand(V.shape[0], -1, -1).contiguous() for W in Ws]
    return FrobeniusSolver(
        V, Ws, H, Penalties.none(len(ranks) + 1), [True] * (len(ranks) + 1), EPSILON, **kw
    )


def test_used_only_where_valid(rng, small_blocks):
    V = rng.random((50, 20))
    kw = dict(fused_block_bytes=small_blocks)
    assert _solver(V, [4], **kw).fused_rows == 7
    assert _solver(V, [3, 5], **kw).fused_rows == 7  # r1 <= rk: W1ᵀV is the cheap product
    assert _solver(V, [5, 3], **kw).fused_rows == 0  # r1 > rk: (W1…Wk)ᵀ V is cheaper
    assert _solver(np.asfortranarray(V), [4], **kw).fused_rows == 0  # rows are not slabs
    assert _solver(rng.random((2, 50, 20)), [4], **kw).fused_rows == 0  # batches keep bmm
    assert _solver(V, [4], reduce=lambda t: t, **kw).fused_rows == 0  # shards sum V Hᵀ first
    assert _solver(V[:6], [4], **kw).fused_rows == 0  # a single block: nothing to fuse


def test_default_block_leaves_small_matrices_alone(rng):
    assert _solver(rng.random((50, 20)), [4]).fused_rows == 0


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the fused passes that run."""
    calls = []
    real = FrobeniusSolver._fused_first_layer

    def spy(self, *args):
        calls.append(1)
        return real(self, *args)

    monkeypatch.setattr(FrobeniusSolver, "_fused_first_layer", spy)
    return calls


@pytest.mark.parametrize("ranks", [[4], [3, 5], [2, 3, 4]])
def test_same_factors_as_two_whole_products(rng, fused_calls, ranks, rel):
    V = rng.random((50, 20))
    Ws = [rng.random((a, b)) for a, b in zip([50, *ranks[:-1]], ranks)]
    H = rng.random((ranks[-1], 20))
    whole = _fit(V, Ws, H, max_iter=40, l1=0.01, l2=0.02)
    assert not fused_calls
    fused = _fit(V, Ws, H, max_iter=40, l1=0.01, l2=0.02, fused_block_bytes=SMALL_BLOCKS)
    assert len(fused_calls) == 40
    for a, b in zip([*fused.Ws, fused.H], [*whole.Ws, whole.H]):
        assert rel(a, b) < 1e-10
    np.testing.assert_allclose(fused.loss_history, whole.loss_history, rtol=1e-10)
    assert np.all(np.diff(fused.loss_history) <= 1e-12 * fused.loss_history[0])


def test_one_layer_still_matches_sklearn(rng, small_blocks, fused_calls, sk_mu, rel):
    X = rng.random((50, 20))
    W0, H0 = rng.random((50, 4)), rng.random((4, 20))
    Wsk, Hsk = sk_mu(X, W0, H0, 2, 60)
    res = _fit(X, [W0], H0, max_iter=60, fused_block_bytes=small_blocks)
    assert len(fused_calls) == 60
    assert rel(res.Ws[0], Wsk) < 1e-5 and rel(res.H, Hsk) < 1e-5


def test_frozen_h_takes_the_plain_path(rng, small_blocks, fused_calls, sk_mu, rel):
    """With H fixed the pass would compute W1ᵀV for nothing: the plain W step runs instead."""
    X = rng.random((50, 20))
    W0, H0 = rng.random((50, 4)), rng.random((4, 20))
    Wsk, _ = sk_mu(X, W0, H0, 2, 1)  # scikit-learn's first W step uses H0
    W, H = torch.as_tensor(W0.copy()), torch.as_tensor(H0.copy())
    _mu.run_mu(
        torch.as_tensor(X),
        [W],
        H,
        update=[True, False],
        max_iter=1,
        tol=0,
        fused_block_bytes=small_blocks,
    )
    assert not fused_calls
    assert torch.equal(H, torch.as_tensor(H0))
    assert rel(W.numpy(), Wsk) < 1e-10
