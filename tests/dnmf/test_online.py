"""`dnmf.MiniBatchDeepNMF`: the online update against a hand-written numpy reference, the
fits it reaches, streaming inputs (memory-mapped, sparse, chunks), bad input, CUDA, and the
scikit-learn estimator protocol."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.decomposition import MiniBatchNMF
from sklearn.decomposition._nmf import _multiplicative_update_h
from sklearn.exceptions import NotFittedError

import dnmf

EPS32 = float(np.finfo(np.float32).eps)  # dnmf.EPSILON, the floor of Λ
EPS64 = float(np.finfo(np.float64).eps)
#: The documented dictionary update of β = 2: at most this many passes per minibatch, ending
#: after the first pass that changes W1…Wk by at most DELTA times the first pass's change.
PASSES, DELTA = 10, 0.1
EXACT = dict(tol=0, max_no_improvement=None)  # every step and every code iteration runs


# ---------------------------------------------------------------- the numpy reference
def _prod(Ws):
    P = Ws[0]
    for W in Ws[1:]:
        P = P @ W
    return P


def _start_codes(V, P):
    """`dnmf.solve_h`'s constant start: W…H has the data's mean."""
    return np.full((P.shape[1], V.shape[1]), V.mean() / P.sum(axis=1).mean())


def _codes_hals(V, P, iters):
    H, G, C = _start_codes(V, P), P.T @ P, P.T @ V
    for _ in range(iters):
        for t in range(H.shape[0]):
            H[t] = np.maximum(H[t] + (C[t] - G[t] @ H) / G[t, t], 0.0)
    return H


def _codes_mu(V, P, iters, beta):
    H = _start_codes(V, P)
    for _ in range(iters):
        if beta == 2:
            H *= (P.T @ V) / (P.T @ P @ H)
        else:
            H *= (P.T @ (V / np.maximum(P @ H, EPS32))) / P.sum(axis=0)[:, None]
            H[H < EPS64] = 0.0
    return H


def _hals_rows(X, G, C):
    """One HALS pass over the rows of X against ½⟨G, X Xᵀ⟩ − ⟨C, X⟩."""
    X = X.copy()
    for t in range(X.shape[0]):
        X[t] = np.maximum(X[t] + (C[t] - G[t] @ X) / G[t, t], 0.0)
    return X


def _cd_entries(W, Q, R, B):
    """One pass of exact coordinate descent over W's entries (column by column) against
    ½⟨Q W R, W⟩ − ⟨B, W⟩."""
    W = W.copy()
    for j in range(W.shape[1]):
        for i in range(W.shape[0]):
            g = (Q @ W @ R)[i, j] - B[i, j]
            W[i, j] = max(0.0, W[i, j] - g / (Q[i, i] * R[j, j]))
    return W


def _frobenius_pass(Ws, A, B, rule):
    """One pass over the layers on ½ tr(Pᵀ P A) − tr(Pᵀ B), one or two layers."""
    if len(Ws) == 1:
        (W1,) = Ws
        if rule == "hals":
            return [_hals_rows(W1.T, A, B.T).T]
        return [W1 * B / (W1 @ A)]
    W1, W2 = Ws
    R1, C = W2 @ A @ W2.T, W2 @ B.T
    W1 = _hals_rows(W1.T, R1, C).T if rule == "hals" else W1 * C.T / (W1 @ R1)
    Q, B2 = W1.T @ W1, W1.T @ B
    W2 = _cd_entries(W2, Q, A, B2) if rule == "hals" else W2 * B2 / (Q @ W2 @ A)
    return [W1, W2]


def _frobenius_step(Ws, stats, Xc, rho, rule, code_iter):
    """One online step of β = 2 on the rows Xc: codes, A ← ρA + HHᵀ, B ← ρB + VHᵀ, passes."""
    V = Xc.T
    P = _prod(Ws)
    H = _codes_hals(V, P, code_iter) if rule == "hals" else _codes_mu(V, P, code_iter, 2)
    A, B = stats
    A, B = rho * A + H @ H.T, rho * B + V @ H.T
    first = None
    for _ in range(PASSES):
        before = _prod(Ws)
        Ws = _frobenius_pass(Ws, A, B, rule)
        change = ((_prod(Ws) - before) ** 2).sum()
        if first is None:
            first = change
        elif change <= DELTA**2 * first:
            break
    return Ws, (A, B)


def _kl_step(W, stats, Xc, rho, code_iter):
    """One online step of β = 1, one layer: scikit-learn's component update, transposed."""
    V = Xc.T
    H = _codes_mu(V, W, code_iter, 1)
    A, B = stats
    rs = H.sum(axis=1)
    rs[rs == 0] = 1.0
    A = rho * A + ((V / np.maximum(W @ H, EPS32)) @ H.T) * W
    B = rho * B + np.ones((W.shape[0], 1)) * rs[None, :]
    W = A / B
    W[W < EPS64] = 0.0
    return W, (A, B), H


