"""The Deep NMF adapters in the runner's call shape, on the smoke preset (seconds)."""

import pytest
import torch

from benchmarks.blur import BlurOperator, degrade
from benchmarks.methods import get_method
from benchmarks.methods.base import MethodContext
from benchmarks.metrics import psnr
from benchmarks.pairs import PairSet
from benchmarks.presets import get_preset

NAMES = ["nmf-coupled", "dnmf-coupled", "dnmf-prior"]


@pytest.fixture(scope="module")
def pairs(faces_of):
    blur = BlurOperator.gaussian(9, 1.5)
    sets = []
    for n, seed in ((24, 0), (6, 1), (6, 2)):
        s = faces_of(n, seed)
        sets.append(PairSet(degrade(s, blur), s))
    return (*sets, blur)


@pytest.mark.parametrize("name", NAMES)
def test_method_fits_restores_and_round_trips(name, pairs, tmp_path):
    train, val, test, blur = pairs
    cls = get_method(name)
    ctx = MethodContext(
        preset=get_preset("smoke"), work_dir=tmp_path / name, quiet=True, blur_meta=blur.meta()
    )
    m = cls(ctx)
    m.fit(train, val, blur)
    out = m.restore(test.blurred, blur)
    assert out.shape == test.sharp.shape and out.dtype == torch.float32
    assert float(psnr(out, test.sharp).mean()) > float(psnr(test.blurred, test.sharp).mean())
    info = m.info()
    assert info["params"] and info["n_parameters"] > 0
    figs = m.figures(tmp_path / "figs")
    assert {p.name for p in figs} == {"dnmf_loss.png", "dnmf_atoms.png"}
    # the fitted dictionary is cached in the work folder and reused
    cached = list((tmp_path / name).glob("*-dictionary-*.npz"))
    assert len(cached) == 1
    again = cls(ctx)
    again.fit(train, val, blur)
    assert again.info()["cache_hit"]
    # save / load (what --checkpoint uses)
    m.save(tmp_path / "ckpt.npz")
    fresh = cls(ctx)
    fresh.load(tmp_path / "ckpt.npz")
    assert torch.allclose(fresh.restore(test.blurred, blur), out, atol=1e-5)


def test_registered_with_flags():
    assert get_method("dnmf-prior").sees_psf
    assert not get_method("dnmf-coupled").sees_psf and get_method("dnmf-coupled").learns
    assert get_method("nmf-coupled").checkpointable


def test_dnmf_prior_has_one_path(pairs):
    """The multiplicative-update prior is no setting of the method any more (it is
    experiments.mu_prior): ``solver`` is refused by name, as any key DeepNMFPrior does not take."""
    train, val, test, blur = pairs
    for settings in ({"solver": "mu"}, {"solver": "x"}, {"no_such": 1}):
        bad = MethodContext(preset=get_preset("smoke"), options={"dnmf-prior_settings": settings})
        name = next(iter(settings))
        with pytest.raises(
            ValueError, match=rf"dnmf-prior_settings: unknown setting\(s\) \['{name}'\]"
        ):
            get_method("dnmf-prior")(bad).fit(train, val, blur)


def test_noise_level_is_measured_on_the_validation_pairs(faces_of):
    from benchmarks.methods._hqs_common import noise_sigma

    blur = BlurOperator.gaussian(9, 1.5)
    s = faces_of(6, 3)
    g = torch.Generator().manual_seed(0)
    assert noise_sigma(PairSet(degrade(s, blur), s), blur) == pytest.approx(
        1 / 255 / 12**0.5, rel=0.1
    )
    noisy = PairSet(degrade(s, blur, noise=0.03, generator=g), s)
    assert noise_sigma(noisy, blur) == pytest.approx(0.03, rel=0.1)
