"""Extra training pairs from the bundled photographs (`deblur-bench train --extra-photos`)."""

import pytest
import torch

from benchmarks.blur import BlurOperator, degrade, make_blur
from benchmarks.extra_pairs import (
    dihedral,
    dihedral_pairs,
    photo_crops,
    photo_pairs,
    psf_symmetries,
)
from benchmarks.train_cmd import parse_model_args


def test_crops_are_seeded_in_range_and_varied():
    a = photo_crops(5, 32, seed=3)
    assert a.shape == (5, 3, 32, 32) and a.dtype == torch.float32
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, photo_crops(5, 32, seed=3))
    assert not torch.equal(a, photo_crops(5, 32, seed=4))
    assert len({float(c.mean()) for c in a}) == 5  # five different crops
    assert photo_crops(2, 32, gray=True).shape == (2, 1, 32, 32)


def test_augmented_crops_are_flips_and_turns_of_the_photo(monkeypatch):
    import benchmarks.extra_pairs as ep

    photo = torch.arange(3 * 8 * 8, dtype=torch.float32).reshape(3, 8, 8) / 191.0
    monkeypatch.setattr(ep, "_photos", lambda size, gray: [photo])  # one 8x8 crop position
    variants = [torch.rot90(photo, k, dims=(1, 2)) for k in range(4)]
    variants += [v.flip(2) for v in variants]
    out = ep.photo_crops(40, 8, seed=5, augment=True)
    hits = [next(i for i, v in enumerate(variants) if torch.equal(c, v)) for c in out]
    assert len(set(hits)) >= 6  # the 8 variants are drawn
    assert torch.equal(out, ep.photo_crops(40, 8, seed=5, augment=True))
    assert all(torch.equal(c, photo) for c in ep.photo_crops(5, 8, seed=5))  # off: as is


def test_pairs_are_degraded_by_the_benchmark_operator():
    blur = make_blur(kernel_size=7, sigma=1.0)
    b, s = photo_pairs(3, 24, blur, seed=2)
    assert b.shape == s.shape == (3, 3, 24, 24)
    assert torch.equal(b, degrade(s, blur))  # exactly the benchmark's degradation
    assert torch.equal(s, photo_crops(3, 24, seed=2))
    b0, s0 = photo_pairs(0, 24, blur)
    assert b0.shape == s0.shape == (0, 3, 24, 24)


def test_bad_requests():
    with pytest.raises(ValueError, match=">= 0"):
        photo_crops(-1, 32)
    with pytest.raises(RuntimeError, match="at least"):
        photo_crops(1, 100000)


def test_parse_model_args():
    assert parse_model_args(["width=32", "name=abc", "blocks=[1, 2]"]) == {
        "width": 32,
        "name": "abc",
        "blocks": [1, 2],
    }
    for bad in ("width", "=3", "2x=1"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_model_args([bad])


def test_flipped_pairs_are_exact_for_a_symmetric_blur():
    blur = make_blur(kernel_size=7, sigma=1.5)
    assert psf_symmetries(blur) == list(range(8))
    s = photo_crops(2, 24, seed=4)
    b = degrade(s, blur)
    for k in range(8):  # transforming the degraded image = degrading the transformed one
        diff = (dihedral(b, k) - degrade(dihedral(s, k), blur)).abs()
        assert diff.max() <= 1 / 255 + 1e-6 and (diff > 0).float().mean() < 1e-3
    fb, fs = dihedral_pairs(b, s, blur)
    assert fb.shape == fs.shape == (16, 3, 24, 24)
    assert torch.equal(fb[:2], b) and torch.equal(fs[2:4], dihedral(s, 1))


def test_flipped_pairs_respect_an_asymmetric_blur():
    k = torch.zeros(5, 5)
    k[2, 1:4] = 1.0  # a horizontal line: symmetric under the 180 turn and flips
    line = BlurOperator(k)
    assert psf_symmetries(line) == [0, 2, 4, 6]
    s = photo_crops(1, 16, seed=1)
    fb, fs = dihedral_pairs(degrade(s, line), s, line)
    assert len(fb) == 8  # every turn: those that change the kernel degrade the turned image
    for k_ in range(8):
        assert torch.equal(fs[k_ : k_ + 1], dihedral(s, k_))
        assert torch.equal(fb[k_ : k_ + 1], degrade(dihedral(s, k_), line))  # the run's own kernel
    k[0, 0] = 1.0  # no symmetry left: still 8 exact pairs
    fb, fs = dihedral_pairs(degrade(s, BlurOperator(k)), s, BlurOperator(k))
    assert len(fb) == 8 and torch.equal(fb[3:4], degrade(fs[3:4], BlurOperator(k)))
    assert psf_symmetries(BlurOperator(torch.ones(4, 4))) == [0]  # even size: centring differs
