"""EPLL: the Gaussian-mixture patch MAP step, fitting on sharp images, restoring, the adapter."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from benchmarks.blur import BlurOperator, degrade
from benchmarks.gmm_prior import EPLL, GMMPatchPrior
from benchmarks.methods import get_method
from benchmarks.methods.base import MethodContext
from benchmarks.metrics import psnr
from benchmarks.pairs import PairSet
from benchmarks.presets import get_preset


def _gaussians(d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    big = A @ A.T + 0.1 * torch.eye(d, dtype=torch.float64)
    small = 1e-4 * torch.eye(d, dtype=torch.float64)
    return big, small


def _prior(covs, means, weights):
    s, U = torch.linalg.eigh(torch.stack(covs))
    return GMMPatchPrior(torch.stack(means), U, s, torch.tensor(weights, dtype=torch.float64))


def test_one_component_map_is_the_wiener_filter():
    big, _ = _gaussians()
    mu = torch.linspace(-0.2, 0.2, 5, dtype=torch.float64)
    prior = _prior([big], [mu], [1.0])
    P = torch.randn(5, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sigma = 0.3
    want = mu[:, None] + big @ torch.linalg.solve(
        big + sigma**2 * torch.eye(5, dtype=torch.float64), P - mu[:, None]
    )
    assert torch.allclose(prior(P, sigma), want, atol=1e-10)


def test_each_patch_goes_to_its_most_likely_component():
    big, small = _gaussians()
    z = torch.zeros(5, dtype=torch.float64)
    prior = _prior([big, small], [z, z + 1.0], [0.5, 0.5])
    g = torch.Generator().manual_seed(2)
    near_small = 1.0 + 0.01 * torch.randn(5, 20, generator=g, dtype=torch.float64)
    out = prior(near_small, 0.001)
    # the tight component (mean 1, variance 1e-4) pulls its patches onto its mean
    assert float((out - 1.0).abs().max()) < float((near_small - 1.0).abs().max())
    far = 3.0 * torch.randn(5, 20, generator=g, dtype=torch.float64)
    assert torch.allclose(prior(far, 1e-3), far, atol=0.05)  # broad component: almost unchanged
    prior.chunk = 7  # chunking gives the same answer
    assert torch.allclose(
        prior(far, 1e-3), _prior([big, small], [z, z + 1.0], [0.5, 0.5])(far, 1e-3)
    )


@pytest.fixture(scope="module")
def fitted(faces_of):
    m = EPLL(size=4, n_components=4, n_patches=3000, max_iter=30, stride=2, n_stages=4,
             sigma_max=0.05, sigma_min=0.005, weight=1e-6)  # fmt: skip
    with warnings.catch_warnings():  # a deliberately short EM run
        warnings.simplefilter("ignore", ConvergenceWarning)
        m.fit(faces_of(12, seed=0))
    return m


def test_restore_beats_the_blurred_input_and_round_trips(fitted, tmp_path, faces_of):
    blur = BlurOperator.gaussian(9, 1.5)
    x = faces_of(3, seed=5)
    y = degrade(x, blur)
    res = fitted.restore(y, blur, snapshots=(1, 4))
    assert res.x.shape == x.shape and set(res.snapshots) == {1, 4}
    assert float(psnr(res.x.clamp(0, 1), x).mean()) > float(psnr(y, x).mean()) + 1.0
    fitted.save(tmp_path / "epll.npz")
    back = EPLL.load(tmp_path / "epll.npz")
    assert back.get_params() == fitted.get_params()
    assert torch.allclose(back.restore(y, blur).x, res.x, atol=1e-6)
    assert fitted.n_parameters() == 4 * (1 + 16 + 16 * 17 // 2)


def test_bad_parameters_and_files(tmp_path, faces_of):
    with pytest.raises(ValueError, match="colour"):
        EPLL(colour="lab").fit(faces_of(2, seed=1))
    with pytest.raises(ValueError, match="stride"):
        EPLL(size=4, stride=5).fit(faces_of(2, seed=1))
    with pytest.raises(ValueError, match="sigma_min"):
        EPLL(sigma_max=0.01, sigma_min=0.1).fit(faces_of(2, seed=1))
    with pytest.raises(RuntimeError, match="not fitted"):
        EPLL().restore(faces_of(1, seed=1), BlurOperator.gaussian(9, 1.5))
    np.savez(tmp_path / "other.npz", W1=np.ones((2, 2)))
    with pytest.raises(ValueError, match="not an EPLL checkpoint"):
        EPLL.load(tmp_path / "other.npz")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # smoke budget
def test_method_adapter_fits_tunes_restores_and_round_trips(tmp_path, faces_of):
    blur = BlurOperator.gaussian(9, 1.5)
    tr, va, te = (faces_of(n, seed) for n, seed in ((16, 0), (4, 1), (3, 2)))
    train, val = PairSet(degrade(tr, blur), tr), PairSet(degrade(va, blur), va)
    ctx = MethodContext(preset=get_preset("smoke"), work_dir=tmp_path / "epll", quiet=True,
                        blur_meta=blur.meta())  # fmt: skip
    cls = get_method("epll")
    assert cls.sees_psf and cls.checkpointable
    m = cls(ctx)
    m.fit(train, val, blur)
    out = m.restore(degrade(te, blur), blur)
    assert out.shape == te.shape and out.dtype == torch.float32
    assert float(psnr(out, te).mean()) > float(psnr(degrade(te, blur), te).mean())
    info = m.info()
    assert len(info["weight_scores"]) == len(cls.weight_factors)
    assert (
        info["params"]["weight"]
        == max(info["weight_scores"], key=lambda d: d["val_psnr"])["weight"]
    )
    assert list((tmp_path / "epll").glob("epll-dictionary-*.npz"))  # the cached mixture
    m.save(tmp_path / "ckpt.npz")
    fresh = cls(ctx)
    fresh.load(tmp_path / "ckpt.npz")
    assert torch.allclose(fresh.restore(degrade(te, blur), blur), out, atol=1e-5)