@pytest.fixture
def data():
    """Rows of a nonnegative rank-4 matrix plus noise: 90 samples x 12 features."""
    rng = np.random.default_rng(0)
    L = rng.random((90, 4)) @ rng.random((4, 12))
    return L + 0.05 * L.mean() * rng.random(L.shape)


def _start_factors(ranks, m, seed=1):
    rng = np.random.default_rng(seed)
    dims = [m, *ranks]
    return [rng.random((dims[l], dims[l + 1])) + 0.1 for l in range(len(ranks))]


# ---------------------------------------------------------------- the online update
@pytest.mark.parametrize(
    ("ranks", "rule"), [([3], "hals"), ([3], "mu"), ([5, 3], "hals"), ([5, 3], "mu")]
)
def test_partial_fit_is_the_documented_update(data, ranks, rule, rel):
    """Three partial_fit calls from custom factors equal the numpy reference step by step
    (codes from the constant start, A and B with ρ = forget_factor, the dictionary passes)."""
    Ws0 = _start_factors(ranks, data.shape[1])
    est = dnmf.MiniBatchDeepNMF(
        ranks, init="custom", forget_factor=0.6, code_max_iter=7, solver=rule, **EXACT
    )
    Ws = [W.copy() for W in Ws0]
    stats = (np.zeros((ranks[-1], ranks[-1])), np.zeros((data.shape[1], ranks[-1])))
    for c, rows in enumerate((slice(0, 25), slice(25, 60), slice(60, 90))):
        est.partial_fit(data[rows], Ws=Ws0 if c == 0 else None)
        Ws, stats = _frobenius_step(Ws, stats, data[rows], 0.6, rule, 7)
        for got, want in zip(est.Ws_, Ws):
            assert rel(got, want) < 1e-10
    assert est.n_steps_ == 3
    np.testing.assert_allclose(est.components_, _prod(Ws).T, rtol=1e-10, atol=1e-12)
    # the codes of step 1 are dnmf.solve_h's (HALS) from its constant start
    if rule == "hals":
        res = dnmf.solve_h(data[:25].T, Ws0, solver="hals", max_iter=7, tol=0)
        assert rel(res.H, _codes_hals(data[:25].T, _prod(Ws0), 7)) < 1e-10


