"""HALS / coordinate descent (dnmf._solvers.hals): scikit-learn's cd, exactness, monotonicity, speed
against multiplicative updates, batches, dtypes, devices and the floating-point state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition._nmf import _fit_coordinate_descent

import dnmf
from dnmf._solvers import resolve_solver
from dnmf._solvers.fpstate import flush_denormal_is_on, raise_tiny_, subnormal_floor
from dnmf._solvers.hals import Acceleration, run_hals
from dnmf._solvers.hals_kernels import _hals_rows_torch, _inverse_curvature, cd_entries, hals_rows
from dnmf._solvers.loss import Penalties
from dnmf._solvers.mu import run_mu

#: Inner sweeps at these tiny sizes: the default α gives one (the products cost little more than
#: a sweep there), so the accelerated paths are tested with a larger one.
ACC = Acceleration(alpha=4.0)
VARIANTS = [("hals", None), ("hals", ACC), ("mu", ACC)]


def _t(*arrays, dtype=torch.float64, device="cpu"):
    return [torch.tensor(a, dtype=dtype, device=device) for a in arrays]


def _deep_start(rng, V, ranks):
    """Positive factors whose product has V's scale."""
    dims = [V.shape[-2], *ranks]
    lead = V.shape[:-2]
    Ws = [rng.random((*lead, dims[i], dims[i + 1])) for i in range(len(ranks))]
    H = rng.random((*lead, ranks[-1], V.shape[-1]))
    P = Ws[0]
    for W in Ws[1:]:
        P = P @ W
    s = (V.mean() / (P @ H).mean()) ** (1 / (len(ranks) + 1))
    return [W * s for W in Ws], H * s


@pytest.mark.parametrize("pen", [(0.0, 0.0, 0.0, 0.0), (0.1, 0.2, 0.3, 0.05)])
def test_one_layer_hals_is_sklearn_cd(rng, rel, pen):
    X = rng.random((30, 20))
    W0, H0 = rng.random((30, 4)), rng.random((4, 20))
    l1w, l1h, l2w, l2h = pen
    Wsk, Hsk, n = _fit_coordinate_descent(
        X, W0.copy(), H0.copy(), tol=0, max_iter=50, l1_reg_W=l1w, l1_reg_H=l1h,
        l2_reg_W=l2w, l2_reg_H=l2h, shuffle=False,
    )  # fmt: skip
    assert n == 50
    V, W, H = _t(X, W0, H0)
    out = run_hals(V, [W], H, max_iter=50, tol=0, penalties=Penalties([l1w, l1h], [l2w, l2h]))
    assert rel(W.numpy(), Wsk) < 1e-6 and rel(H.numpy(), Hsk) < 1e-6
    loss = 0.5 * np.sum((X - Wsk @ Hsk) ** 2) + l1w * Wsk.sum() + l1h * Hsk.sum()
    loss += 0.5 * (l2w * np.sum(Wsk**2) + l2h * np.sum(Hsk**2))
    assert out.loss_history[-1] == pytest.approx(loss, rel=1e-9)
    assert int(out.n_iter) == 50 and len(out.loss_history) == 51


def _brute_min(f, x0, i, j):
    """Exact minimizer over entry (i, j) of a convex quadratic, by its three values."""
    e = np.zeros_like(x0)
    e[i, j] = 1.0
    f0, f1, fm = f(x0), f(x0 + e), f(x0 - e)
    curv, slope = f1 + fm - 2 * f0, (f1 - fm) / 2
    return max(0.0, x0[i, j] - slope / curv)


