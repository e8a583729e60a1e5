"""DeepNMFPrior (half-quadratic splitting): restores, is batch-independent, round-trips, checks."""

import numpy as np
import pytest
import torch

from dnmf.deblur.prior import DeepNMFPrior

SMALL = dict(size=4, ranks=(16, 8), n_patches=2000, fit_iter=20, stride=2, n_stages=4,
             sigma_max=0.05, sigma_min=0.005, weight=1e-6, sparsity=0.5)  # fmt: skip


@pytest.fixture(scope="module")
def fitted(kit):
    return DeepNMFPrior(**SMALL, seed=0).fit(kit.synthetic(12, seed=1))


def _with(fitted, **kw):
    """A model with ``fitted``'s dictionary and other restoration settings."""
    m = DeepNMFPrior(**{**SMALL, **kw})
    m.Ws_, m.channels_ = [W.to(m.device) for W in fitted.Ws_], fitted.channels_
    return m


@pytest.fixture(scope="module")
def blurred(kit):
    op = kit.ReflectBlur(sigma=1.2)
    x = kit.synthetic(3, seed=9)
    return op, x, kit.quant(op.A(x))


@pytest.mark.parametrize(
    "kw",
    [
        {},
        dict(coding="onoff"),
        dict(depth="layered", n_outer=1),
        dict(depth="layered", coding="onoff", mirror=True),
        dict(x_step="cg"),
    ],
)
def test_restore_beats_the_blurred_input(fitted, blurred, kit, kw):
    op, x, y = blurred
    res = _with(fitted, **kw).restore(y, op, snapshots=(1, 4))
    assert res.x.shape == y.shape and set(res.snapshots) == {1, 4}
    assert kit.psnr(res.x, x) > kit.psnr(y, x) + 1.0


def test_cg_x_step_handles_another_boundary(fitted, kit):
    """The FFT x-step models a reflect boundary; CG solves any operator's own equations."""
    op = kit.ConvBlur(sigma=1.2)  # zero boundary
    x = kit.synthetic(3, seed=9)
    y = kit.quant(op.A(x))
    cg = _with(fitted, x_step="cg").restore(y, op).x
    assert kit.psnr(cg, x) > kit.psnr(y, x) + 1.0


def test_images_do_not_depend_on_their_batch(fitted, blurred):
    op, _, y = blurred
    one = _with(fitted, batch=1).restore(y, op).x
    three = _with(fitted, batch=3).restore(y, op).x
    assert torch.allclose(one, three, atol=1e-5)


def test_device_path(fitted, blurred, device, kit):
    op, x, y = blurred
    m = _with(fitted, device=device)
    out = m.restore(y.to(device), op).x
    assert out.device.type == device.type
    assert kit.psnr(out.cpu(), x) > kit.psnr(y, x) + 1.0


def test_save_load_round_trip(fitted, blurred, tmp_path):
    op, _, y = blurred
    fitted.save(tmp_path / "sub" / "prior.npz")  # the folder is made
    back = DeepNMFPrior.load(tmp_path / "sub" / "prior.npz")
    assert back.get_params() == fitted.get_params()
    assert back.n_parameters() == fitted.n_parameters() == 2 * 16 * 16 + 16 * 8
    assert torch.allclose(back.restore(y, op).x, fitted.restore(y, op).x, atol=1e-6)
    np.savez(tmp_path / "other.npz", W1=np.ones((2, 2)))
    with pytest.raises(ValueError, match="not a saved DeepNMFPrior"):
        DeepNMFPrior.load(tmp_path / "other.npz")


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(colour="lab"), "colour"),
        (dict(coding="signed"), "coding"),
        (dict(depth="wide"), "depth"),
        (dict(x_step="dct"), "x_step"),
        (dict(stride=5, size=4), "stride"),
        (dict(ranks=()), "ranks"),
        (dict(sparsity=-1.0), "sparsity"),
        (dict(weight=0.0), "weight"),
        (dict(sigma_max=0.001, sigma_min=0.01), "sigma_min"),
        (dict(n_stages=0), "n_stages"),
    ],
)
def test_bad_parameters(kw, match, kit):
    with pytest.raises(ValueError, match=match):
        DeepNMFPrior(**{**SMALL, **kw}).fit(kit.synthetic(2, seed=0))


def test_not_fitted(blurred):
    op, _, y = blurred
    with pytest.raises(RuntimeError, match="not fitted"):
        DeepNMFPrior(**SMALL).restore(y, op)
