"""dnmf.select_ranks: the batched fits are factorize's masked fits, held-out entries never reach
a fit, planted ranks are found, noise picks the smallest rank, and bad input is refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import dnmf
from dnmf._rank_selection import cv_fits as _cv_fits
from dnmf.select import choose, parse_candidates


def _planted(seed: int, m: int = 60, n: int = 50, r: int = 6, sigma: float = 0.1) -> np.ndarray:
    """Sparse nonnegative rank-``r`` factors plus Gaussian noise (σ relative to the mean)."""
    rng = np.random.default_rng(seed)
    W = rng.random((m, r)) * (rng.random((m, r)) < 0.5)
    H = rng.random((r, n)) * (rng.random((r, n)) < 0.5)
    X = W @ H
    return np.clip(X + sigma * X.mean() * rng.standard_normal((m, n)), 0, None)


def _loop(V: np.ndarray, sel: dnmf.RankSelection, cand, **kw) -> np.ndarray:
    """The same fits through the public API, one at a time: held-out loss per entry (F, S).
    β = 2 fits of a search are weighted HALS (``solver='hals'``), other β's ``'mu'``."""
    kw.setdefault("solver", "hals" if kw.get("beta", 2) == 2 else "mu")
    F, S = sel.fit_seeds.shape
    out = np.zeros((F, S))
    for f in range(F):
        E = sel.heldout_mask(f)
        M = (~E).astype(V.dtype)
        for s in range(S):
            res = dnmf.factorize(V * M, cand, mask=M, seed=int(sel.fit_seeds[f, s]), **kw)
            out[f, s] = 0.5 * ((V - res.reconstruct())[E] ** 2).sum() / E.sum()
    return out


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dnmf.ConvergenceWarning)
        return fn(*args, **kw)


@pytest.mark.parametrize("solver", ["gram", "masked"])
def test_one_layer_fits_are_factorize_fits(rng, solver):
    V = rng.random((31, 6)) @ rng.random((6, 27)) + 0.05 * rng.random((31, 27))
    kw = dict(max_iter=60, tol=1e-4)
    cands = [2, 4, 7]
    sel = _quiet(dnmf.select_ranks, V, cands, seed=3, folds=3, solver=solver, **kw)
    ref = np.stack([_quiet(_loop, V, sel, c, **kw) for c in cands])
    np.testing.assert_allclose(sel.heldout, ref, rtol=1e-9)


@pytest.mark.parametrize("solver", ["gram", "masked"])
@pytest.mark.parametrize("pretrain", [True, False])
def test_deep_fits_are_factorize_fits(rng, solver, pretrain):
    V = rng.random((33, 6)) @ rng.random((6, 26)) + 0.05 * rng.random((33, 26))
    kw = dict(max_iter=30, tol=1e-4, pretrain=pretrain)
    cands = [(8, 3), (8, 5), (10, 5)]
    sel = _quiet(dnmf.select_ranks, V, cands, seed=1, folds=2, solver=solver, **kw)
    ref = np.stack([_quiet(_loop, V, sel, c, **kw) for c in cands])
    np.testing.assert_allclose(sel.heldout, ref, rtol=1e-9)


def test_entries_pattern_and_restarts_are_factorize_fits(rng):
    V = rng.random((25, 5)) @ rng.random((5, 22))
    kw = dict(max_iter=40, tol=0, init="random")
    sel = dnmf.select_ranks(
        V, [3, 5], seed=0, folds=2, restarts=2, holdout=0.15, holdout_pattern="entries", **kw
    )
    assert sel.solver == "masked" and sel.heldout.shape == (2, 2, 2)
    assert abs(sel.heldout_mask(0).mean() - 0.15) < 0.01
    assert not (sel.heldout_mask(0) & sel.heldout_mask(1)).any()  # disjoint folds
    ref = np.stack([_loop(V, sel, c, **kw) for c in [3, 5]])
    np.testing.assert_allclose(sel.heldout, ref, rtol=1e-9)


