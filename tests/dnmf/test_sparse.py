"""Sparse input end to end: scipy and torch sparse matrices are fitted through sparse products,
never densified, and give the factors of the same dense matrix."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import dnmf
from dnmf._solvers.sparse import SparseMatrix

BETA2_SOLVERS = ["auto", "hals", "hals-acc", "hals-acc-e", "mu", "mu-acc"]


def _data(m=60, n=50, density=0.07, seed=0) -> np.ndarray:
    """A nonnegative matrix with about ``density`` of it nonzero. At most 10 % nonzero, so the
    dense path's block solvers take their products as CSR too and set the same inner budgets
    (the accelerated solvers' repetitions follow the cost of a product)."""
    rng = np.random.default_rng(seed)
    V = rng.random((m, n))
    V[rng.random((m, n)) >= density] = 0
    return V


def _assert_same(a, b, rtol=1e-8):
    """Every factor of ``b`` within ``rtol`` of ``a``'s largest entry, and the same losses."""
    for x, y in zip([*a.Ws, a.H], [*b.Ws, b.H]):
        x, y = (np.asarray(t.cpu() if isinstance(t, torch.Tensor) else t) for t in (x, y))
        assert x.shape == y.shape
        assert np.abs(x - y).max() <= rtol * np.abs(x).max()
    np.testing.assert_allclose(b.loss_history, a.loss_history, rtol=rtol)


def _fit(V, ranks, **kw):
    kw = dict(seed=0, max_iter=30, tol=0) | kw
    return dnmf.factorize(V, ranks, **kw)


# -- the same factors as the dense matrix ----------------------------------------------------
@pytest.mark.parametrize("ranks", [4, (6, 3)], ids=["one-layer", "deep"])
@pytest.mark.parametrize("solver", BETA2_SOLVERS)
def test_beta2_sparse_equals_dense(solver, ranks):
    V = _data()
    dense = _fit(V, ranks, solver=solver)
    sparse = _fit(sp.csr_matrix(V), ranks, solver=solver)
    _assert_same(dense, sparse)
    assert isinstance(sparse.H, np.ndarray) and sparse.loss < sparse.loss_history[0]


@pytest.mark.parametrize("ranks", [4, (6, 3)], ids=["one-layer", "deep"])
def test_kl_sparse_equals_dense(ranks):
    V = _data()
    dense = _fit(V, ranks, beta=1)
    sparse = _fit(sp.csr_matrix(V), ranks, beta="kullback-leibler")
    _assert_same(dense, sparse)
    assert sparse.beta == 1.0 and sparse.loss < sparse.loss_history[0]


@pytest.mark.parametrize("beta", [2, 1])
def test_deep_without_pretraining_and_random_init(beta):
    V = _data()
    for kw in (dict(pretrain=False), dict(init="random", pretrain=3)):
        _assert_same(
            _fit(V, (6, 3), beta=beta, **kw), _fit(sp.csc_matrix(V), (6, 3), beta=beta, **kw)
        )


def test_randomized_nndsvd_of_a_large_side():
    """Both sides above 256: NNDSVD takes the randomized SVD, through products with V only."""
    V = _data(300, 280, density=0.03)
    _assert_same(_fit(V, 3, max_iter=5), _fit(sp.coo_matrix(V), 3, max_iter=5))


def test_custom_start_and_penalties():
    V = _data()
    rng = np.random.default_rng(1)
    kw = dict(init="custom", Ws=[rng.random((60, 6)), rng.random((6, 3))], H=rng.random((3, 50)))
    kw |= dict(l1=[0.1, 0.0, 0.2], l2=0.05)
    for solver in ("hals", "mu"):
        _assert_same(
            _fit(V, (6, 3), solver=solver, **kw),
            _fit(sp.csr_matrix(V), (6, 3), solver=solver, **kw),
        )


def test_kl_loss_is_the_dense_divergence():
    """The KL loss from the nonzeros plus the closed-form sum of the model is the divergence of
    the dense model (the first recorded loss is that of the same starting factors)."""
    V = _data()
    res = _fit(sp.csr_matrix(V), 4, beta=1, max_iter=10)
    L = torch.from_numpy(res.Ws[0] @ res.H)
    want = float(dnmf.beta_divergence(torch.from_numpy(V), L, 1.0))
    np.testing.assert_allclose(res.loss, want, rtol=1e-10)


# -- what is accepted --------------------------------------------------------------------------
SCIPY_FORMATS = ["csr", "csc", "coo", "lil", "dok", "bsr", "dia"]


@pytest.mark.parametrize("fmt", SCIPY_FORMATS + ["csr_array"])
def test_every_scipy_format(fmt):
    V = _data(30, 24, density=0.1)
    S = sp.csr_array(V) if fmt == "csr_array" else sp.csr_matrix(V).asformat(fmt)
    ref = _fit(V, 3, max_iter=10)
    res = _fit(S, 3, max_iter=10)
    assert isinstance(res.H, np.ndarray)
    _assert_same(ref, res)


@pytest.mark.parametrize("layout", ["coo", "csr", "csc", "bsr"])
def test_every_torch_sparse_layout(layout):
    T = torch.from_numpy(_data(30, 24, density=0.1))
    S = {
        "coo": T.to_sparse,
        "csr": T.to_sparse_csr,
        "csc": T.to_sparse_csc,
        "bsr": lambda: T.to_sparse_bsr((2, 2)),
    }[layout]()
    ref = _fit(T, 3, max_iter=10)
    res = _fit(S, 3, max_iter=10)
    assert isinstance(res.H, torch.Tensor) and res.H.layout == torch.strided
    _assert_same(ref, res)


def test_duplicates_are_summed_and_explicit_zeros_ignored():
    rows, cols = np.array([0, 0, 2, 3, 3, 1]), np.array([1, 1, 0, 2, 2, 3])
    vals = np.array([1.0, 2.0, 0.5, 0.0, 0.0, 4.0])  # (0, 1) twice; (3, 2) an explicit zero
    S = sp.coo_matrix((vals, (rows, cols)), shape=(5, 4))
    dense = np.zeros((5, 4))
    np.add.at(dense, (rows, cols), vals)
    _assert_same(_fit(dense, 2, max_iter=10), _fit(S, 2, max_iter=10))
    T = torch.sparse_coo_tensor(np.stack([rows, cols]), vals, (5, 4), check_invariants=True)
    _assert_same(_fit(dense, 2, max_iter=10), _fit(T, 2, max_iter=10))


def test_dtypes():
    V = _data(30, 24, density=0.1)
    assert _fit(sp.csr_matrix(V.astype(np.float32)), 3, max_iter=5).H.dtype == np.float32
    counts = sp.csr_matrix((V * 10).astype(np.int64))
    assert _fit(counts, 3, max_iter=5).H.dtype == np.float64
    assert _fit(sp.csr_matrix(V), 3, max_iter=5, dtype="float32").H.dtype == np.float32


@pytest.mark.parametrize(
    "solver, beta", [("hals", 2), ("mu", 2), ("auto", 1)], ids=["hals", "mu", "kl"]
)
def test_solve_h(solver, beta):
    V = _data()
    W = _fit(V, 4, beta=beta).Ws[0]
    dense = dnmf.solve_h(V, W, solver=solver, beta=beta, max_iter=50, tol=0)
    for S in (sp.csr_matrix(V), torch.from_numpy(V).to_sparse()):
        got = dnmf.solve_h(S, W, solver=solver, beta=beta, max_iter=50, tol=0)
        H = got.H.numpy() if isinstance(got.H, torch.Tensor) else got.H
        assert np.abs(H - dense.H).max() <= 1e-8 * np.abs(dense.H).max()


@pytest.mark.parametrize("beta_loss", ["frobenius", "kullback-leibler"])
@pytest.mark.parametrize("n_components", [4, (6, 3)], ids=["one-layer", "deep"])
def test_estimator_fit_transform(beta_loss, n_components):
    """β = 2 with ``solver='hals'``: the default one-layer solver keeps the best extrapolated
    pair seen, and near convergence two pairs whose losses agree to rounding can trade places
    (the factors then differ by 1e-7 with the same loss, dense or sparse alike)."""
    X = _data(70, 40)
    kw = dict(beta_loss=beta_loss, random_state=0, max_iter=40, tol=0, transform_max_iter=60)
    kw |= dict(solver="hals" if beta_loss == "frobenius" else "auto")
    dense = dnmf.DeepNMF(n_components, **kw)
    sparse = dnmf.DeepNMF(n_components, **kw)
    codes_d = dense.fit_transform(X)
    codes_s = sparse.fit_transform(sp.csr_matrix(X))
    np.testing.assert_allclose(codes_s, codes_d, rtol=1e-8, atol=1e-10 * codes_d.max())
    np.testing.assert_allclose(sparse.components_, dense.components_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(sparse.reconstruction_err_, dense.reconstruction_err_, rtol=1e-10)
    new = _data(20, 40, seed=3)
    np.testing.assert_allclose(
        sparse.transform(sp.csc_matrix(new)), dense.transform(new), rtol=1e-8, atol=1e-12
    )


# -- what is refused ---------------------------------------------------------------------------
def test_refusals_name_the_parameter():
    V = sp.csr_matrix(_data())
    with pytest.raises(ValueError, match=r"mask= is not supported with a sparse V.*V\.toarray\(\)"):
        dnmf.factorize(V, 3, mask=np.ones(V.shape))
    with pytest.raises(ValueError, match=r"mask= is not supported with a sparse V"):
        dnmf.solve_h(V, np.ones((60, 3)), mask=np.ones(V.shape))
    for beta in (0.5, 0, "itakura-saito", 3):
        with pytest.raises(ValueError, match=r"beta=\S+ is not supported with a sparse V"):
            dnmf.factorize(V, 3, beta=beta)
    with pytest.raises(ValueError, match=r"beta=0.5 is not supported with a sparse V"):
        dnmf.solve_h(V, np.ones((60, 3)), beta=0.5)
    with pytest.raises(ValueError, match=r"solver='hals' solves beta=2, got beta=1"):
        dnmf.factorize(V, 3, beta=1, solver="hals")
    batch = torch.from_numpy(np.stack([_data(), _data(seed=1)])).to_sparse()
    with pytest.raises(ValueError, match=r"sparse input must be one 2-D matrix .*to_dense\(\)"):
        dnmf.factorize(batch, 3)


def test_rank_search_refusals_come_before_the_search(monkeypatch):
    fz = sys.modules["dnmf.factorize"]  # the module (the package's name is the function)

    def search(*args, **kwargs):  # the dense search must not start
        raise AssertionError("the rank search ran")

    monkeypatch.setattr(fz, "auto_ranks", search)
    V = sp.csr_matrix(_data())
    with pytest.raises(ValueError, match=r"mask= is not supported with a sparse V"):
        dnmf.factorize(V, "auto", mask=np.ones(V.shape))
    with pytest.raises(ValueError, match=r"beta=0.5 is not supported with a sparse V"):
        dnmf.factorize(V, "auto", beta=0.5)


def test_estimator_refusals_name_the_parameter():
    X = sp.csr_matrix(_data(70, 40))
    with pytest.raises(ValueError, match=r"beta_loss=0.5 is not supported with a sparse X"):
        dnmf.DeepNMF(3, beta_loss=0.5).fit(X)
    est = dnmf.DeepNMF(3, random_state=0, max_iter=10, tol=0).fit(X)
    with pytest.raises(ValueError, match=r"transform\(X, mask=\) is not supported with a sparse X"):
        est.transform(X, mask=np.ones(X.shape))


def test_bad_values_are_refused():
    V = _data()
    V[3, 4] = -1.0
    with pytest.raises(ValueError, match=r"V must be nonnegative: found 1 negative entries"):
        dnmf.factorize(sp.csr_matrix(V), 3)
    V[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"V contains NaN or infinity"):
        dnmf.factorize(torch.from_numpy(V).to_sparse(), 3)
    with pytest.raises(ValueError, match=r"V is empty"):
        dnmf.factorize(sp.csr_matrix((0, 5)), 1)


# -- nothing m × n is allocated ----------------------------------------------------------------
PROBE = textwrap.dedent(
    """
    import resource, time
    import numpy as np, scipy.sparse as sp, torch
    import dnmf

    torch.set_num_threads(1)
    limit = 4 << 30  # address space: a dense 100000 x 100000 float64 would be 80 GB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        torch.empty(100_000 * 100_000, dtype=torch.float64)
        print("the limit does not hold")
    except RuntimeError:
        pass
    rng = np.random.default_rng(0)
    m = n = 100_000
    nnz = 3000
    V = sp.coo_matrix(
        (rng.random(nnz) + 0.1, (rng.integers(0, m, nnz), rng.integers(0, n, nnz))), shape=(m, n)
    )
    t = time.perf_counter()
    for beta, ranks in ((2, 2), (2, (3, 2)), (1, 2)):
        res = dnmf.factorize(V, ranks, beta=beta, max_iter=3, tol=0, pretrain=2, seed=0)
        assert res.H.shape == (res.ranks[-1], n) and np.isfinite(res.loss)
    est = dnmf.DeepNMF(2, max_iter=3, tol=0, transform_max_iter=3, random_state=0).fit(V)
    assert est.transform(V.tocsr()[:10]).shape == (10, 2)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("ok", round(time.perf_counter() - t, 1), peak_kib)
    """
)


def test_memory_probe_nothing_m_by_n_is_allocated():
    """A 100000 x 100000 matrix with 3000 nonzeros (dense: 80 GB) fits under a 4 GiB address
    space limit in seconds: one layer and two for β = 2, one for β = 1, and the estimator."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok"), out.stdout + out.stderr[-3000:]
    _, seconds, peak_kib = out.stdout.split()
    assert int(peak_kib) < 2 << 20  # peak resident memory under 2 GiB


# -- CUDA ------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("beta, solver", [(2, "auto"), (2, "mu"), (1, "mu")])
def test_cuda_sparse_equals_cpu_dense(beta, solver):
    V = _data()
    cpu = _fit(V, (6, 3), beta=beta, solver=solver)
    for S in (sp.csr_matrix(V), torch.from_numpy(V).to_sparse_csr().cuda()):
        gpu = _fit(S, (6, 3), beta=beta, solver=solver, device="cuda")
        assert str(gpu.H.device if isinstance(gpu.H, torch.Tensor) else "cuda").startswith("cuda")
        _assert_same(cpu, gpu, rtol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_memory_probe():
    """200000 x 200000 with 5000 nonzeros (dense float64: 320 GB) in well under 1 GiB of GPU
    memory."""
    rng = np.random.default_rng(0)
    m = n = 200_000
    nnz = 5000
    idx = torch.from_numpy(np.stack([rng.integers(0, m, nnz), rng.integers(0, n, nnz)]))
    V = torch.sparse_coo_tensor(idx, torch.from_numpy(rng.random(nnz) + 0.1), (m, n)).cuda()
    torch.cuda.reset_peak_memory_stats()
    for beta in (2, 1):
        res = dnmf.factorize(V, 2, beta=beta, max_iter=3, tol=0, seed=0)
        assert res.H.is_cuda and bool(torch.isfinite(res.H).all())
    assert torch.cuda.max_memory_allocated() < 1 << 30


def test_sparse_matrix_products_match_dense():
    """The operations the initialisation takes of a sparse V, against the dense matrix."""
    V = _data(40, 30, density=0.2)
    S = SparseMatrix.from_coo(
        *(torch.from_numpy(a.astype(np.int64)) for a in np.nonzero(V)),
        torch.from_numpy(V[np.nonzero(V)]),
        V.shape,
    )
    T = torch.from_numpy(V)
    X = torch.rand(30, 5, dtype=torch.float64)
    Y = torch.rand(5, 40, dtype=torch.float64)
    torch.testing.assert_close(S @ X, T @ X)
    torch.testing.assert_close(Y @ S, Y @ T)
    torch.testing.assert_close(S.mT @ Y.mT, T.mT @ Y.mT)
    torch.testing.assert_close(S @ S.mT, T @ T.mT)
    torch.testing.assert_close(S.mT @ S, T.mT @ T)
    torch.testing.assert_close(
        S.mean(dim=(-2, -1), keepdim=True), T.mean(dim=(-2, -1), keepdim=True)
    )
    L, R = torch.rand(40, 3, dtype=torch.float64), torch.rand(3, 30, dtype=torch.float64)
    rows, cols = np.nonzero(V)
    torch.testing.assert_close(S.sample(L, R), (L @ R)[rows, cols])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "sparse CSR support is in beta" warning escapes
        S.to(dtype=torch.float32).with_values(torch.ones(S.nnz, dtype=torch.float32))
