"""The first non-blind prior (an ablation, experiments.mu_prior): MU keeps H >= 0 and is
monotone, safely accelerated."""

import numpy as np
import pytest
import torch

from benchmarks.blur import BlurOperator
from dnmf.deblur.codes import nonneg_codes
from dnmf.deblur.hqs import LinearOperator
from dnmf.deblur.patches import PatchGrid
from experiments.deblur_ablation import run_mu_row
from experiments.mu_prior import MU_ITER_GRID, MU_START_FACTORS, DeepNMFPriorMU, deblur_mu


@pytest.fixture(scope="module")
def fitted(kit):
    torch.manual_seed(0)
    prior = DeepNMFPriorMU(
        size=4,
        stride=2,
        ranks=(24, 12),
        n_patches=3000,
        fit_iter=40,
        code_iter=30,
        n_iter=40,
        seed=0,
    )
    return prior.fit(kit.synthetic(12, seed=1))


def test_operator_protocol_and_adjoint(kit):
    op = kit.ConvBlur()
    assert isinstance(op, LinearOperator)
    x, y = (
        torch.rand(2, 3, 20, 17, dtype=torch.float64),
        torch.rand(2, 3, 20, 17, dtype=torch.float64),
    )
    assert torch.allclose((op.A(x) * y).sum(), (x * op.A_adjoint(y)).sum())


@pytest.mark.parametrize("l1", [0.0, 0.05])
def test_plain_mu_nonnegative_and_monotone(fitted, l1, kit):
    op = kit.ConvBlur()
    y = kit.quant(op.A(kit.synthetic(3, seed=7)))
    W = fitted.dictionary()
    grid = PatchGrid(24, 24, 4, 2)
    H0 = nonneg_codes(grid.extract(y, mode="reflect"), W, n_iter=5, coder="mu")
    res = deblur_mu(y, op, W, grid, H0, n_iter=30, l1=l1, accelerate=False)
    assert (res.H >= 0).all()
    hist = np.stack(res.history)  # (iterations + 1, N)
    assert (np.diff(hist, axis=0) <= 1e-6 * hist[:-1]).all()
    assert (hist[-1] < hist[0]).all()


def test_accelerated_is_monotone_and_not_worse_than_plain(fitted, kit):
    op = kit.ConvBlur()
    y = kit.quant(op.A(kit.synthetic(3, seed=8)))
    W = fitted.dictionary()
    grid = PatchGrid(24, 24, 4, 2)
    H0 = nonneg_codes(grid.extract(y, mode="reflect"), W, n_iter=5, coder="mu")
    plain = deblur_mu(y, op, W, grid, H0, n_iter=40, accelerate=False)
    acc = deblur_mu(y, op, W, grid, H0, n_iter=40, accelerate=True)
    assert (acc.H >= 0).all()
    hist = np.stack(acc.history)
    assert (np.diff(hist, axis=0) <= 1e-6 * hist[:-1]).all()
    assert (hist[-1] <= np.stack(plain.history)[-1] * (1 + 1e-6)).all()
    assert acc.accepted > 0


def test_restore_beats_blurred_input(fitted, kit):
    op = kit.ConvBlur()
    x = kit.synthetic(4, seed=9)
    y = kit.quant(op.A(x))
    out = fitted.restore(y, op, init="y", n_iter=60).x
    assert out.shape == y.shape
    assert kit.psnr(out, x) > kit.psnr(y, x) + 0.5


def test_save_load_round_trip(fitted, tmp_path, kit):
    op = kit.ConvBlur()
    y = kit.quant(op.A(kit.synthetic(2, seed=10)))
    fitted.save(tmp_path / "prior.npz")
    back = DeepNMFPriorMU.load(tmp_path / "prior.npz")
    assert back.get_params() == fitted.get_params()
    a = fitted.restore(y, op, init="y", n_iter=5).x
    b = back.restore(y, op, init="y", n_iter=5).x
    assert torch.allclose(a, b, atol=1e-6)


def test_bad_init_rejected(kit):
    with pytest.raises(ValueError, match="init"):
        DeepNMFPriorMU(init="wiener")


def test_the_ablation_row_runs_it_from_a_wiener_start(fitted, kit):
    """experiments.deblur_ablation's MU row (what stays of the adapter's former solver="mu"):
    Wiener starts and MU iterations of the grids, the best pair on the images given."""
    blur = BlurOperator.gaussian(9, 1.5)
    x = kit.synthetic(3, seed=11)
    y = kit.quant(blur.A(x))
    p, s, sec, chosen = run_mu_row(fitted, y, x, blur, balance=1e-2)
    assert p > kit.psnr(y, x) + 0.5 and 0 < s <= 1 and sec > 0
    f, n = chosen.split("×, ")
    assert float(f.removeprefix("start ")) in MU_START_FACTORS
    assert int(n.split()[0]) in MU_ITER_GRID