@pytest.mark.parametrize("solver", ["gram", "masked"])
def test_padded_batch_equals_one_candidate_at_a_time(rng, monkeypatch, solver):
    V = rng.random((30, 24))
    kw = dict(max_iter=25, tol=0, seed=2, folds=2, solver=solver)
    monkeypatch.setattr(_cv_fits, "_pad_together", lambda *a: True)
    a = dnmf.select_ranks(V, [2, 5, 3], **kw)
    monkeypatch.setattr(_cv_fits, "_pad_together", lambda *a: False)
    b = dnmf.select_ranks(V, [2, 5, 3], **kw)
    np.testing.assert_allclose(a.heldout, b.heldout, rtol=1e-10)
    np.testing.assert_allclose(a.train, b.train, rtol=1e-10)


def test_block_folds_hide_one_block_per_row_and_column_group(rng):
    sel = dnmf.select_ranks(rng.random((37, 31)), [2], folds=4, max_iter=2, tol=0, seed=5)
    masks = np.stack([sel.heldout_mask(f) for f in range(4)])
    assert sel.holdout == pytest.approx(0.1)
    assert not (masks.sum(axis=0) > 1).any()  # disjoint
    for E in masks:  # every row and column loses a tenth of its entries (group sizes vary by 1)
        assert np.all(np.abs(E.sum(axis=1) - 31 / 10) <= 1)
        assert np.all(np.abs(E.sum(axis=0) - 37 / 10) <= 1)


@pytest.mark.parametrize("solver", ["gram", "masked"])
def test_heldout_values_never_reach_a_fit(rng, solver):
    V = rng.random((28, 4)) @ rng.random((4, 24)) + 0.1
    kw = dict(max_iter=30, tol=1e-4, seed=4, folds=3, solver=solver)
    a = _quiet(dnmf.select_ranks, V, [2, 3], **kw)
    E = a.heldout_mask(0)
    V2 = V.copy()
    V2[E] = rng.random(int(E.sum())) * 100
    b = _quiet(dnmf.select_ranks, V2, [2, 3], **kw)
    # fold 0 never saw those entries: its fits and training losses are bit-identical ...
    np.testing.assert_array_equal(a.train[:, 0], b.train[:, 0])
    np.testing.assert_array_equal(a.n_iter[:, 0], b.n_iter[:, 0])
    # ... while its held-out loss (scored on them) and the other folds (trained on them) change
    assert np.all(b.heldout[:, 0] > 10 * a.heldout[:, 0])
    assert not np.allclose(a.train[:, 1:], b.train[:, 1:])


def test_planted_rank_found_one_seed():
    sel = _quiet(dnmf.select_ranks, _planted(0), [4, 5, 6, 7, 8], max_iter=400, tol=1e-7, seed=0)
    assert sel.best == 6
    table = sel.table
    assert list(table["candidate"]) == [4, 5, 6, 7, 8]
    assert table["chosen"].sum() == 1 and bool(table.loc[2, "chosen"])


@pytest.mark.slow
def test_planted_rank_found_in_nine_of_ten_seeds():
    picks = [
        _quiet(dnmf.select_ranks, _planted(s), [4, 5, 6, 7, 8], max_iter=400, tol=1e-7, seed=s).best
        for s in range(10)
    ]
    assert sum(p == 6 for p in picks) >= 9, picks


def _planted_deep(seed: int, m: int = 60, n: int = 50) -> np.ndarray:
    """``W1 W2 H`` with ranks (12, 5) (sparse factors) plus noise."""
    rng = np.random.default_rng(seed)
    W1, W2, H = (rng.random(s) * (rng.random(s) < 0.5) for s in [(m, 12), (12, 5), (5, n)])
    X = W1 @ W2 @ H
    return np.clip(X + 0.1 * X.mean() * rng.standard_normal((m, n)), 0, None)


