"""Blind coupled-dictionary (Deep) NMF deblurring on a tiny synthetic set."""

import pytest
import torch

from dnmf.deblur.coupled import CoupledDeblur


@pytest.fixture(scope="module")
def data(kit):
    op = kit.ConvBlur(sigma=1.2)
    xtr, xte = kit.synthetic(16, seed=1), kit.synthetic(4, seed=2)
    return kit.quant(op.A(xtr)), xtr, kit.quant(op.A(xte)), xte


@pytest.mark.parametrize(
    "ranks,coder,code_iter", [((24,), "mu", 40), ((32, 16), "mu", 40), ((32, 16), "hals", 10)]
)
def test_beats_blurred_input(data, ranks, coder, code_iter, kit):
    ytr, xtr, yte, xte = data
    m = CoupledDeblur(
        size=4,
        context=2,
        stride=2,
        ranks=ranks,
        n_patches=3000,
        fit_iter=40,
        code_iter=code_iter,
        coder=coder,
        seed=0,
    ).fit(ytr, xtr)
    out = m.restore(yte)
    assert out.shape == yte.shape and out.min() >= 0 and out.max() <= 1
    assert kit.psnr(out, xte) > kit.psnr(yte, xte) + 0.5
    assert len(m.Ws_) == len(ranks) and all((W >= 0).all() for W in m.Ws_)


@pytest.mark.parametrize(
    "kw",
    [
        dict(target="sharp", normalise="mean", context=0),
        dict(target="residual", normalise="none", refit=False),
    ],
)
def test_variants_run(data, kw, kit):
    ytr, xtr, yte, _ = data
    m = CoupledDeblur(
        size=4,
        stride=2,
        ranks=(16,),
        n_patches=1500,
        fit_iter=10,
        code_iter=10,
        **{"context": 1, **kw},
    ).fit(ytr, xtr)
    assert m.restore(yte).shape == yte.shape
    assert m.restore(yte, stride=1).shape == yte.shape  # denser overlap at restore time


def test_save_load_round_trip(data, tmp_path, kit):
    ytr, xtr, yte, _ = data
    m = CoupledDeblur(
        size=4, context=1, stride=2, ranks=(16, 8), n_patches=1500, fit_iter=10, code_iter=10
    ).fit(ytr, xtr)
    m.save(tmp_path / "c.npz")
    back = CoupledDeblur.load(tmp_path / "c.npz")
    assert back.get_params() == m.get_params()
    assert torch.allclose(back.restore(yte), m.restore(yte), atol=1e-6)


def test_two_stage_cascade_improves_and_round_trips(data, tmp_path, kit):
    ytr, xtr, yte, xte = data
    one = CoupledDeblur(
        size=4,
        context=2,
        stride=2,
        ranks=(24, 12),
        n_patches=2000,
        fit_iter=20,
        coder="hals",
        code_iter=10,
        seed=0,
    ).fit(ytr, xtr)
    two = CoupledDeblur(
        size=4,
        context=2,
        stride=2,
        ranks=(24, 12),
        n_patches=2000,
        fit_iter=20,
        coder="hals",
        code_iter=10,
        stages=2,
        seed=0,
    ).fit(ytr, xtr)
    assert two.next_ is not None and two.n_parameters() == 2 * one.n_parameters()
    out = two.restore(yte)
    assert kit.psnr(out, xte) > kit.psnr(yte, xte) + 0.5
    assert torch.allclose(two.next_.restore(one.restore(yte)), out, atol=1e-6)
    two.save(tmp_path / "c.npz")
    back = CoupledDeblur.load(tmp_path / "c.npz")
    assert back.next_ is not None and torch.allclose(back.restore(yte), out, atol=1e-6)


def test_errors(data, kit):
    ytr, xtr, _, _ = data
    with pytest.raises(ValueError, match="target"):
        CoupledDeblur(target="edges")
    with pytest.raises(ValueError, match="normalise"):
        CoupledDeblur(normalise="yes")
    with pytest.raises(ValueError):
        CoupledDeblur(coder="lbfgs")
    with pytest.raises(ValueError):
        CoupledDeblur(stages=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        CoupledDeblur().restore(ytr)
    with pytest.raises(ValueError, match="shapes"):
        CoupledDeblur().fit(ytr, xtr[:2])
