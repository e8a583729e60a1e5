"""dnmf.factorize: monotone loss, planted factors, masks, batches, dtypes, persistence, devices."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import dnmf


def _fit(V, ranks, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dnmf.ConvergenceWarning)
        return dnmf.factorize(V, ranks, **kw)


@pytest.mark.parametrize("beta", [2, 1, 0])
@pytest.mark.parametrize("ranks", [[6], [8, 4], [8, 5, 3]])
def test_loss_never_increases(rng, beta, ranks):
    V = rng.random((24, 30)) + 0.05
    res = _fit(V, ranks, beta=beta, max_iter=60, tol=0, seed=0, loss_every=1, init="random")
    h = res.loss_history
    assert len(h) == 61 and np.all(np.isfinite(h))
    assert np.all(np.diff(h) <= 1e-10 * h[0]), np.diff(h).max()
    assert all(np.all(np.diff(p) <= 1e-10 * p[0]) for p in res.pretrain_loss_histories)
    assert all((W >= 0).all() for W in res.Ws) and (res.H >= 0).all()


def test_planted_two_layers_fitted(planted):
    V, _, _ = planted
    res = _fit(V, [12, 5], max_iter=3000, tol=1e-9, seed=0)
    rel = np.linalg.norm(V - res.reconstruct()) / np.linalg.norm(V)
    assert rel < 1e-2
    assert [W.shape for W in res.Ws] == [(60, 12), (12, 5)] and res.H.shape == (5, 80)


def test_loss_history_matches_direct_loss(rng):
    V = rng.random((20, 25))
    res = _fit(V, [6, 3], max_iter=30, tol=0, seed=1, l1=0.01, l2=[0.1, 0.0, 0.2])
    R = res.reconstruct()
    pen = 0.01 * sum(F.sum() for F in [*res.Ws, res.H])
    pen += 0.5 * (0.1 * (res.Ws[0] ** 2).sum() + 0.2 * (res.H**2).sum())
    np.testing.assert_allclose(res.loss, 0.5 * ((V - R) ** 2).sum() + pen, rtol=1e-10)
    assert res.loss_iters[0] == 0 and res.loss_iters[-1] == 30


@pytest.mark.parametrize("beta", [2, 1, 0.5])
def test_masked_entries_do_not_influence_fit(rng, beta):
    V = rng.random((20, 16)) + 0.1
    mask = (rng.random(V.shape) > 0.3).astype(float)
    W0, W20, H0 = rng.random((20, 6)), rng.random((6, 3)), rng.random((3, 16))
    V2 = V.copy()
    V2[mask == 0] = rng.random(int((mask == 0).sum())) * 100
    a = dnmf.factorize(
        V, [6, 3], beta=beta, mask=mask, init="custom", Ws=[W0, W20], H=H0, max_iter=40, tol=0
    )
    b = dnmf.factorize(
        V2, [6, 3], beta=beta, mask=mask, init="custom", Ws=[W0, W20], H=H0, max_iter=40, tol=0
    )
    np.testing.assert_array_equal(a.H, b.H)
    np.testing.assert_array_equal(a.Ws[0], b.Ws[0])
    np.testing.assert_allclose(a.loss_history, b.loss_history, rtol=0, atol=0)
    # ... while the same changes without a mask do change the fit
    c = dnmf.factorize(V2, [6, 3], beta=beta, init="custom", Ws=[W0, W20], H=H0, max_iter=5, tol=0)
    assert not np.allclose(c.H, a.H)


def test_full_mask_equals_no_mask(rng):
    V = rng.random((15, 12))
    W0, H0 = rng.random((15, 4)), rng.random((4, 12))
    kw = dict(init="custom", Ws=[W0], H=H0, max_iter=30, tol=0, solver="mu")  # masks need MU
    a = dnmf.factorize(V, 4, **kw)
    b = dnmf.factorize(V, 4, **kw, mask=np.ones_like(V))
    np.testing.assert_allclose(a.H, b.H, rtol=1e-10)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-10)


def test_mask_fills_holes_of_a_low_rank_matrix(rng):
    V = rng.random((30, 4)) @ rng.random((4, 40))
    mask = (rng.random(V.shape) > 0.2).astype(float)
    res = _fit(V, 4, mask=mask, max_iter=2000, tol=1e-10, seed=0)
    holes = mask == 0
    err = np.abs(res.reconstruct() - V)[holes].mean() / V[holes].mean()
    assert err < 0.05


@pytest.mark.parametrize("beta", [2, 1])
def test_batched_equals_loop(rng, beta):
    B = 4
    V = rng.random((B, 18, 14)) + 0.05
    V[1] *= 10.0  # different scales: the matrices converge at different iterations
    V[2] = rng.random((18, 2)) @ rng.random((2, 14))
    W0, W20, H0 = rng.random((B, 18, 6)), rng.random((B, 6, 3)), rng.random((B, 3, 14))
    # MU: HALS fits V[2] (exactly rank 2) down to rounding noise, where the tol test flips
    # at random; test_hals.py has HALS's batched == loop
    kw = dict(beta=beta, init="custom", max_iter=400, tol=1e-4, check_every=10, solver="mu")
    batch = _fit(V, [6, 3], Ws=[W0, W20], H=H0, **kw)
    assert batch.loss_history.shape[1] == B
    for b in range(B):
        one = _fit(V[b], [6, 3], Ws=[W0[b], W20[b]], H=H0[b], **kw)
        assert batch.n_iter[b] == one.n_iter
        assert batch.converged[b] == one.converged
        np.testing.assert_allclose(batch.H[b], one.H, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(batch.Ws[0][b], one.Ws[0], rtol=1e-9, atol=1e-12)
    assert len(set(batch.n_iter.tolist())) > 1  # per-matrix convergence really happened


def test_converged_matrix_stops_changing(rng):
    V = np.stack([rng.random((10, 4)) @ rng.random((4, 12)), rng.random((10, 12))])
    res = _fit(V, 4, max_iter=500, tol=1e-3, seed=0, init="random")
    b = int(np.argmin(res.n_iter))
    stop = list(res.loss_iters).index(res.n_iter[b])
    assert np.all(res.loss_history[stop:, b] == res.loss_history[stop, b])


def test_batched_seeded_init(rng):
    V = rng.random((3, 12, 10))
    a = _fit(V, [4, 2], max_iter=20, seed=3)
    b = _fit(torch.from_numpy(V), [4, 2], max_iter=20, seed=3)
    np.testing.assert_allclose(a.H, b.H.numpy())
    assert a.H.shape == (3, 2, 10) and a.Ws[1].shape == (3, 4, 2)


@pytest.mark.parametrize("init", ["nndsvd", "nndsvda", "nndsvdar", "random"])
def test_seeded_runs_are_reproducible(rng, init):
    V = rng.random((20, 15))
    a = _fit(V, [5, 3], init=init, seed=7, max_iter=30)
    b = _fit(V, [5, 3], init=init, seed=7, max_iter=30)
    np.testing.assert_array_equal(a.H, b.H)
    np.testing.assert_array_equal(a.Ws[1], b.Ws[1])


def test_torch_input_keeps_kind_dtype_and_device(rng, device):
    V = torch.tensor(rng.random((16, 12)), dtype=torch.float32, device=device)
    res = _fit(V, [5, 2], max_iter=20, seed=0)
    assert isinstance(res.H, torch.Tensor) and res.H.device.type == device.type
    assert res.H.dtype == torch.float32 and res.reconstruct().shape == V.shape
    assert res.loss_history.dtype == np.float64


def test_device_argument_moves_numpy_input(rng, device):
    V = rng.random((16, 12))
    res = _fit(V, 3, max_iter=20, seed=0, device=device, dtype="float32")
    assert isinstance(res.H, np.ndarray) and res.H.dtype == np.float32


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("beta", [2, 1])
def test_cuda_matches_cpu(rng, beta):
    V = rng.random((40, 30)) + 0.1
    W0, W20, H0 = rng.random((40, 8)), rng.random((8, 4)), rng.random((4, 30))
    kw = dict(beta=beta, init="custom", Ws=[W0, W20], H=H0, max_iter=50, tol=0)
    cpu = dnmf.factorize(V, [8, 4], **kw)
    gpu = dnmf.factorize(V, [8, 4], device="cuda", **kw)
    np.testing.assert_allclose(gpu.H, cpu.H, rtol=1e-8)


def test_scipy_sparse_input(rng):
    sp = pytest.importorskip("scipy.sparse")
    V = rng.random((20, 15))
    V[V < 0.5] = 0
    a = _fit(sp.csr_matrix(V), 3, max_iter=30, seed=0)
    b = _fit(V, 3, max_iter=30, seed=0)
    np.testing.assert_allclose(a.H, b.H)


def test_save_load_round_trip(rng, tmp_path):
    V = rng.random((3, 12, 10))
    res = _fit(V, [4, 2], max_iter=25, seed=0, tol=1e-3)
    path = tmp_path / "f.npz"
    res.save(path)
    back = dnmf.load(path)
    assert back.ranks == (4, 2) and back.beta == 2.0
    for a, b in zip([*res.Ws, res.H], [*back.Ws, back.H]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.loss_history, res.loss_history)
    np.testing.assert_array_equal(back.n_iter, res.n_iter)
    np.testing.assert_array_equal(back.reconstruct(), res.reconstruct())
    assert len(back.pretrain_loss_histories) == 2
    one = _fit(V[0], 3, max_iter=5, seed=0)
    one.save(tmp_path / "g.npz")
    g = dnmf.load(tmp_path / "g.npz")
    assert isinstance(g.n_iter, int) and isinstance(g.converged, bool)


def test_torch_result_saves(rng, tmp_path):
    res = _fit(torch.rand(10, 8, dtype=torch.float64), 3, max_iter=5, seed=0)
    res.save(tmp_path / "t.npz")
    np.testing.assert_array_equal(dnmf.load(tmp_path / "t.npz").H, res.H.numpy())


def test_convergence_warning_and_converged_flag(rng):
    V = rng.random((15, 12))
    with pytest.warns(dnmf.ConvergenceWarning, match="max_iter"):
        res = dnmf.factorize(V, 3, max_iter=10, tol=1e-12, seed=0)
    assert res.converged is False and res.n_iter == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error", dnmf.ConvergenceWarning)
        res = dnmf.factorize(V, 3, max_iter=5000, tol=1e-3, seed=0)
        dnmf.factorize(V, 3, max_iter=7, tol=0, seed=0)  # tol=0: a fixed budget, no warning
    assert res.converged is True and res.n_iter % 10 == 0 and res.n_iter < 5000


def test_pretraining_helps_mu_and_can_be_switched_off(planted):
    # With MU the layer-wise start helps here; exact HALS from the plain start does better
    # on this planted problem without it (see the solvers guide).
    V, _, _ = planted
    a = _fit(V, [12, 5], max_iter=50, tol=0, seed=0, pretrain=False, solver="mu")
    b = _fit(V, [12, 5], max_iter=50, tol=0, seed=0, pretrain=100, solver="mu")
    assert a.pretrain_loss_histories == [] and len(b.pretrain_loss_histories) == 2
    assert len(b.pretrain_loss_histories[0]) == 101
    assert b.loss < a.loss


def test_l1_makes_codes_sparser(rng):
    V = rng.random((20, 30))
    a = _fit(V, 6, max_iter=300, tol=0, seed=0)
    b = _fit(V, 6, max_iter=300, tol=0, seed=0, l1=[0.0, 1.0])
    assert (b.H < 1e-6).mean() > (a.H < 1e-6).mean()


def test_callback_sees_progress_and_can_stop(rng):
    V = rng.random((12, 10))
    seen = []

    def cb(it, loss):
        seen.append((it, loss))
        return it >= 7

    res = dnmf.factorize(V, 3, max_iter=100, tol=1e-4, seed=0, callback=cb)
    assert [s[0] for s in seen] == list(range(1, 8)) and res.n_iter == 7
    assert isinstance(seen[0][1], float)


def test_verbose_prints(rng, capsys):
    _fit(rng.random((8, 6)), 2, max_iter=20, tol=1e-4, verbose=True, seed=0)
    assert "loss" in capsys.readouterr().out


def test_input_is_never_modified(rng):
    V = rng.random((12, 10))
    W0, H0 = rng.random((12, 3)), rng.random((3, 10))
    copies = [V.copy(), W0.copy(), H0.copy()]
    _fit(V, 3, init="custom", Ws=[W0], H=H0, max_iter=10)
    for a, b in zip([V, W0, H0], copies):
        np.testing.assert_array_equal(a, b)


def test_solve_h_recovers_codes(rng):
    W = [rng.random((30, 6)), rng.random((6, 3))]
    H = rng.random((3, 20))
    V = W[0] @ W[1] @ H
    res = dnmf.solve_h(V, W, max_iter=3000, tol=0)
    assert res.Ws[0] is not W[0] and res.n_iter == 3000
    assert np.linalg.norm(res.reconstruct() - V) / np.linalg.norm(V) < 1e-3
    np.testing.assert_allclose(res.H, H, atol=3e-2)
    mask = (rng.random(V.shape) > 0.3).astype(float)
    V_holes = np.where(mask > 0, V, 1e3)
    resm = dnmf.solve_h(V_holes, W, mask=mask, max_iter=3000, tol=0)
    np.testing.assert_allclose(resm.H, res.H, atol=3e-2)
    Vb = np.stack([V, 2 * V])  # shared 2-D factors broadcast over a batch
    resb = dnmf.solve_h(Vb, W, max_iter=3000, tol=0)
    np.testing.assert_allclose(resb.H[1], 2 * resb.H[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resb.H[0], res.H, rtol=1e-9)


def test_beta_divergence_conventions():
    V = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    L = torch.tensor([[2.0, 2.0], [1.0, 4.0]], dtype=torch.float64)
    assert float(dnmf.beta_divergence(V, L, 2)) == pytest.approx(0.5 * (1 + 4))
    kl = 1 * np.log(1 / 2) - 1 + 2 + 3 * np.log(3) - 3 + 1
    assert float(dnmf.beta_divergence(V, L, 1)) == pytest.approx(kl)
    is_ = (0.5 - np.log(0.5) - 1) + (3 - np.log(3) - 1)
    assert float(dnmf.beta_divergence(V, L, 0)) == pytest.approx(is_)
    assert dnmf.mu_exponent(0) == 0.5 and dnmf.mu_exponent(1.5) == 1 and dnmf.mu_exponent(3) == 0.5


def test_hals_codes_batched_equals_loop_and_penalties(rng):
    W = [rng.random((20, 5)), rng.random((5, 3))]
    V = rng.random((3, 20, 12))
    b = dnmf.solve_h(V, W, solver="hals", max_iter=300, tol=1e-6)
    for i in range(3):
        one = dnmf.solve_h(V[i], W, solver="hals", max_iter=300, tol=1e-6)
        np.testing.assert_allclose(b.H[i], one.H, rtol=1e-9, atol=1e-12)
        assert b.n_iter[i] == one.n_iter
    assert np.all(np.diff(b.loss_history, axis=0) <= 1e-12)
    plain = dnmf.solve_h(V[0], W, solver="hals", max_iter=300, tol=0)
    sparse = dnmf.solve_h(V[0], W, solver="hals", max_iter=300, tol=0, l1=5.0)
    assert (sparse.H == 0).sum() > (plain.H == 0).sum()
    ridge = dnmf.solve_h(V[0], W, solver="hals", max_iter=300, tol=0, l2=100.0)
    assert np.linalg.norm(ridge.H) < np.linalg.norm(plain.H)
