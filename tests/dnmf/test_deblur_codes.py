"""Nonnegative codes through dnmf.solve_h: HALS reaches the NNLS optimum, batches match columns."""

import numpy as np
import pytest
import torch

from dnmf.deblur.codes import nonneg_codes


def test_hals_coder_reaches_the_nnls_optimum():
    """HALS sweeps solve min_{H>=0} ||V - W H|| (scipy's NNLS per column), far faster than MU."""
    from scipy.optimize import nnls

    g = torch.Generator().manual_seed(3)
    W = torch.rand(30, 12, generator=g, dtype=torch.float64)
    V = torch.rand(30, 7, generator=g, dtype=torch.float64)
    ref = np.stack([nnls(W.numpy(), V[:, j].numpy())[0] for j in range(V.shape[1])], 1)
    H = nonneg_codes(V, W, n_iter=200)
    assert (H >= 0).all()
    assert np.abs(H.numpy() - ref).max() < 1e-6
    # batched (N, m, L) input gives the same codes as column-by-column
    Vb = torch.stack([V[:, :4], V[:, 3:]])
    Hb = nonneg_codes(Vb, W, n_iter=200)
    assert torch.allclose(Hb[0], H[:, :4], atol=1e-6) and torch.allclose(Hb[1], H[:, 3:], atol=1e-6)

    # at an equal small budget HALS is closer to the optimum than MU
    def err(Hx):
        return float((V - W @ Hx).square().sum())

    best = float(((V.numpy() - W.numpy() @ ref) ** 2).sum())
    assert (
        err(nonneg_codes(V, W, n_iter=10)) - best
        < err(nonneg_codes(V, W, n_iter=10, coder="mu")) - best
    )


def test_hals_l1_matches_penalised_optimum():
    """With l1, HALS decreases ½||V - WH||² + l1·ΣH below what MU reaches at the same budget."""
    g = torch.Generator().manual_seed(4)
    W = torch.rand(20, 8, generator=g, dtype=torch.float64)
    V = torch.rand(20, 5, generator=g, dtype=torch.float64)

    def obj(H):
        return float(0.5 * (V - W @ H).square().sum() + 0.3 * H.sum())

    Hh = nonneg_codes(V, W, n_iter=100, l1=0.3)
    Hm = nonneg_codes(V, W, n_iter=2000, l1=0.3, coder="mu")
    assert (Hh >= 0).all() and obj(Hh) <= obj(Hm) + 1e-9


def test_bad_coder():
    with pytest.raises(ValueError, match="coder"):
        nonneg_codes(torch.rand(4, 3), torch.rand(4, 2), n_iter=1, coder="pg")