def test_partial_fit_kl_is_scikit_learns_component_update(data, rel):
    """β = 1, one layer: the reference, which is scikit-learn's MiniBatchNMF update of its
    components (`_multiplicative_update_h` with A, B and rho) given the same codes. The data
    exercise its edge rules: an all-zero chunk (codes 0: their zero sums count as 1) and a
    zero feature against a 1e-20 dictionary row (entries below float64's epsilon become 0)."""
    X = data.copy()
    X[:, 5] = 0.0
    X[60:63] = 0.0
    W0 = _start_factors([3], X.shape[1])[0]
    W0[5] = 1e-20
    est = dnmf.MiniBatchDeepNMF(
        3, init="custom", beta_loss=1, forget_factor=0.5, code_max_iter=6, **EXACT
    )
    W, stats = W0.copy(), (W0.copy(), np.ones_like(W0))
    sk_H, sk_A, sk_B = W0.T.copy(), W0.T.copy(), np.ones_like(W0.T)
    for c, rows in enumerate((slice(0, 30), slice(60, 63), slice(30, 60))):
        est.partial_fit(X[rows], Ws=[W0] if c == 0 else None)
        W_prev = W
        W, stats, H = _kl_step(W, stats, X[rows], 0.5, 6)
        assert rel(est.Ws_[0], W) < 1e-10
        assert np.array_equal(est.Ws_[0] == 0, W == 0)
        # scikit-learn's step from the same dictionary and the same codes
        assert rel(sk_H, W_prev.T) < 1e-10
        sk_H = _multiplicative_update_h(
            X[rows], H.T.copy(), sk_H, 1, 0.0, 0.0, 1.0, A=sk_A, B=sk_B, rho=0.5
        )
        sk_H[sk_H < EPS64] = 0.0
        assert rel(sk_H, W.T) < 1e-10
    assert (W[5] == 0).all() and (W[:5] > 0).all()


# ---------------------------------------------------------------- what the fits reach
def _planted(seed, n=150, m=30, r=4):
    rng = np.random.default_rng(seed)
    L = rng.random((n, r)) @ rng.random((r, m))
    return L + 0.05 * L.mean() * rng.random(L.shape)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # DeepNMF's
@pytest.mark.parametrize("ranks", [4, [6, 4]])
def test_one_minibatch_without_forgetting_reaches_deepnmf(ranks):
    """One minibatch of all rows with forget_factor=0 is alternating minimization: its
    error comes within 20 % of DeepNMF's on a planted rank-4 matrix (measured 3 to 15 %
    above for one layer, at or below for two)."""
    X = _planted(0)
    ref = dnmf.DeepNMF(ranks, random_state=0).fit(X)
    mb = dnmf.MiniBatchDeepNMF(
        ranks,
        batch_size=len(X),
        forget_factor=0.0,
        max_iter=60,
        code_max_iter=20,
        random_state=0,
        **EXACT,
    )
    mb.fit_transform(X)
    assert mb.reconstruction_err_ <= 1.2 * ref.reconstruction_err_
    assert mb.n_steps_ == 60 and mb.n_iter_ == 60


@pytest.mark.parametrize("beta", [2, 1])
def test_minibatches_beat_scikit_learns_minibatch_nmf(beta):
    """Five minibatches per pass, forget_factor 0.7, 20 passes: the error is at most
    scikit-learn's MiniBatchNMF's with the same settings, and the fit lowered it from the
    first pass (the default init)."""
    X = _planted(1)
    kw = dict(batch_size=30, forget_factor=0.7, random_state=0, beta_loss=beta, **EXACT)
    sk = MiniBatchNMF(4, max_iter=20, **kw).fit(X)
    one = dnmf.MiniBatchDeepNMF(4, max_iter=1, code_max_iter=20, **kw)
    one.fit_transform(X)
    mb = dnmf.MiniBatchDeepNMF(4, max_iter=20, code_max_iter=20, **kw)
    mb.fit_transform(X)
    assert mb.reconstruction_err_ <= sk.reconstruction_err_
    assert mb.reconstruction_err_ < 0.9 * one.reconstruction_err_


def test_early_stopping_and_the_convergence_warning(data):
    kw = dict(batch_size=30, random_state=0, code_max_iter=5)
    with pytest.warns(dnmf.ConvergenceWarning, match="maximum number of iterations 2"):
        dnmf.MiniBatchDeepNMF(3, max_iter=2, max_no_improvement=None, **kw).fit(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dnmf.ConvergenceWarning)
        est = dnmf.MiniBatchDeepNMF(3, max_iter=50, tol=0.5, **kw).fit(data)
    assert est.n_steps_ < 50 * 3 and est.n_iter_ < 50


