"""The degradation object: kernel recipes, the motion generator, records, flags, families."""

from __future__ import annotations

import json
import types
import warnings

import numpy as np
import pytest
import torch

from benchmarks.blur import degrade, gaussian_kernel, is_symmetric_kernel, make_blur
from benchmarks.degradation import (
    EMBED_MAX_ENTRIES,
    Degradation,
    DegradationFamily,
    DegradationMismatchWarning,
    Kernel,
    check_trained_degradation,
    degradation_from_flags,
    kernel_sha256,
    motion_kernel,
    parse_family,
    parse_kernel,
    parse_noise_range,
)
from benchmarks.errors import UserError
from benchmarks.extra_pairs import dihedral
from benchmarks.jpeg import jpeg_round_trip

SPECS = ["gaussian:3", "gaussian:5", "gaussian:1,3,30", "levin09:4", "motion:7", "motion:7,12"]


def _json_round_trip(d: Degradation) -> Degradation:
    return Degradation.from_json(json.loads(json.dumps(d.to_json())))


@pytest.mark.parametrize("spec", SPECS)
def test_every_kernel_spec_round_trips_through_json(spec):
    d = Degradation(parse_kernel(spec), 0.01, 75)
    back = _json_round_trip(d)
    assert back == d and back.kernel.spec == spec
    assert torch.equal(back.kernel.tensor(), d.kernel.tensor())
    k = d.kernel.tensor()
    assert k.dtype == torch.float64 and abs(float(k.sum()) - 1) < 1e-12 and float(k.min()) >= 0
    assert d.to_json()["kernel_sha256"] == kernel_sha256(k)


def test_the_default_is_the_reference_gaussian_and_its_blur_fields_unchanged():
    d = degradation_from_flags(types.SimpleNamespace(noise=0.0))
    assert d == Degradation() and d.kernel.spec == "gaussian:3" and d.kernel.shape == (25, 25)
    assert torch.equal(d.kernel.tensor(), gaussian_kernel(25, 3.0))
    # checkpoints made before the whole record existed are compared on these fields
    assert d.blur_fields() == {**make_blur().meta(), "noise": 0.0, "quantization": "8-bit"}
    assert d.describe() == (
        "Gaussian blur, sigma 3 (25×25 kernel), reflect boundary, no noise, 8-bit"
    )


def test_wide_gaussians_reach_three_sigma():
    assert parse_kernel("gaussian:4").shape == (25, 25)  # unchanged up to sigma 4
    assert parse_kernel("gaussian:5").shape == (31, 31)
    assert make_blur(sigma=5.0).kernel.shape == (31, 31)  # the same rule for --sigma
    assert parse_kernel("gaussian:5", size=21).shape == (21, 21)


def test_anisotropic_gaussian_turns_with_theta():
    a = parse_kernel("gaussian:1,3,0").tensor()
    b = parse_kernel("gaussian:1,3,90").tensor()
    assert torch.allclose(b, a.T, atol=1e-15)  # a quarter turn swaps the axes
    assert a[12, 14] < a[14, 12]  # theta 0: sigma 1 along x (narrow), 3 along y (wide)
    assert is_symmetric_kernel(parse_kernel("gaussian:1,3,30").tensor())  # point-symmetric
    assert torch.equal(parse_kernel("gaussian:2,2,45").tensor(), gaussian_kernel(25, 2.0))


def test_motion_kernels_are_seeded_normalised_nonnegative_and_asymmetric():
    a = motion_kernel(7)
    assert torch.equal(a, motion_kernel(7)) and not torch.equal(a, motion_kernel(8))
    assert a.shape == (31, 31) and abs(float(a.sum()) - 1) < 1e-12 and float(a.min()) >= 0
    for seed in range(6):
        k = motion_kernel(seed)
        assert not is_symmetric_kernel(k)
        assert not any(torch.equal(dihedral(k, t), k) for t in range(1, 8))
        assert k[0].sum() == k[-1].sum() == k[:, 0].sum() == k[:, -1].sum() == 0  # inside
        ys, xs = torch.meshgrid(torch.arange(31.0), torch.arange(31.0), indexing="ij")
        assert abs(float((k * ys).sum()) - 15) < 0.6 and abs(float((k * xs).sum()) - 15) < 0.6
    short, long = motion_kernel(3, length=6.0), motion_kernel(3, length=20.0)
    span = [int((k > 0).any(0).sum()) + int((k > 0).any(1).sum()) for k in (short, long)]
    assert span[0] < span[1]  # LENGTH stretches the same trajectory
    assert parse_kernel("motion:3", size=21).shape == (21, 21)


