"""``pretrain`` given as a numpy bool or integer acts as the Python value it stands for.

``pretrain=np.True_`` used to pass the checks and then pretrain each layer for
``int(np.True_) = 1`` iteration instead of ``max_iter``, and ``np.False_`` ran a pretraining
of 0 iterations instead of skipping it: the value is now normalised where it is checked.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import dnmf
from dnmf.distributed import factorize_columns

V = np.random.default_rng(0).random((12, 10))
NUMPY_AND_PYTHON = [(np.True_, True), (np.False_, False), (np.int64(3), 3)]
IDS = ["np_True", "np_False", "np_int64"]


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dnmf.ConvergenceWarning)
        return fn(*args, **kw)


def _same_fit(a, b) -> None:
    assert [len(h) for h in a.pretrain_loss_histories] == [
        len(h) for h in b.pretrain_loss_histories
    ]
    for x, y in zip(a.pretrain_loss_histories, b.pretrain_loss_histories):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.H, b.H)
    np.testing.assert_array_equal(a.loss_history, b.loss_history)


@pytest.mark.parametrize("given, python", NUMPY_AND_PYTHON, ids=IDS)
def test_bad_input_numpy_pretrain_in_factorize_acts_as_the_python_value(given, python):
    fits = [
        _quiet(dnmf.factorize, V, [4, 2], pretrain=p, max_iter=6, tol=0) for p in (given, python)
    ]
    _same_fit(*fits)


@pytest.mark.parametrize("given, python", NUMPY_AND_PYTHON, ids=IDS)
def test_bad_input_numpy_pretrain_in_factorize_columns_acts_as_the_python_value(given, python):
    kw = dict(max_iter=6, tol=0, seed=0)
    fits = [_quiet(factorize_columns, V, [4, 2], pretrain=p, **kw) for p in (given, python)]
    _same_fit(*fits)


def test_bad_input_numpy_pretrain_in_select_ranks_acts_as_the_python_value():
    kw = dict(folds=2, max_iter=5, tol=0, seed=0)
    a, b = (
        _quiet(dnmf.select_ranks, V, [(3, 2), (4, 2)], pretrain=p, **kw) for p in (np.True_, True)
    )
    np.testing.assert_array_equal(
        a.cv_results()["mean_heldout_loss"], b.cv_results()["mean_heldout_loss"]
    )
    with pytest.raises(ValueError, match="needs rank tuples and pretrain != False"):
        dnmf.select_ranks(V, [(3, 2)], criterion="layerwise", pretrain=np.False_, **kw)


@pytest.mark.parametrize("bad", [0, np.int64(0), -1, 1.0, "yes", None], ids=repr)
def test_bad_input_pretrain_that_is_not_a_bool_or_positive_int_is_refused(bad):
    with pytest.raises(ValueError, match=r"pretrain must be a bool or an int >= 1 .* got"):
        dnmf.factorize(V, [4, 2], pretrain=bad, max_iter=2)
