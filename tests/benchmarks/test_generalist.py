"""The degradation in run.json and in checkpoints, the generalist CNN (`train --kernels`) and
its on-the-fly pairs, and the warning of a model used on another degradation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import convae
from benchmarks.degradation import (
    Degradation,
    DegradationFamily,
    DegradationMismatchWarning,
    degradation_from_flags,
    parse_family,
    parse_kernel,
    trained_on,
)
from benchmarks.errors import UserError
from benchmarks.extra_pairs import check_tta_trained
from benchmarks.family_pairs import FamilyPairs, redraw, sharp_pool
from benchmarks.methods import MethodContext, get_method
from benchmarks.pairs import PairSet
from benchmarks.presets import get_preset
from benchmarks.runner import RunConfig, run_benchmark

FAMILY = DegradationFamily(parse_family("gaussian:0.5-3+motion"), (0.0, 0.02))


def test_run_json_records_the_degradation_whole(tmp_path):
    cfg = RunConfig(
        preset="smoke",
        methods=["identity"],
        kernel="gaussian:1,2,30",
        noise=0.01,
        jpeg_quality=80,
        out=str(tmp_path / "r"),
        quiet=True,
    )
    run_benchmark(cfg)
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    back = Degradation.from_json(record["degradation"])
    assert back == degradation_from_flags(cfg, jpeg_quality=80)
    assert (back.kernel.sigma_x, back.kernel.sigma_y, back.kernel.theta) == (1.0, 2.0, 30.0)
    assert record["blur"]["noise"] == 0.01 and record["config"]["kernel"] == "gaussian:1,2,30"
    head = (tmp_path / "r" / "summary.md").read_text().split("\n")[2]
    assert "anisotropic Gaussian blur, sigma 1 along 30° and 2 across (25×25 kernel)" in head
    assert (
        "noise std 0.01, 8-bit, then sharp and blurred images both saved as JPEG (quality 80)"
        in head
    )


def _cnn(meta: dict, tta: bool = False):
    ctx = MethodContext(
        preset=get_preset("smoke"), quiet=True, blur_meta=meta, options={"tta": True} if tta else {}
    )
    return get_method("convae")(ctx)


@pytest.mark.parametrize("trained", [Degradation(parse_kernel("motion:4"), 0.01), FAMILY])
def test_checkpoints_record_what_the_model_was_trained_on(tmp_path, trained):
    m = _cnn(trained.meta())
    m.model = m.build_model(3)
    m.save(tmp_path / "m.pt")
    other = _cnn(trained.meta())
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegradationMismatchWarning)
        other.load(tmp_path / "m.pt")  # the same degradation: no warning
    assert trained_on(other.trained_meta) == trained
    assert trained_on(convae.read_checkpoint(tmp_path / "m.pt")["meta"]) == trained
    assert other.info()["trained_on"] == trained.describe()
    with pytest.warns(DegradationMismatchWarning, match="was trained on"):
        _cnn(Degradation(parse_kernel("levin09:3"), 0.01).meta()).load(tmp_path / "m.pt")


def test_tta_needs_a_model_trained_on_flip_invariant_blurs(tmp_path):
    shaken = Degradation(parse_kernel("levin09:3"))
    with pytest.raises(UserError, match="--tta: the model in m.pt was trained on Levin"):
        check_tta_trained(True, shaken, "m.pt")
    check_tta_trained(True, Degradation(), "m.pt")  # the Gaussian: every flip is the same blur
    check_tta_trained(True, FAMILY, "m.pt")  # a family holds the flipped kernels too
    check_tta_trained(False, shaken, "m.pt")
    m = _cnn(shaken.meta())
    m.model = m.build_model(3)
    m.save(tmp_path / "m.pt")
    with pytest.raises(UserError, match="--tta"):
        _cnn(shaken.meta(), tta=True).load(tmp_path / "m.pt")


def test_family_pairs_are_drawn_per_image_and_epoch_and_reproducible():
    sharp = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    data = FamilyPairs(sharp, FAMILY, seed=3)
    first = [data[i] for i in range(6)]
    again = FamilyPairs(sharp, FAMILY, seed=3)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, (again[i] for i in range(6))))
    assert all(torch.equal(s, sharp[i]) for i, (_, s) in enumerate(first))
    assert len({float(b.mean()) for b, _ in first}) == 6  # a degradation of its own each
    data.set_epoch(1)
    assert not torch.equal(data[2][0], first[2][0])  # a new draw in the next epoch
    data.set_epoch(0)
    assert torch.equal(data[2][0], first[2][0])  # whatever the order of the visits
    val = PairSet(sharp.clone(), sharp)
    assert torch.equal(redraw(val, FAMILY, 3).blurred, redraw(val, FAMILY, 3).blurred)
    pool = sharp_pool(sharp, augment_faces=True, extra_photos=2, seed=1)
    assert pool.shape == (6 * 8 + 2, 3, 32, 32)


def test_convae_tells_a_dataset_each_epoch_also_on_resume(tmp_path):
    class Spy(FamilyPairs):
        seen: list[int] = []

        def set_epoch(self, epoch: int) -> None:
            Spy.seen.append(epoch)
            super().set_epoch(epoch)

    sharp = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    val = redraw(PairSet(sharp.clone(), sharp), FAMILY, 0)
    cfg = convae.TrainConfig(epochs=2, batch_size=2, device="cpu")
    model = convae.ConvAE(in_channels=3, base_channels=4)
    convae.train(
        model,
        Spy(sharp, FAMILY, 0),
        (val.blurred, val.sharp),
        cfg,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert Spy.seen == [0, 1]
    Spy.seen = []
    cfg.epochs = 3
    convae.train(
        convae.ConvAE(in_channels=3, base_channels=4),
        Spy(sharp, FAMILY, 0),
        (val.blurred, val.sharp),
        cfg,
        checkpoint_dir=tmp_path,
        resume_from=tmp_path / "last.pt",
        progress=False,
    )
    assert Spy.seen == [2]


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    """The CLI with Python's default warning display (the shared fixture silences them)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