def test_psf_records_path_digest_and_small_array(tmp_path):
    k = np.zeros((5, 7))
    k[2, 1:6] = [1, 2, 3, 2, 0.5]
    np.save(tmp_path / "k.npy", k)
    d = degradation_from_flags(types.SimpleNamespace(psf=str(tmp_path / "k.npy"), noise=0.0))
    rec = d.to_json()
    assert rec["kernel"]["path"] == str(tmp_path / "k.npy")
    assert rec["kernel"]["sha256"] == kernel_sha256(k / k.sum()) == rec["kernel_sha256"]
    assert np.allclose(rec["kernel"]["array"], k / k.sum(), rtol=0, atol=0)
    (tmp_path / "k.npy").unlink()  # a run is redone without the file
    back = _json_round_trip(d)
    assert torch.equal(back.kernel.tensor(), torch.from_numpy(k / k.sum()))
    assert back.same_as(d)
    big = np.ones((60, 60))
    np.save(tmp_path / "big.npy", big)
    assert big.size > EMBED_MAX_ENTRIES
    rec = Degradation(parse_kernel(f"psf:{tmp_path / 'big.npy'}")).to_json()
    assert "array" not in rec["kernel"]  # too big to embed: path and digest only
    np.save(tmp_path / "big.npy", big * np.arange(60))  # the file changes afterwards
    with pytest.raises(UserError, match="changed since it was recorded"):
        _json_round_trip(Degradation(Kernel.from_json(rec["kernel"]))).kernel.tensor()


def test_apply_is_the_blur_noise_8bit_protocol():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    d = Degradation(parse_kernel("levin09:2"), 0.02)
    b, s = d.apply(x, torch.Generator().manual_seed(5))
    assert s is x
    assert torch.equal(
        b, degrade(x, d.blur, noise=0.02, generator=torch.Generator().manual_seed(5))
    )
    bj, sj = Degradation(parse_kernel("levin09:2"), 0.0, 60).apply(x)
    assert torch.equal(sj, jpeg_round_trip(x, 60))  # JPEG copies of both images
    assert torch.equal(bj, jpeg_round_trip(degrade(x, d.blur), 60))
    with pytest.raises(ValueError, match="unknown noise"):
        Degradation(noise=None).apply(x)


def test_families_draw_seeded_degradations_and_never_the_levin_kernels():
    fam = DegradationFamily(parse_family("gaussian:0.5-5+motion"), (0.0, 0.03))
    a = [fam.sample(np.random.default_rng([1, i])) for i in range(40)]
    b = [fam.sample(np.random.default_rng([1, i])) for i in range(40)]
    assert a == b
    assert {d.kernel.family for d in a} == {"gaussian", "motion"}
    assert all(fam.contains(d) and 0 <= d.noise <= 0.03 for d in a)
    assert fam.contains(Degradation(parse_kernel("gaussian:3"), 0.01))
    assert not fam.contains(Degradation(parse_kernel("gaussian:6"), 0.01))
    assert not fam.contains(Degradation(parse_kernel("levin09:4"), 0.01))
    assert not fam.contains(Degradation(parse_kernel("gaussian:3"), 0.05))
    assert DegradationFamily.from_json(json.loads(json.dumps(fam.to_json()))) == fam
    aniso = DegradationFamily(parse_family("anisotropic:1-3"))
    d = aniso.sample(np.random.default_rng(0))
    assert not d.kernel.isotropic and aniso.contains(d)
    assert parse_noise_range("0-0.03") == (0.0, 0.03) and parse_noise_range("0.01") == (0.01, 0.01)


def test_a_checkpoint_trained_otherwise_warns():
    def warned(have, want):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            ok = check_trained_degradation(have, want, "m.pt")
        assert ok == (not w)
        return " ".join(str(x.message) for x in w if x.category is DegradationMismatchWarning)

    g3 = Degradation()
    assert warned(g3.meta(), Degradation().meta()) == ""
    assert warned(g3.meta(), Degradation(noise=None).meta()) == ""  # restore: noise not known
    msg = warned(g3.meta(), Degradation(parse_kernel("levin09:4"), 0.0).meta())
    assert "trained on Gaussian blur, sigma 3" in msg and "camera-shake kernel 4" in msg
    assert "noise std 0.01" in warned(g3.meta(), Degradation(noise=0.01).meta())
    fam = DegradationFamily(parse_family("gaussian:0.5-5"), (0.0, 0.03))
    assert warned(fam.meta(), Degradation(parse_kernel("gaussian:2"), 0.01).meta()) == ""
    assert "the family random kernels" in warned(
        fam.meta(), Degradation(parse_kernel("levin09:1")).meta()
    )
    legacy = {k: v for k, v in g3.meta().items() if k != "degradation"}  # an earlier checkpoint
    assert warned(legacy, g3.meta()) == ""
    assert "sigma: checkpoint 3.0 vs expected 2.0" in warned(
        legacy, Degradation(parse_kernel("gaussian:2")).meta()
    )
