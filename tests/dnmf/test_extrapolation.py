"""The extrapolated accelerated HALS (``solver='hals-acc-e'``, dnmf._solvers.extrapolation): what it
returns, where it applies, batches, dtypes, devices and the scale of its factors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dnmf
from dnmf._solvers.extrapolation import ExtrapolatedSolver, Extrapolation
from dnmf._solvers.hals import Acceleration
from dnmf._solvers.loop import iterate
from dnmf._solvers.loss import Penalties

E = "hals-acc-e"


def _exact(V, W, H) -> float:
    return 0.5 * float(np.sum((V - W @ H) ** 2))


def _planted(rng, m=40, n=30, r=4, noise=0.05):
    V = rng.random((m, r)) @ rng.random((r, n))
    return V + noise * V.mean() * rng.random((m, n))


def test_returns_the_best_pair_and_reports_its_loss(rng):
    V = _planted(rng)
    res = dnmf.factorize(V, 4, solver=E, max_iter=80, tol=0, seed=0)
    W, H = res.W(), res.H
    assert W.min() >= 0 and H.min() >= 0
    assert res.loss == pytest.approx(_exact(V, W, H), rel=1e-10)
    assert np.all(np.diff(res.loss_history) <= 0)  # the best pair's loss never goes up


def test_undoes_an_iteration_whose_loss_went_up(rng, monkeypatch):
    """With a huge β every extrapolated step overshoots: the iterations are undone, β shrinks
    and the fit still descends to what plain accelerated HALS reaches."""
    import dnmf._solvers as solver_mod

    V = _planted(rng)
    rule, accel, _ = solver_mod._BLOCK[E]
    monkeypatch.setitem(solver_mod._BLOCK, E, (rule, accel, Extrapolation(beta0=50.0)))
    seen = []
    orig = ExtrapolatedSolver._next_start

    def spy(self, *args):
        orig(self, *args)
        seen.append(float(self.momentum))

    monkeypatch.setattr(ExtrapolatedSolver, "_next_start", spy)
    res = dnmf.factorize(V, 4, solver=E, max_iter=60, tol=0, seed=0)
    assert seen[1] < seen[0] / 1.4  # the first step went up: β / η
    ref = dnmf.factorize(V, 4, solver="hals-acc", max_iter=60, tol=0, seed=0)
    assert res.loss <= ref.loss * (1 + 1e-3)
    assert res.loss == pytest.approx(_exact(V, res.W(), res.H), rel=1e-10)


def test_reaches_the_accelerated_answer_in_fewer_iterations():
    """On small planted matrices (four seeds) the extrapolated fit comes within 1 % of what
    plain accelerated HALS reaches in 1000 iterations in fewer iterations than it (about
    1.3–4× fewer at these sizes)."""
    for seed in range(4):
        V = _planted(np.random.default_rng(seed), 60, 50, 6)
        runs = [
            dnmf.factorize(V, 6, solver=s, max_iter=1000, tol=0, seed=0) for s in ("hals-acc", E)
        ]
        goal = 1.01 * runs[0].loss
        first = [int(np.argmax(np.asarray(r.loss_history) <= goal)) for r in runs]
        assert 0 < first[1] < first[0]


def test_rebalancing_keeps_component_scales_together(rng):
    """Without rebalancing a column of W shrinks about 25 % an iteration on this fit while the
    row of H grows; with it the norms stay within a small factor of each other."""
    V = rng.random((20, 16)) + 0.1
    kw = dict(init="custom", Ws=[rng.random((20, 3))], H=rng.random((3, 16)), tol=0)
    res = dnmf.factorize(V, 3, solver=E, max_iter=300, **kw)
    ratio = np.linalg.norm(res.W(), axis=0) / np.linalg.norm(res.H, axis=1)
    assert np.all((ratio > 0.5) & (ratio < 2.0))
    ref = dnmf.factorize(V, 3, solver="hals-acc", max_iter=300, **kw)
    assert res.loss <= ref.loss * (1 + 1e-6)


def test_batched_equals_one_matrix_at_a_time(rng, monkeypatch):
    """Also when only some matrices of the batch restart or improve in an iteration (their
    pairs are then changed by index, the others' left as they are)."""
    import dnmf._solvers.extrapolation as ex

    kinds = []
    where = ex._where

    def spy(flags, device):
        index = where(flags, device)
        kinds.append("some" if isinstance(index, tuple) else index)
        return index

    monkeypatch.setattr(ex, "_where", spy)
    V = rng.random((3, 25, 18)) + 0.05
    batch = dnmf.factorize(V, 3, solver=E, max_iter=40, tol=0, seed=0)
    assert "some" in kinds and ... in kinds and None in kinds
    monkeypatch.setattr(ex, "_where", where)
    for i in range(3):
        one = dnmf.factorize(V[i], 3, solver=E, max_iter=40, tol=0, seed=0)
        np.testing.assert_allclose(batch.loss_history[:, i], one.loss_history, rtol=1e-8)
        np.testing.assert_allclose(batch.H[i], one.H, rtol=1e-6, atol=1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # two run out
def test_converged_matrices_of_a_batch_keep_their_best_pair(rng):
    """A matrix frozen at convergence holds the unprojected Ĥ in place; what comes back is
    its best feasible pair, with the reported loss."""
    V = np.stack([_planted(np.random.default_rng(s), 30, 20, 3, noise=0.0) for s in range(3)])
    V[2] += 0.5 * rng.random((30, 20))  # slower to converge than the exact rank-3 ones
    res = dnmf.factorize(V, 3, solver=E, max_iter=300, tol=1e-6, check_every=5, seed=0)
    assert len(set(np.asarray(res.n_iter).tolist())) > 1  # they stopped at different times
    Ws = res.W()
    for i in range(3):
        assert res.H[i].min() >= 0 and Ws[i].min() >= 0
        assert res.loss[i] == pytest.approx(_exact(V[i], Ws[i], res.H[i]), rel=1e-8, abs=1e-10)


def test_callback_stop_returns_the_best_pair(rng):
    V = _planted(rng)
    res = dnmf.factorize(
        V, 4, solver=E, max_iter=100, tol=0, seed=0, callback=lambda it, loss: it == 7
    )
    assert res.loss == pytest.approx(_exact(V, res.W(), res.H), rel=1e-10)
    assert len(res.loss_history) == 8


def test_float32_and_float64_agree(rng):
    V = _planted(rng)
    f64 = dnmf.factorize(V, 4, solver=E, max_iter=50, tol=0, seed=0)
    f32 = dnmf.factorize(V.astype(np.float32), 4, solver=E, max_iter=50, tol=0, seed=0)
    np.testing.assert_allclose(f32.loss_history, f64.loss_history, rtol=2e-3)


def test_penalties_deep_joint_fits_and_solve_h_run_without_extrapolation(rng):
    V = _planted(rng)
    kw = dict(max_iter=30, tol=0, seed=0)
    for extra in (dict(l1=0.1), dict(l2=0.2)):
        a, b = (dnmf.factorize(V, 4, solver=s, **kw, **extra) for s in ("hals-acc", E))
        np.testing.assert_array_equal(a.H, b.H)
    a, b = (dnmf.factorize(V, [5, 3], solver=s, pretrain=False, **kw) for s in ("hals-acc", E))
    np.testing.assert_array_equal(a.H, b.H)
    W = rng.random((40, 4))
    a, b = (dnmf.solve_h(V, [W], solver=s, max_iter=30, tol=0) for s in ("hals-acc", E))
    np.testing.assert_array_equal(a.H, b.H)


def test_deep_pretraining_extrapolates_each_layer(rng):
    V = _planted(rng)
    deep = dnmf.factorize(V, [5, 3], solver=E, pretrain=25, max_iter=1, tol=0, seed=0)
    one = dnmf.factorize(V, 5, solver=E, max_iter=25, tol=0, seed=0)
    np.testing.assert_allclose(deep.pretrain_loss_histories[0], one.loss_history, rtol=1e-12)


def test_solver_refuses_an_impossible_request(rng):
    V = rng.random((10, 8)) + 0.1
    with pytest.raises(ValueError, match=f"solver='{E}' solves beta=2, got beta=1"):
        dnmf.factorize(V, 2, solver=E, beta=1)
    with pytest.raises(ValueError, match="one layer with W and H both updated"):
        Vt, W, H = (torch.tensor(a) for a in (V, rng.random((10, 2)), rng.random((2, 8))))
        ExtrapolatedSolver(
            Vt, [W], H, Penalties.none(2), [False, True], "hals", None, None, Extrapolation()
        )


def test_distributed_columns_match_the_one_process_fit(rng):
    from dnmf.distributed import factorize_columns

    V = _planted(rng)
    kw = dict(init="nndsvda", seed=0, max_iter=25, tol=0)
    a = factorize_columns(V, [4], solver=E, **kw)
    b = dnmf.factorize(V, [4], solver=E, **kw)
    np.testing.assert_allclose(a.loss_history, b.loss_history, rtol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_and_cuda_agree(rng):
    V = rng.random((2, 30, 25))
    W0, H0 = rng.random((2, 30, 4)), rng.random((2, 4, 25))
    hist = {}
    for dev in ("cpu", "cuda"):
        Vt, W, H = (torch.tensor(a, dtype=torch.float64, device=dev) for a in (V, W0, H0))
        pen, both = Penalties.none(2), [True, True]
        accel = Acceleration(alpha=4.0)
        solver = ExtrapolatedSolver(Vt, [W], H, pen, both, "hals", accel, None, Extrapolation())
        out = iterate(solver, Vt, [W], H, max_iter=25, tol=0)
        hist[dev] = out.loss_history
        assert H.device.type == dev and float(H.min()) >= 0
    np.testing.assert_allclose(hist["cpu"], hist["cuda"], rtol=1e-9)