# ---------------------------------------------------------------- streaming inputs
class RowReader:
    """A matrix that gives out its rows only as slices ``X[i:j]`` (counted); turning all of
    it into an array fails."""

    def __init__(self, arr):
        self.arr, self.shape, self.dtype, self.ndim = arr, arr.shape, arr.dtype, 2
        self.slices: list[tuple[int, int]] = []

    def __getitem__(self, key):
        assert isinstance(key, slice) and key.step is None, key
        start, stop, _ = key.indices(self.shape[0])
        self.slices.append((start, stop))
        return np.array(self.arr[key])

    def __len__(self):
        return self.shape[0]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole matrix was read into memory")


def test_memory_mapped_input_is_read_a_minibatch_at_a_time(tmp_path, data):
    path = tmp_path / "X.npy"
    np.save(path, data)
    kw = dict(batch_size=25, max_iter=3, code_max_iter=5, random_state=0, **EXACT)
    in_memory = dnmf.MiniBatchDeepNMF(3, **kw).fit(data)
    mapped = np.load(path, mmap_mode="r")
    assert np.array_equal(
        dnmf.MiniBatchDeepNMF(3, **kw).fit(mapped).components_, in_memory.components_
    )
    reader = RowReader(mapped)
    est = dnmf.MiniBatchDeepNMF(3, **kw).fit(reader)
    np.testing.assert_array_equal(est.components_, in_memory.components_)
    assert max(j - i for i, j in reader.slices) <= 25
    assert sum(j - i for i, j in reader.slices) == 3 * len(data)  # every pass reads each row once
    reader.slices.clear()
    codes = est.transform(reader)
    assert codes.shape == (len(data), 3) and max(j - i for i, j in reader.slices) <= 25
    np.testing.assert_allclose(codes, in_memory.transform(data), rtol=1e-12, atol=1e-14)


