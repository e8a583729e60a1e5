"""A column-major V (the transpose of a row-major array) is fitted by the HALS solvers as its
row-major copy is: the products read a row-major copy of V for V Hᵀ (and V's own memory as the
row-major Vᵀ), so from the same start every iterate is the same to the last bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dnmf
import dnmf._solvers.hals as hals


@pytest.mark.parametrize("solver", ["hals", "hals-acc", "hals-acc-e"])
@pytest.mark.parametrize("ranks", [[4], [5, 3]])
def test_column_major_v_fits_as_its_row_major_copy(solver, ranks):
    rng = np.random.default_rng(0)
    V = rng.random((90, 14))
    start = dnmf.factorize(V, ranks, max_iter=2, tol=0, seed=0, solver="mu")
    kw = dict(solver=solver, init="custom", Ws=start.Ws, H=start.H, max_iter=12, tol=0)
    row = dnmf.factorize(np.ascontiguousarray(V), ranks, **kw)
    col = dnmf.factorize(np.asfortranarray(V), ranks, **kw)
    np.testing.assert_array_equal(col.loss_history, row.loss_history)
    np.testing.assert_array_equal(col.H, row.H)
    for a, b in zip(col.Ws, row.Ws):
        np.testing.assert_array_equal(a, b)


def test_the_row_major_copy_is_made_only_for_a_column_major_v(monkeypatch):
    seen = []
    real = hals.BlockSolver._prepare

    def spy(self, *args):
        out = real(self, *args)
        seen.append(None if self.Vr is None else (self.Vr.is_contiguous(), self.Vt.data_ptr()))
        return out

    monkeypatch.setattr(hals.BlockSolver, "_prepare", spy)
    V = np.random.default_rng(1).random((40, 12))
    dnmf.factorize(np.asfortranarray(V), 3, solver="hals", max_iter=2, tol=0)
    dnmf.factorize(V, 3, solver="hals", max_iter=2, tol=0)
    dnmf.factorize(V * (V < 0.05), 3, solver="hals", max_iter=2, tol=0)  # CSR products
    assert seen[0][0] is True  # a row-major copy of the column-major V …
    assert seen[1:] == [None, None]  # … and none for a row-major or mostly-zero V
    assert not hals._column_major(torch.zeros(1, 5).T) and hals._column_major(torch.zeros(3, 5).T)
