"""One layer with custom init and fixed iterations is scikit-learn's multiplicative update
(``solver='mu'``; the HALS counterpart, against scikit-learn's ``cd``, is in test_hals.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition._nmf import _beta_divergence

import dnmf


@pytest.mark.parametrize("beta", [2, 1, 0, 0.5, 1.5, 3])
def test_one_layer_matches_sklearn(rng, beta, sk_mu, rel):
    X = rng.random((30, 20)) + 0.1  # > 0 so that beta <= 0 is allowed
    W0, H0 = rng.random((30, 4)), rng.random((4, 20))
    Wsk, Hsk = sk_mu(X, W0, H0, beta, 60)
    res = dnmf.factorize(
        X, 4, beta=beta, init="custom", Ws=[W0], H=H0, max_iter=60, tol=0, solver="mu"
    )
    assert rel(res.Ws[0], Wsk) < 1e-5
    assert rel(res.H, Hsk) < 1e-5
    assert res.n_iter == 60 and res.converged is False
    np.testing.assert_allclose(res.loss, _beta_divergence(X, Wsk, Hsk, beta), rtol=1e-8)


@pytest.mark.parametrize("beta", [2, 1])
def test_one_layer_with_penalties_matches_sklearn(rng, beta, sk_mu, rel):
    X = rng.random((25, 15))
    W0, H0 = rng.random((25, 3)), rng.random((3, 15))
    Wsk, Hsk = sk_mu(X, W0, H0, beta, 40, l1_W=0.1, l1_H=0.2, l2_W=0.3, l2_H=0.05)
    res = dnmf.factorize(
        X,
        3,
        beta=beta,
        init="custom",
        Ws=[W0],
        H=H0,
        max_iter=40,
        tol=0,
        l1=[0.1, 0.2],
        l2=[0.3, 0.05],
        solver="mu",
    )
    assert rel(res.Ws[0], Wsk) < 1e-5
    assert rel(res.H, Hsk) < 1e-5


def test_float32_input_keeps_dtype_and_tracks_float64(rng, rel):
    X = rng.random((40, 30))
    W0, H0 = rng.random((40, 5)), rng.random((5, 30))
    kw = dict(init="custom", Ws=[W0], H=H0, max_iter=100, tol=0, solver="mu")
    r64 = dnmf.factorize(X, 5, **kw)
    r32 = dnmf.factorize(X.astype(np.float32), 5, **kw)
    assert r32.H.dtype == np.float32 and r32.Ws[0].dtype == np.float32
    assert r64.H.dtype == np.float64
    assert rel(r32.reconstruct(), r64.reconstruct()) < 1e-4
    np.testing.assert_allclose(r32.loss, r64.loss, rtol=1e-4)