@pytest.mark.slow  # a training and two restores in subprocesses
def test_train_kernels_then_restore_warns_off_its_family(tmp_path):
    out = tmp_path / "gen"
    r = _cli(
        "train",
        "convae-unet",
        "--preset",
        "smoke",
        "--quiet",
        "--threads",
        "1",
        "--epochs",
        "1",
        "--model-arg",
        "width=4",
        "--model-arg",
        "depth=1",
        "--kernels",
        "gaussian:1-2+motion",
        "--noise-range",
        "0-0.02",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    fam = DegradationFamily(parse_family("gaussian:1-2+motion"), (0.0, 0.02))
    assert trained_on(convae.read_checkpoint(out / "best.pt")["meta"]) == fam
    assert json.loads((out / "train.json").read_text())["family"]["spec"] == fam.spec
    (tmp_path / "in").mkdir()
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "in" / "face.png"
    )
    args = [
        "restore",
        str(tmp_path / "in"),
        "--method",
        "convae-unet",
        "--checkpoint",
        str(out / "best.pt"),
        "--quiet",
    ]
    r = _cli(*args, "--out", str(tmp_path / "a"), "--kernel", "levin09:2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "DegradationMismatchWarning" in r.stderr and "trained on the family" in r.stderr
    r = _cli(*args, "--out", str(tmp_path / "b"), "--kernel", "gaussian:1.5", cwd=tmp_path)
    assert r.returncode == 0 and "DegradationMismatchWarning" not in r.stderr, r.stderr
    assert (tmp_path / "a" / "face.png").is_file() and (tmp_path / "b" / "face.png").is_file()


def test_run_checks_tta_against_the_kernel_a_cnn_is_trained_on():
    from benchmarks.runner import _checked_here

    opts = {"tta": True, "epochs": 1}
    # a CNN trained in the run is trained on the run's kernel: checked against it
    assert _checked_here(opts, ["identity", "convae-unet"], {}) == opts
    assert _checked_here(opts, ["identity"], {}) == opts  # no CNN: the flag is still checked
    # every CNN row loaded: each checkpoint's own training kernel is checked when it is loaded
    loaded = _checked_here(opts, ["identity", "convae-unet"], {"convae-unet": "m.pt"})
    assert loaded == {"epochs": 1}
