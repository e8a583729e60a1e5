"""Initial factors: NNDSVD variants agree with scikit-learn's, random ones have the data's scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition._nmf import _initialize_nmf

from dnmf._init import init_stack, nndsvd, random_init, top_svd


@pytest.mark.parametrize("variant", ["nndsvd", "nndsvda"])
def test_nndsvd_matches_sklearn(rng, variant):
    X = rng.random((25, 18))
    Wsk, Hsk = _initialize_nmf(X, 5, init=variant, random_state=0)
    W, H = nndsvd(torch.from_numpy(X), 5, variant, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(W.numpy(), Wsk, atol=1e-5)  # sklearn: randomized SVD
    np.testing.assert_allclose(H.numpy(), Hsk, atol=1e-5)


def test_nndsvdar_fills_zeros_with_small_noise(rng):
    X = rng.random((25, 18))
    W0, H0 = nndsvd(torch.from_numpy(X), 5, "nndsvd", torch.Generator().manual_seed(0))
    W, H = nndsvd(torch.from_numpy(X), 5, "nndsvdar", torch.Generator().manual_seed(0))
    zeros = W0 == 0
    assert zeros.any() and (W[zeros] > 0).all() and (W[zeros] < X.mean() / 10).all()
    np.testing.assert_array_equal(W[~zeros], W0[~zeros])


def test_randomized_svd_matches_exact(rng):
    # a decaying spectrum, as images have (a flat one is where randomized SVD is loose)
    X = torch.from_numpy(
        rng.random((400, 8)) @ rng.random((8, 300)) + 0.01 * rng.random((400, 300))
    )
    U, S, Vh = top_svd(X, 5, torch.Generator().manual_seed(0))
    S_exact = torch.linalg.svdvals(X)[:5]
    np.testing.assert_allclose(S.numpy(), S_exact.numpy(), rtol=1e-6)
    np.testing.assert_allclose((U.T @ X @ Vh.T).numpy(), np.diag(S.numpy()), atol=1e-6)


def test_random_init_scale_and_seed(rng):
    X = torch.from_numpy(rng.random((50, 40)) * 4)
    W, H = random_init(X, 6, torch.Generator().manual_seed(1))
    W2, _ = random_init(X, 6, torch.Generator().manual_seed(1))
    assert torch.equal(W, W2) and (W >= 0).all() and (H >= 0).all()
    assert 0.5 < float((W @ H).mean() / X.mean()) < 1.5


def test_batched_init_equals_per_matrix(rng):
    X = torch.from_numpy(rng.random((3, 20, 15)))
    Ws, H = init_stack(X, [6, 3], "nndsvda", torch.Generator().manual_seed(0))
    for b in range(3):
        Wb, Hb = init_stack(X[b], [6, 3], "nndsvda", torch.Generator().manual_seed(0))
        np.testing.assert_allclose(H[b].numpy(), Hb.numpy(), atol=1e-10)
        np.testing.assert_allclose(Ws[1][b].numpy(), Wb[1].numpy(), atol=1e-10)


@pytest.mark.parametrize("shape", [(30, 12), (12, 30), (4, 20, 9)])
def test_small_svd_matches_lapack(rng, shape):
    """The Gram route of small matrices gives LAPACK's leading triplets (up to sign), and
    orthonormal vectors even past the rank."""
    X = torch.from_numpy(rng.random(shape[:-1] + (3,)) @ rng.random((3, shape[-1])))
    X = X + 1e-3 * torch.from_numpy(rng.random(shape))
    U, S, Vh = top_svd(X, 5, torch.Generator().manual_seed(0))
    Ue, Se, Vhe = torch.linalg.svd(X, full_matrices=False)
    np.testing.assert_allclose(S.numpy(), Se[..., :5].numpy(), rtol=1e-8)
    signs = torch.sign((U * Ue[..., :5]).sum(dim=-2))
    np.testing.assert_allclose((U * signs.unsqueeze(-2)).numpy(), Ue[..., :5].numpy(), atol=1e-6)
    np.testing.assert_allclose(
        (Vh * signs.unsqueeze(-1)).numpy(), Vhe[..., :5, :].numpy(), atol=1e-6
    )
    eye = torch.eye(5, dtype=X.dtype).expand(*shape[:-2], 5, 5)
    np.testing.assert_allclose((Vh @ Vh.mT).numpy(), eye.numpy(), atol=1e-6)