@pytest.mark.slow
def test_planted_deep_last_rank_found_in_nine_of_ten_seeds():
    # The product W1 W2 H identifies the last rank only: (8, 5) and (12, 5) represent the same
    # matrices (nonnegative rank <= 5), so r1 is not asserted (see the docstring of criterion).
    grid = dnmf.rank_grid([8, 12], [3, 5, 8])
    picks = [
        _quiet(dnmf.select_ranks, _planted_deep(s), grid, max_iter=300, tol=1e-7, seed=s).best
        for s in range(10)
    ]
    assert sum(p[1] == 5 for p in picks) >= 9, picks


def test_layerwise_criterion_scores_every_layer(rng):
    V = _planted_deep(0, m=40, n=36)
    sel = _quiet(
        dnmf.select_ranks, V, [(8, 3), (8, 5), (12, 5)], criterion="layerwise", folds=2,
        max_iter=40, seed=0,
    )  # fmt: skip
    res = sel.cv_results()
    assert sel.criterion == "layerwise" and len(sel.layer_heldout) == 2
    l1 = res["mean_heldout_loss_layer1"]
    assert l1[0] == l1[1] != l1[2]  # layer 1 depends on r1 only
    assert np.all(res["mean_heldout_loss_layer2"] > 0)


def test_layerwise_choice_goes_layer_by_layer():
    from dnmf._rank_selection.cv_layers import choose_layerwise

    ranks = [(8, 3), (8, 5), (12, 3), (12, 5)]
    layer1 = np.array([[2.0, 2.0], [2.0, 2.0], [1.0, 1.0], [1.0, 1.0]])  # r1 = 12 wins
    layer2 = np.array([[0.1, 0.1], [0.9, 0.9], [0.5, 0.5], [0.2, 0.2]])  # then r2 = 5
    assert choose_layerwise(ranks, [layer1, layer2], "min", choose) == 3


def test_pure_noise_picks_the_smallest_candidate():
    picks = []
    for s in range(3):
        V = np.random.default_rng(s).random((40, 30))
        picks.append(_quiet(dnmf.select_ranks, V, [1, 2, 3, 4], max_iter=200, seed=s).best)
    assert picks == [1, 1, 1]


def test_one_standard_error_rule_prefers_the_simpler_candidate():
    mean = np.array([3.0, 2.05, 2.0, 2.3])
    se = np.array([0.1, 0.1, 0.1, 0.1])
    params = np.array([10, 20, 30, 40])
    assert choose(mean, se, params, "min") == 2
    assert choose(mean, se, params, "1se") == 1


def test_cv_results_and_table(rng):
    sel = dnmf.select_ranks(rng.random((20, 20)), [1, 3], folds=2, max_iter=5, tol=0, seed=0)
    res = sel.cv_results()
    for key in ("mean_heldout_loss", "std_heldout_loss", "mean_train_loss", "n_fits", "chosen"):
        assert res[key].shape == (2,)
    assert res["n_fits"].tolist() == [2, 2]
    assert set(res) >= {"split0_heldout_loss", "split1_heldout_loss"}
    assert np.all(res["mean_heldout_loss"] > 0) and np.all(res["mean_train_loss"] > 0)
    assert list(sel.table.columns[:3]) == ["candidate", "n_params", "mean_heldout_loss"]


def test_rank_grid_keeps_strictly_decreasing_tuples():
    assert dnmf.rank_grid([8, 12], [4, 8]) == [(8, 4), (12, 4), (12, 8)]
    assert dnmf.rank_grid([3, 1]) == [(1,), (3,)]
    with pytest.raises(ValueError, match="no strictly decreasing"):
        dnmf.rank_grid([2], [4])


