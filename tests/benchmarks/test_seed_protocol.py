"""The source's protocol: shipped faces by default, JPEG round trip, the seed preset."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from benchmarks.faces import BUILTIN_SETS, SHIPPED_FACES, load_images
from benchmarks.jpeg import check_jpeg_quality, jpeg_round_trip
from benchmarks.presets import get_preset


def test_shipped_faces_are_the_default_data():
    s = load_images(None, size=32, max_images=30)
    assert s.source.startswith("shipped face set")
    assert len(s) == 30 and s.images.shape[1:] == (3, 32, 32)
    assert all(i.startswith("person") for i in s.identities)
    assert len(list(SHIPPED_FACES.glob("*.jpg"))) == 750
    assert (SHIPPED_FACES / "SOURCE.txt").is_file()


def test_builtin_names_select_the_sets():
    assert set(BUILTIN_SETS) == {"builtin:faces", "builtin:photos"}
    photos = load_images("builtin:photos", size=32, max_images=12)
    assert photos.source.startswith("embedded")
    with pytest.raises(ValueError, match="unknown built-in set"):
        load_images("builtin:nope", size=32)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_round_trip_is_lossy_close_and_repeatable(channels):
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(37.0), torch.arange(41.0), indexing="ij")
    smooth = (0.5 + 0.3 * torch.sin(xx / 5) * torch.cos(yy / 7)).expand(2, channels, 37, 41)
    x = (smooth + 0.02 * torch.rand(2, channels, 37, 41, generator=g)).clamp(0, 1)
    y = jpeg_round_trip(x, 75)
    assert y.shape == x.shape and y.dtype == torch.float32
    err = (y - x).abs()
    assert 0 < float(err.mean()) < 0.03  # lossy, but a faithful copy
    assert torch.equal(jpeg_round_trip(x, 75), y)  # deterministic
    # higher quality is closer to the original
    assert float((jpeg_round_trip(x, 95) - x).abs().mean()) < float(err.mean())


@pytest.mark.parametrize("bad", [0, 96, -1, 7.5, True])
def test_jpeg_quality_is_checked(bad):
    with pytest.raises(ValueError, match="--jpeg-quality"):
        check_jpeg_quality(bad)


def test_seed_preset_is_the_source_protocol():
    p = get_preset("seed")
    assert (p.size, p.gray, p.max_images, p.epochs, p.batch_size) == (160, False, None, 100, 64)
    assert (p.jpeg_quality, p.ssim_weight, p.keep_best) == (75, 0.0, False)
    assert p.with_overrides(ssim_weight=0.1).ssim_weight == 0.1


@pytest.mark.slow  # a smoke run with two trainings
def test_seed_protocol_flags_reach_the_training(tmp_path):
    """--jpeg-quality/--ssim-weight in a smoke run: JPEG noted, last-epoch training MSE listed."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks",
        "run",
        "--preset",
        "smoke",
        "--methods",
        "identity",
        "convae",
        "--jpeg-quality",
        "75",
        "--ssim-weight",
        "0.1",
        "--epochs",
        "1",
        "--max-images",
        "24",
        "--out",
        str(out),
        "--quiet",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    md = (out / "summary.md").read_text()
    assert "saved as JPEG (quality 75)" in md
    assert "Training-set MSE of the last epoch" in md
    import json

    info = json.loads((out / "run.json").read_text())["methods"]["convae"]
    assert info["train_mse_last_epoch"] > 0 and info["epochs_trained"] == 1
    assert info["weights_epoch"] == 1


@pytest.mark.parametrize(
    "flag,value", [("--jpeg-quality", "0"), ("--ssim-weight", "-1"), ("--ssim-weight", "nan")]
)
def test_protocol_flags_refuse_nonsense(flag, value, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", flag, value, "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and flag in r.stderr
    assert not (tmp_path / "x").exists()