@pytest.mark.parametrize("batched", [False, True])
def test_cd_entries_is_sequential_exact_minimization(rng, batched):
    a, b, l1, l2 = 5, 4, 0.05, 0.2
    P, S = rng.random((9, a)), rng.random((b, 7))
    Q, R = P.T @ P, S @ S.T
    B = rng.random((a, b)) * 3
    X0 = rng.random((a, b))

    def f(X):
        return (
            0.5 * np.sum((Q @ X @ R) * X) - np.sum(B * X) + l1 * X.sum() + 0.5 * l2 * (X**2).sum()
        )

    want = X0.copy()
    for j in range(b):
        for i in range(a):
            want[i, j] = _brute_min(f, want, i, j)
    X, Qt, Rt, Bt = _t(X0, Q, R, B)
    if batched:  # two copies: the loop vectorized over the batch gives the same
        X, Qt, Rt, Bt = (torch.stack([t, t]) for t in (X, Qt, Rt, Bt))
    cd_entries(X, Qt, Rt, Bt, l1=l1, l2=l2)
    np.testing.assert_allclose(X.numpy().reshape(-1, a, b)[-1], want, rtol=1e-10, atol=1e-12)
    assert f(want) < f(X0)


@pytest.mark.parametrize("loop", ["host", "torch", "batch"])
@pytest.mark.parametrize("l2", [0.3, 0.0])
def test_hals_rows_minimizes_each_row_exactly(rng, loop, l2):
    """Row 2 has no curvature of its own (a zero column of the other factor): with l2 it is
    still solved, without it is left as it is."""
    r, N = 4, 6
    Wm = rng.random((10, r))
    Wm[:, 2] = 0.0
    G, C, X0 = Wm.T @ Wm, rng.random((r, N)) * 2, rng.random((r, N))
    X, Gt, Ct = torch.tensor(X0), torch.tensor(G), torch.tensor(C)
    if loop == "batch":
        X, Gt, Ct = X[None].clone(), Gt[None], Ct[None]
    if loop == "torch":  # a single matrix off the host (a GPU's), here on the CPU
        inv = _inverse_curvature(Gt.diagonal() + l2, None)
        _hals_rows_torch(X, Gt, Ct, inv, 0.1, l2)
    else:
        hals_rows(X, Gt, Ct, l1=0.1, l2=l2)
    want = X0.copy()
    for t in range(r):  # row t's minimizer given the rows before it (new) and after it (old)
        if G[t, t] + l2 == 0:
            continue
        rest = G[t] @ want - G[t, t] * want[t]
        want[t] = np.maximum(0.0, (C[t] - 0.1 - rest) / (G[t, t] + l2))
    np.testing.assert_allclose(X.numpy().reshape(r, N), want, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_hals_rows_equals_each_matrix_and_freezes_inactive(rng, dtype):
    B, r, N = 3, 4, 7
    Wm = rng.random((B, 10, r))
    G = torch.tensor(np.swapaxes(Wm, -1, -2) @ Wm, dtype=dtype)
    C = torch.tensor(rng.random((B, r, N)) * 2, dtype=dtype)
    X0 = torch.tensor(rng.random((B, r, N)), dtype=dtype)
    X = X0.clone()
    active = torch.tensor([True, False, True])
    change = hals_rows(X, G, C, l1=0.1, l2=0.3, active=active, track=True)
    torch.testing.assert_close(X[1], X0[1], rtol=0, atol=0)
    assert change is not None and float(change[1]) == 0.0
    for b in (0, 2):
        Xb = X0[b].clone()
        hals_rows(Xb, G[b], C[b], l1=0.1, l2=0.3)
        tol = 1e-5 if dtype == torch.float32 else 1e-12  # the two loops round differently
        torch.testing.assert_close(X[b], Xb, rtol=tol, atol=tol)
        assert float(change[b]) > 0


@pytest.mark.parametrize("shape", [(4, 6), (2, 4, 6)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hals_rows_reports_the_squared_change_of_its_pass(rng, shape, dtype):
    """The host loop (one matrix) and the torch loop (batch) both return ‖ΔX‖² of the pass,
    the same pass as without tracking."""
    r, N = shape[-2:]
    Wm = rng.random((*shape[:-2], 10, r))
    G = torch.tensor(np.swapaxes(Wm, -1, -2) @ Wm, dtype=dtype)
    C = torch.tensor(rng.random(shape) * 2, dtype=dtype)
    X0 = torch.tensor(rng.random(shape), dtype=dtype)
    X, plain = X0.clone(), X0.clone()
    change = hals_rows(X, G, C, l1=0.1, l2=0.3, track=True)
    assert hals_rows(plain, G, C, l1=0.1, l2=0.3) is None
    torch.testing.assert_close(X, plain, rtol=0, atol=0)
    want = (X.double() - X0.double()).square().sum(dim=(-2, -1))
    assert change is not None and change.dtype == torch.float64 and change.shape == shape[:-2]
    assert float(want.min()) > 0
    torch.testing.assert_close(change, want, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)


@pytest.mark.parametrize("ranks", [[6], [8, 5], [9, 6, 4]])
@pytest.mark.parametrize("penalized", [False, True])
@pytest.mark.parametrize(("rule", "accel"), VARIANTS)
def test_loss_never_increases(rng, ranks, penalized, rule, accel):
    V = rng.random((40, 30))
    Ws0, H0 = _deep_start(rng, V, ranks)
    k = len(ranks)
    pen = Penalties([0.05] * (k + 1), [0.1] * (k + 1)) if penalized else None
    Vt, H, *Ws = _t(V, H0, *Ws0)
    out = run_hals(Vt, Ws, H, rule=rule, accel=accel, max_iter=60, tol=0, penalties=pen)
    h = out.loss_history
    assert len(h) == 61 and np.all(np.diff(h) <= 1e-12 * h[0])
    assert h[-1] < 0.7 * h[0]
    assert all(float(W.min()) >= 0 for W in Ws) and float(H.min()) >= 0


def test_planted_deep_factors_recovered_faster_than_mu(planted):
    V, _, _ = planted
    Ws0, H0 = _deep_start(np.random.default_rng(1), V, [12, 5])

    def fit(n_iter, rule=None, accel=None):
        Vt, H, *Ws = _t(V, H0, *Ws0)
        if rule is None:
            return run_mu(Vt, Ws, H, max_iter=n_iter, tol=0).loss_history
        return run_hals(Vt, Ws, H, rule=rule, accel=accel, max_iter=n_iter, tol=0).loss_history

    mu = fit(1000)[-1]  # relative loss about 2.4e-4
    assert mu / (0.5 * np.sum(V**2)) < 1e-3
    hals, acc = fit(250, "hals"), fit(50, "hals", ACC)
    assert hals[-1] < mu and acc[-1] < mu  # 4x and 20x fewer iterations
    assert fit(250, "mu", ACC)[-1] < mu  # accelerated MU as well


@pytest.mark.parametrize(("rule", "accel"), VARIANTS)
@pytest.mark.parametrize("ranks", [[3], [4, 3]])
def test_batched_equals_loop(rng, rule, accel, ranks):
    V = rng.random((3, 15, 12))
    Ws0, H0 = _deep_start(rng, V, ranks)
    Vt, H, *Ws = _t(V, H0, *Ws0)
    out = run_hals(Vt, Ws, H, rule=rule, accel=accel, max_iter=40, tol=1e-5, check_every=5)
    for b in range(3):
        Vb, Hb, *Wb = _t(V[b], H0[b], *(W[b] for W in Ws0))
        ob = run_hals(Vb, Wb, Hb, rule=rule, accel=accel, max_iter=40, tol=1e-5, check_every=5)
        assert int(out.n_iter[b]) == int(ob.n_iter)
        np.testing.assert_allclose(H[b].numpy(), Hb.numpy(), rtol=1e-9, atol=1e-12)
        for W, w in zip(Ws, Wb):
            np.testing.assert_allclose(W[b].numpy(), w.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("rule", "accel"), VARIANTS)
def test_float32_tracks_float64(rng, rule, accel):
    V = rng.random((40, 30))
    Ws0, H0 = _deep_start(rng, V, [6, 4])
    runs = {}
    for dt in (torch.float32, torch.float64):
        Vt, H, *Ws = _t(V, H0, *Ws0, dtype=dt)
        out = run_hals(Vt, Ws, H, rule=rule, accel=accel, max_iter=30, tol=0)
        assert H.dtype == dt and all(W.dtype == dt for W in Ws)
        runs[dt] = (out.loss_history, (Ws[0] @ Ws[1] @ H).double().numpy())
    (h32, L32), (h64, L64) = runs[torch.float32], runs[torch.float64]
    np.testing.assert_allclose(h32, h64, rtol=1e-4)
    assert np.abs(L32 - L64).max() / np.abs(L64).max() < 1e-3


@pytest.mark.parametrize(("rule", "accel"), VARIANTS)
def test_cpu_and_device_agree(rng, device, rule, accel):
    V = rng.random((2, 30, 25))
    Ws0, H0 = _deep_start(rng, V, [5, 3])
    hist = {}
    for dev in ("cpu", device):
        Vt, H, *Ws = _t(V, H0, *Ws0, device=dev)
        hist[str(dev)] = run_hals(Vt, Ws, H, rule=rule, accel=accel, max_iter=25, tol=0)
        assert H.device.type == torch.device(dev).type
    np.testing.assert_allclose(hist["cpu"].loss_history, hist[str(device)].loss_history, rtol=1e-9)


def test_fit_leaves_the_floating_point_state_as_found(rng):
    V = rng.random((20, 15))
    for preset in (False, True):
        torch.set_flush_denormal(preset)
        try:
            before = flush_denormal_is_on()
            for rule, accel in VARIANTS:
                Vt, H, W = _t(V, rng.random((3, 15)), rng.random((20, 3)))
                run_hals(Vt, [W], H, rule=rule, accel=accel, max_iter=5, tol=0)
            assert flush_denormal_is_on() == before
        finally:
            torch.set_flush_denormal(False)
    assert not flush_denormal_is_on()


def test_raise_tiny_keeps_zeros_and_lifts_subnormals():
    for dt in (torch.float32, torch.float64):
        f = subnormal_floor(dt)
        F = torch.tensor([0.0, torch.finfo(dt).tiny / 4, f / 2, 2 * f, 0.5], dtype=dt)
        raise_tiny_(F)
        assert F.tolist() == pytest.approx([0.0, f, f, 2 * f, 0.5], rel=1e-6)
        assert f * torch.finfo(dt).eps >= torch.finfo(dt).tiny * 0.99


def test_h_only_solve_matches_run_hals_codes(rng):
    from dnmf._solvers.hals import run_hals_codes

    V = rng.random((30, 20))
    W1, W2 = rng.random((30, 6)), rng.random((6, 4))
    H0 = rng.random((4, 20))
    Vt, W1t, W2t, Ha, Hb = _t(V, W1, W2, H0, H0)
    a = run_hals_codes(Vt, [W1t, W2t], Ha, max_iter=30, tol=0, l1=0.1, l2=0.2)
    b = run_hals(
        Vt,
        [W1t, W2t],
        Hb,
        max_iter=30,
        tol=0,
        update=[False, False, True],
        penalties=Penalties([0, 0, 0.1], [0, 0, 0.2]),
    )
    np.testing.assert_allclose(Ha.numpy(), Hb.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(a.loss_history, b.loss_history, rtol=1e-10)
    assert W1t.numpy().tolist() == W1.tolist()  # the fixed factors are untouched


def test_acceleration_budget_and_stop_rule():
    acc = Acceleration(alpha=0.5, delta=0.1)
    assert acc.budget(0.0) == 1 and acc.budget(12.7) == 7 and acc.budget(69.0) == 35


def test_unknown_rule_is_rejected(rng):
    Vt, H, W = _t(rng.random((5, 4)), rng.random((2, 4)), rng.random((5, 2)))
    with pytest.raises(ValueError, match="rule must be one of"):
        run_hals(Vt, [W], H, rule="cd")


# -- the public entry points -----------------------------------------------------------------
def test_factorize_solver_hals_is_sklearn_cd(rng, rel):
    X = rng.random((30, 20))
    W0, H0 = rng.random((30, 4)), rng.random((4, 20))
    Wsk, Hsk, _ = _fit_coordinate_descent(X, W0.copy(), H0.copy(), tol=0, max_iter=40)
    res = dnmf.factorize(X, 4, solver="hals", init="custom", Ws=[W0], H=H0, max_iter=40, tol=0)
    assert rel(res.Ws[0], Wsk) < 1e-6 and rel(res.H, Hsk) < 1e-6


def test_auto_picks_hals_acc_e_for_frobenius_and_mu_otherwise(rng):
    V = rng.random((20, 16)) + 0.1
    kw = dict(init="custom", Ws=[rng.random((20, 3))], H=rng.random((3, 16)), max_iter=15, tol=0)
    auto, acc = (dnmf.factorize(V, 3, solver=s, **kw) for s in ("auto", "hals-acc-e"))
    np.testing.assert_array_equal(auto.H, acc.H)
    auto, mu = (dnmf.factorize(V, 3, solver=s, beta=1, **kw) for s in ("auto", "mu"))
    np.testing.assert_array_equal(auto.H, mu.H)
    mask = np.ones_like(V)
    mask[0, 0] = 0  # a mask: weighted HALS, extrapolated for one layer
    auto, masked = (dnmf.factorize(V, 3, solver=s, mask=mask, **kw) for s in ("auto", "hals-acc-e"))
    np.testing.assert_array_equal(auto.H, masked.H)
    assert resolve_solver("auto", 2.0, torch.ones(2, 2), 2) == "hals"
    assert dnmf.factorize(V, 3, **kw).loss == acc.loss  # the default is 'auto'


def test_auto_picks_plain_hals_for_deep_models(rng):
    V = rng.random((20, 16)) + 0.1
    kw = dict(max_iter=15, tol=0, seed=0, pretrain=10)
    auto, hals = (dnmf.factorize(V, [4, 2], solver=s, **kw) for s in ("auto", "hals"))
    np.testing.assert_array_equal(auto.H, hals.H)
    np.testing.assert_array_equal(auto.pretrain_loss_histories[0], hals.pretrain_loss_histories[0])
    assert resolve_solver("auto", 2.0, None, 3) == "hals"
    assert resolve_solver("auto", 2.0, None, 1) == "hals-acc-e"
    assert resolve_solver("auto", 1.0, None, 3) == "mu"


@pytest.mark.parametrize("solver", ["mu", "mu-acc", "hals", "hals-acc"])
def test_deep_factorize_with_pretraining_decreases_the_loss(rng, solver):
    V = rng.random((30, 24))
    res = dnmf.factorize(V, [6, 4, 2], solver=solver, pretrain=20, max_iter=30, tol=0, seed=0)
    assert len(res.pretrain_loss_histories) == 3
    for h in (*res.pretrain_loss_histories, res.loss_history):
        assert np.all(np.diff(h) <= 1e-9 * h[0])


def test_hals_pretraining_fits_each_layer_by_hals(rng):
    V = rng.random((30, 24))
    deep = dnmf.factorize(V, [6, 3], solver="hals", pretrain=25, max_iter=1, tol=0, seed=0)
    one = dnmf.factorize(V, 6, solver="hals", max_iter=25, tol=0, seed=0)
    np.testing.assert_allclose(deep.pretrain_loss_histories[0], one.loss_history, rtol=1e-12)


@pytest.mark.parametrize("solver", ["hals", "mu-acc", "hals-acc"])
def test_solvers_refuse_what_they_cannot_fit(rng, solver):
    V = rng.random((10, 8)) + 0.1
    with pytest.raises(ValueError, match=f"solver='{solver}' solves beta=2, got beta=1"):
        dnmf.factorize(V, 2, solver=solver, beta=1)
    with pytest.raises(ValueError, match=r"solver must be one of \('auto', 'mu', 'mu-acc'"):
        dnmf.factorize(V, 2, solver="cd")


def test_solve_h_hals_names_share_one_h_update(rng):
    V, W = rng.random((20, 12)), rng.random((20, 3))
    a, b = (dnmf.solve_h(V, [W], solver=s, max_iter=40, tol=0) for s in ("hals", "hals-acc"))
    np.testing.assert_array_equal(a.H, b.H)
    c, d = (dnmf.solve_h(V, [W], solver=s, max_iter=40, tol=0) for s in ("mu", "mu-acc"))
    np.testing.assert_array_equal(c.H, d.H)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # short fits
@pytest.mark.parametrize("solver", ["mu", "hals", "hals-acc"])
def test_deepnmf_solver(rng, solver):
    X = rng.random((25, 12))
    est = dnmf.DeepNMF(n_components=[5, 3], solver=solver, max_iter=40, random_state=0)
    codes = est.fit_transform(X)
    assert codes.shape == (25, 3) and est.get_params()["solver"] == solver
    ref = dnmf.factorize(X.T, [5, 3], solver=solver, max_iter=40, seed=0, init="nndsvda")
    np.testing.assert_allclose(est.loss_history_, ref.loss_history, rtol=1e-9)


def test_factorize_columns_takes_the_solver(rng):
    from dnmf.distributed import factorize_columns

    V = rng.random((20, 15))
    kw = dict(init="nndsvda", seed=0, max_iter=20, tol=0, pretrain=10)
    for solver in ("hals", "hals-acc", "mu-acc"):
        a = factorize_columns(V, [5, 3], solver=solver, **kw)
        b = dnmf.factorize(V, [5, 3], solver=solver, **kw)
        np.testing.assert_allclose(a.loss_history, b.loss_history, rtol=1e-10)
    with pytest.raises(ValueError, match="solver must be one of"):
        factorize_columns(V, [3], solver="bogus")


@pytest.mark.parametrize("layout", ["sparse", "dense", "column-major"])
@pytest.mark.parametrize("ranks", [[4], [6, 3]])
def test_product_operands_give_the_same_fit(rng, monkeypatch, layout, ranks):
    """The products with V from CSR copies (mostly-zero V), from a row-major copy of Vᵀ or
    from V as given trace the same losses as the plain products."""
    import dnmf._solvers.hals as hals

    V = rng.random((30, 24)) * (rng.random((30, 24)) < (0.05 if layout == "sparse" else 1.0))
    V[0, 0] = 1.0  # no all-zero matrix
    Ws0, H0 = _deep_start(rng, V, ranks)

    def losses(data, operands):
        Vt, H, *Ws = _t(data, H0, *Ws0)
        if layout == "column-major":
            Vt = Vt.T.contiguous().T
        if operands is not None:
            monkeypatch.setattr(hals, "_product_operands", operands)
        seen = {}
        real_init = hals.BlockSolver.__init__

        def spy(self, *a, **k):
            real_init(self, *a, **k)
            seen["Vs"], seen["Vt"] = self.Vs, self.Vt

        monkeypatch.setattr(hals.BlockSolver, "__init__", spy)
        out = run_hals(Vt, Ws, H, accel=ACC, max_iter=15, tol=0).loss_history
        monkeypatch.undo()
        return out, seen

    got, seen = losses(V, None)
    want, plain = losses(V, lambda V, csr=True: (None, None))
    assert plain["Vs"] is None and plain["Vt"] is None
    if layout == "sparse":
        assert seen["Vs"].layout == torch.sparse_csr and seen["Vt"].layout == torch.sparse_csr
    else:
        assert seen["Vs"] is None and seen["Vt"].is_contiguous()
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("ranks", [[5], [6, 4]])
def test_w1_is_written_back_when_a_callback_stops_or_raises(rng, ranks):
    """The solver keeps W1ᵀ between sweeps; the caller's W1 is the last one swept however the
    loop ends."""
    V = rng.random((30, 20))
    Ws0, H0 = _deep_start(rng, V, ranks)
    Vt, H, *Ws = _t(V, H0, *Ws0)
    run_hals(Vt, Ws, H, max_iter=3, tol=0)

    def stop_at_3(it, loss):
        if it == 3:
            raise KeyboardInterrupt

    for callback in (lambda it, loss: it == 3, stop_at_3):
        _, H2, *Ws2 = _t(V, H0, *Ws0)
        try:
            run_hals(Vt, Ws2, H2, max_iter=50, tol=0, callback=callback)
        except KeyboardInterrupt:
            pass
        for got, want in zip(Ws2, Ws):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        torch.testing.assert_close(H2, H, rtol=0, atol=0)