def _mapped_kib(path) -> int:
    """Resident KiB of this process's mappings of the file ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(maxsplit=1)[0]
            if "-" in head and all(c in "0123456789abcdef-" for c in head):
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads Linux's /proc")
def test_memory_mapped_pages_are_released_after_each_minibatch(tmp_path):
    """After a pass over a memory-mapped file, at most about a minibatch of it stays resident
    (without the release the whole file would: every page read stays in the mapping)."""
    path = tmp_path / "X.npy"
    rng = np.random.default_rng(0)
    np.save(path, rng.random((2048, 1024), dtype=np.float32))  # 8 MiB
    X = np.load(path, mmap_mode="r")
    est = dnmf.MiniBatchDeepNMF(
        2, batch_size=128, max_iter=1, code_max_iter=2, random_state=0, **EXACT
    )
    est.fit(X)  # a minibatch is 512 KiB
    assert _mapped_kib(path) <= 1024
    est.transform(X)
    assert _mapped_kib(path) <= 1024


def test_copy_on_write_maps_keep_their_edits(tmp_path, data):
    """A mode='c' memmap holds the user's edits in its own pages: they are never released,
    so every pass sees the edited values."""
    path = tmp_path / "X.npy"
    np.save(path, data)
    X = np.load(path, mmap_mode="c")
    X *= 2.0  # in the private pages only
    kw = dict(batch_size=25, max_iter=3, code_max_iter=5, random_state=0, **EXACT)
    edited = dnmf.MiniBatchDeepNMF(3, **kw).fit(X)
    np.testing.assert_array_equal(
        edited.components_, dnmf.MiniBatchDeepNMF(3, **kw).fit(2.0 * data).components_
    )


def test_sparse_rows_stay_sparse(monkeypatch, data, rel):
    """A CSR (or CSC) X is fitted through sparse minibatches: the same factors as the dense
    array, for β = 2 and 1, with every densifying method of scipy disabled."""
    Xd = np.where(data > np.median(data), data, 0.0)
    dense = {
        b: dnmf.MiniBatchDeepNMF(
            3, beta_loss=b, batch_size=20, max_iter=2, code_max_iter=5, random_state=0, **EXACT
        ).fit(Xd)
        for b in (2, 1)
    }

    def boom(*args, **kwargs):
        raise AssertionError("a sparse matrix was densified")

    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix):
        monkeypatch.setattr(cls, "toarray", boom)
        monkeypatch.setattr(cls, "todense", boom)
    for b in (2, 1):
        for Xs in (sp.csr_matrix(Xd), sp.csc_matrix(Xd)):
            est = dnmf.MiniBatchDeepNMF(
                3, beta_loss=b, batch_size=20, max_iter=2, code_max_iter=5, random_state=0, **EXACT
            ).fit(Xs)
            assert rel(est.components_, dense[b].components_) < 1e-10
            assert rel(est.transform(Xs), dense[b].transform(Xd)) < 1e-8


def test_chunks_from_a_list_or_a_generator(data):
    kw = dict(batch_size=30, max_iter=3, code_max_iter=5, random_state=0, **EXACT)
    chunks = [data[:60], data[60:]]  # cut into minibatches 0:30, 30:60, 60:90 as fit cuts X
    # without forgetting (ρ = 1) fit_chunks and fit take the same steps
    whole = dnmf.MiniBatchDeepNMF(3, forget_factor=1.0, **kw).fit(data)
    listed = dnmf.MiniBatchDeepNMF(3, forget_factor=1.0, **kw).fit_chunks(chunks)
    np.testing.assert_array_equal(listed.components_, whole.components_)
    assert (listed.n_iter_, listed.n_steps_) == (3, 9)
    # a generator is read once: one pass, whatever max_iter; chunks may be of any kind
    gen = (c for c in [data[:45], torch.from_numpy(data[45:70]), sp.csr_matrix(data[70:])])
    est = dnmf.MiniBatchDeepNMF(3, **kw).fit_chunks(gen)
    assert (est.n_iter_, est.n_steps_) == (1, 4)  # 30 + 15, 25, 20 rows
    assert est.components_.shape == (3, data.shape[1]) and (est.components_ >= 0).all()


def test_deep_kl_and_float32(data):
    X = data.astype(np.float32)
    est = dnmf.MiniBatchDeepNMF(
        [5, 3],
        beta_loss="kullback-leibler",
        batch_size=30,
        max_iter=3,
        code_max_iter=5,
        random_state=0,
        **EXACT,
    )
    codes = est.fit_transform(X)
    assert codes.dtype == np.float32 and codes.shape == (90, 3)
    assert [W.shape for W in est.Ws_] == [(12, 5), (5, 3)]
    assert est.components_.dtype == np.float32 and est.ranks_ == (5, 3)
    assert np.isfinite(est.reconstruction_err_)
    assert est.inverse_transform(codes).shape == X.shape


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("params", "match"),
    [
        (dict(batch_size=0), "batch_size must be an int >= 1, got 0"),
        (dict(batch_size=-3), "batch_size must be an int >= 1"),
        (dict(batch_size=2.5), "batch_size must be an int >= 1"),
        (dict(beta_loss=0), "beta_loss must be 2 .* or 1 .*got 0"),
        (dict(beta_loss="itakura-saito"), "beta_loss must be 2 .* or 1"),
        (dict(beta_loss=1.5), "beta_loss must be 2 .* or 1"),
        (dict(forget_factor=1.5), r"forget_factor must be a float in \[0, 1\]"),
        (dict(solver="hals", beta_loss=1), "solver='hals' solves beta_loss=2"),
        (dict(solver="cd"), "solver must be one of"),
        (dict(n_components="auto"), "n_components must be an int"),
        (dict(max_iter=0), "max_iter must be an int >= 1"),
        (dict(code_max_iter=0), "code_max_iter must be an int >= 1"),
        (dict(init="custom"), "init='custom' needs Ws="),
        (dict(init="nndsvd", batch_size=2), "first minibatch.*raise batch_size"),
    ],
)
def test_bad_parameters_are_named(data, params, match):
    with pytest.raises(ValueError, match=match):
        dnmf.MiniBatchDeepNMF(**{"n_components": 3, **params}).fit(data)


def test_bad_chunks_are_named(data):
    est = dnmf.MiniBatchDeepNMF(3, batch_size=30, code_max_iter=3, max_iter=1)
    with pytest.raises(
        ValueError, match=r"chunks\[1\]\[0:10\] has 5 features, but .* expecting 12"
    ):
        est.fit_chunks([data[:30], data[:10, :5]])
    est.partial_fit(data[:30])
    with pytest.raises(ValueError, match="X has 11 features, but MiniBatchDeepNMF is expecting 12"):
        est.partial_fit(data[:30, :11])
    with pytest.raises(ValueError, match=r"X\[0:30\] has 11 features"):
        est.transform(data[:, :11])
    bad = data.copy()
    bad[70, 3] = -1.0
    fresh = dnmf.MiniBatchDeepNMF(3, batch_size=30, code_max_iter=3, max_iter=1)
    with pytest.raises(
        ValueError, match=r"Negative values in data passed to MiniBatchDeepNMF \(X\[60:90\]\)"
    ):
        fresh.fit(RowReader(bad))
    with pytest.raises(NotFittedError):  # a fit stopped by a bad minibatch leaves it unfitted
        fresh.transform(data)
    with pytest.raises(ValueError, match="Negative values in data .*found 1 negative"):
        fresh.fit(sp.csr_matrix(bad))
    with pytest.raises(ValueError, match="Negative values"):
        fresh.partial_fit(bad)
    bad[70, 3] = np.nan
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        fresh.fit(bad)
    with pytest.raises(TypeError, match="fit_chunks"):
        fresh.fit(iter([data]))
    with pytest.raises(TypeError, match="one matrix"):
        fresh.fit_chunks(data)
    with pytest.raises(ValueError, match="chunks holds no rows"):
        fresh.fit_chunks([])
    with pytest.raises(ValueError, match="must be 2-D"):
        fresh.fit(data[0])


# ---------------------------------------------------------------- CUDA and the protocol
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("beta", [2, 1])
def test_cuda_streams_minibatches_to_the_device(data, beta, rel):
    kw = dict(beta_loss=beta, batch_size=30, max_iter=2, code_max_iter=5, random_state=0, **EXACT)
    cpu = dnmf.MiniBatchDeepNMF([5, 3], **kw).fit(data)
    for X in (data, sp.csr_matrix(data)):
        gpu = dnmf.MiniBatchDeepNMF([5, 3], device="cuda", **kw).fit(X)
        assert all(W.is_cuda for W in gpu._Ws)
        assert isinstance(gpu.components_, np.ndarray)
        assert rel(gpu.components_, cpu.components_) < 1e-8
    gpu.partial_fit(data[:20])
    cpu.partial_fit(data[:20])
    assert rel(gpu.components_, cpu.components_) < 1e-8
    assert rel(gpu.transform(data), cpu.transform(data)) < 1e-8


def test_estimator_protocol(data):
    est = dnmf.MiniBatchDeepNMF([4, 2], batch_size=64, forget_factor=0.5, random_state=3)
    params = est.get_params()
    assert params["n_components"] == [4, 2] and params["batch_size"] == 64
    assert est.set_params(batch_size=30, max_iter=2) is est and est.batch_size == 30
    est.set_params(code_max_iter=3, tol=0)
    est.fit(data)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "components_")
    with pytest.raises(NotFittedError):
        twin.transform(data)
    np.testing.assert_array_equal(twin.fit(data).components_, est.components_)  # seeded
    assert list(est.get_feature_names_out()) == ["minibatchdeepnmf0", "minibatchdeepnmf1"]
    assert "MiniBatchDeepNMF(" in repr(est)