def test_candidates_keep_their_form():
    given, tuples = parse_candidates([3, [5]])
    assert given == [3, 5] and tuples == [(3,), (5,)]
    given, tuples = parse_candidates([(6, 2), (8, 3)])
    assert given == [(6, 2), (8, 3)]


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(candidates=[]), "at least one rank"),
        (dict(candidates=[0, 2]), "ranks >= 1"),
        (dict(candidates=[2, (4, 2)]), "same number of layers"),
        (dict(candidates=[3, 3]), "distinct"),
        (dict(candidates=["a"]), "ints >= 1 or tuples"),
        (dict(candidates=5), "sequence of ranks"),
        (dict(holdout=0), "holdout must be a fraction"),
        (dict(holdout=0.7), "holdout must be a fraction"),
        (dict(holdout=0.25, folds=5), "folds \\* holdout <= 1"),
        (dict(rule="best"), "rule must be one of"),
        (dict(holdout_pattern="rows"), "holdout_pattern must be one of"),
        (dict(solver="gram", beta=1), "solver='gram' needs beta=2"),
        (dict(solver="fast"), "solver must be one of"),
        (dict(criterion="layerwise"), "needs rank tuples"),
        (dict(criterion="auto"), "criterion must be one of"),
        (dict(init="custom"), "init='custom'"),
        (dict(folds=0), "folds must be an int >= 1"),
        (dict(restarts=1.5), "restarts must be an int >= 1"),
        (dict(max_iter=0), "max_iter"),
    ],
)
def test_bad_arguments_are_refused(rng, kw, match):
    kw = {"candidates": [1, 2], **kw}
    with pytest.raises((ValueError, TypeError), match=match):
        dnmf.select_ranks(rng.random((20, 20)), **kw)


def test_bad_data_is_refused(rng):
    with pytest.raises(ValueError, match="nonnegative"):
        dnmf.select_ranks(-rng.random((20, 20)), [1])
    with pytest.raises(ValueError, match="2-D"):
        dnmf.select_ranks(rng.random((2, 20, 20)), [1])
    with pytest.raises(ValueError, match="at least 10 rows and columns"):
        dnmf.select_ranks(rng.random((5, 20)), [1])
    with pytest.raises(ValueError, match="first rank <= min"):
        dnmf.select_ranks(rng.random((20, 20)), [25])
    with pytest.raises(ValueError, match="V > 0"):
        dnmf.select_ranks(rng.random((20, 20)) * (rng.random((20, 20)) > 0.1), [1], beta=0)


def test_float32_is_kept_and_close_to_float64(rng):
    V = rng.random((30, 26))
    a = dnmf.select_ranks(V, [2, 4], max_iter=20, tol=0, seed=0, folds=2)
    b = dnmf.select_ranks(V.astype(np.float32), [2, 4], max_iter=20, tol=0, seed=0, folds=2)
    np.testing.assert_allclose(a.heldout, b.heldout, rtol=1e-4)


def test_cpu_and_device_agree(rng, device):
    V = torch.as_tensor(rng.random((30, 24)))
    kw = dict(max_iter=20, tol=0, seed=0, folds=2)
    a = dnmf.select_ranks(V, [2, 4], **kw)
    b = dnmf.select_ranks(V.to(device), [2, 4], **kw)
    np.testing.assert_allclose(a.heldout, b.heldout, rtol=1e-9)
    assert b.best == a.best


def test_factorize_auto_fits_the_chosen_ranks(rng):
    V = _planted(1, m=40, n=36, r=3)
    res = _quiet(dnmf.factorize, V, "auto", rank_candidates=[2, 3, 5], max_iter=300, seed=0)
    assert res.ranks == (res.rank_selection.best,)
    assert res.rank_selection.best == 3
    with pytest.raises(ValueError, match="'auto'"):
        dnmf.factorize(V, "best")


def test_deepnmf_auto_keeps_cv_results(rng):
    X = _planted(2, m=36, n=40, r=3).T
    est = _quiet(
        dnmf.DeepNMF(
            n_components="auto", rank_candidates=[2, 3, 5], max_iter=300, random_state=0
        ).fit,
        X,
    )
    assert est.n_components_ == 3
    assert est.cv_results_["candidate"].tolist() == [2, 3, 5]
    assert est.cv_results_["chosen"].tolist() == [False, True, False]
    est.set_params(n_components=2).fit(X)  # a later fit with fixed ranks drops the search
    assert not hasattr(est, "cv_results_")
