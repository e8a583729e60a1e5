"""The unfolded Deep NMF rows through the real commands (smoke preset, tiny networks):
``train`` writes best.pt/last.pt and train.json with the parameter count, ``--resume``
continues to the same weights as a straight run, ``run --checkpoint`` scores the network and
writes its atom figure, ``restore`` writes the user's image; the non-blind row restores with
the kernel of the flags and refuses what it cannot use.

Every command runs in one subprocess (`cli_batch`): the interpreter start is paid once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import convae
from benchmarks.methods import get_method

MODELS = ("dnmf-unfolded", "dnmf-prior-unfolded")
SMOKE = ["--preset", "smoke", "--quiet", "--threads", "1"]
LOUD = ["--preset", "smoke", "--threads", "1"]  # the log says the untrained score


@pytest.fixture(scope="module")
def runs(cli_batch, face_pixels_of, tmp_path_factory) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Every command of the module, run once: ``(folder, {label: result})``."""
    root = tmp_path_factory.mktemp("unfolded_cli")
    img = root / "inputs" / "face.png"
    img.parent.mkdir()
    Image.fromarray(np.round(face_pixels_of(3, (40, 48)) * 255).astype(np.uint8)).save(img)
    small = root / "small" / "tiny.png"
    small.parent.mkdir()
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(small)
    argvs: dict[str, list[Any]] = {}
    for m in MODELS:
        argvs[f"{m} train"] = ["train", m, *LOUD, "--epochs", "2", "--out", root / m]
        argvs[f"{m} cut"] = ["train", m, *SMOKE, "--epochs", "1", "--out", root / f"{m}-cut"]
        argvs[f"{m} resume"] = [
            "train", m, *SMOKE, "--epochs", "2", "--resume", root / f"{m}-cut" / "last.pt",
        ]  # fmt: skip
        argvs[f"{m} run"] = [
            "run", *SMOKE, "--methods", "identity", m,
            "--checkpoint", f"{m}={root / m / 'best.pt'}", "--out", root / f"{m}-run",
        ]  # fmt: skip
        argvs[f"{m} restore"] = [
            "restore", "--quiet", "--method", m, "--checkpoint", root / m / "best.pt",
            "--out", root / f"{m}-restored", img,
        ]  # fmt: skip
    p = "dnmf-prior-unfolded"
    ckpt = root / p / "best.pt"
    argvs["prior other kernel"] = [
        "restore", "--quiet", "--method", p, "--checkpoint", ckpt, "--kernel", "gaussian:2",
        "--out", root / "other-kernel", img,
    ]  # fmt: skip
    argvs["prior no checkpoint"] = ["restore", "--method", p, "--out", root / "none", img]
    argvs["prior missing psf"] = [
        "restore", "--method", p, "--checkpoint", ckpt, "--psf", root / "no-such-psf.npy",
        "--out", root / "no-psf", img,
    ]  # fmt: skip
    argvs["prior small image"] = [
        "restore", "--method", p, "--checkpoint", ckpt, "--out", root / "small-out", small,
    ]  # fmt: skip
    results = cli_batch(list(argvs.values()))
    return root, dict(zip(argvs, results))


def _load(path: Path, model: str) -> torch.nn.Module:
    get_method(model)  # the adapter registers the network with convae
    return convae.load_model(path, expect_architecture=model)


def _ok(r: dict[str, Any]) -> None:
    assert r["rc"] == 0, (r["argv"], r["err"][-3000:])


@pytest.mark.slow  # shares the module's commands (about half a minute in all)
@pytest.mark.parametrize("model", MODELS)
def test_train_writes_checkpoints_and_the_parameter_count(runs, model):
    root, res = runs
    _ok(res[f"{model} train"])
    out = root / model
    assert "2 epochs" in res[f"{model} train"]["out"]
    assert f"--checkpoint {model}={out / 'best.pt'}" in res[f"{model} train"]["out"]
    assert {"best.pt", "last.pt", "train.json", "training_curve.png"} <= {
        p.name for p in out.iterdir()
    }
    net = _load(out / "best.pt", model)
    assert net.init_kwargs["init"] == "nmf"
    info = json.loads((out / "train.json").read_text())
    assert info["architecture"] == model and info["epochs_completed"] == 2
    assert info["parameters"] == convae.count_parameters(net) > 0
    assert info["config"]["lr"] == get_method(model).train_lr  # the adapter's default
    said = res[f"{model} train"]["err"]
    assert "untrained (the fitted model's restoration) validation PSNR" in said


@pytest.mark.slow
def test_unfolded_parameter_count_is_its_factors(runs):
    """The smoke network (3 channels, 4 px patches with 2 px context, ranks (8, 4), 2 layers,
    W2 untied): W1 (384 x 8), one W2 (8 x 4) per layer, W_out (96 x 4); the buffers kept for
    the before/after figure are not parameters."""
    root, res = runs
    _ok(res["dnmf-unfolded train"])
    info = json.loads((root / "dnmf-unfolded" / "train.json").read_text())
    k = _load(root / "dnmf-unfolded" / "best.pt", "dnmf-unfolded").init_kwargs
    assert (k["size"], k["context"], tuple(k["ranks"]), k["layers"]) == (4, 2, (8, 4), 2)
    assert info["parameters"] == 384 * 8 + 2 * 8 * 4 + 96 * 4


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_resume_continues_to_the_straight_run(runs, model):
    root, res = runs
    for step in ("cut", "resume"):
        _ok(res[f"{model} {step}"])
    assert "2 epochs" in res[f"{model} resume"]["out"]
    a = torch.load(root / model / "last.pt", weights_only=True)
    b = torch.load(root / f"{model}-cut" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert a["model_state"].keys() == b["model_state"].keys()
    for key, v in a["model_state"].items():
        assert torch.equal(v, b["model_state"][key]), key


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_run_scores_the_checkpoint_with_parameters_and_atom_figure(runs, model):
    root, res = runs
    _ok(res[f"{model} run"])
    out = root / f"{model}-run"
    record = json.loads((out / "run.json").read_text())
    row = record["methods"][model]
    net = _load(root / model / "best.pt", model)
    assert row["parameters"] == convae.count_parameters(net)
    assert row["loaded_from"] == str(root / model / "best.pt")
    assert row["lr"] == get_method(model).train_lr  # from the checkpoint's configuration
    fig = f"methods/{model}/atoms_before_after.png"
    assert fig in record["figures"] and (out / fig).stat().st_size > 1000
    summary = (out / "summary.md").read_text()
    line = next(ln for ln in summary.splitlines() if ln.startswith(f"| {model} |"))
    psnr = float(line.split("|")[3].split("±")[0])
    assert 10 < psnr < 60


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_restore_writes_the_users_image(runs, model):
    root, res = runs
    _ok(res[f"{model} restore"])
    out = Image.open(root / f"{model}-restored" / "face.png")
    assert out.size == (48, 40) and out.mode == "RGB"
    a = np.asarray(out, dtype=np.float64)
    assert a.std() > 1  # a picture, not a constant


@pytest.mark.slow
def test_prior_restore_uses_the_flags_kernel_and_refuses_what_it_cannot_use(runs):
    """Without kernel flags ``restore`` takes the default Gaussian (sigma 3, the training
    kernel here: no warning); another kernel restores with a warning naming both; no
    checkpoint, a missing PSF file and an image smaller than the kernel are refused."""
    root, res = runs
    assert "DegradationMismatchWarning" not in res["dnmf-prior-unfolded restore"]["err"]
    other = res["prior other kernel"]
    _ok(other)
    assert "DegradationMismatchWarning" in other["err"] and "sigma 2" in other["err"]
    assert (root / "other-kernel" / "face.png").is_file()
    for label, words, folder in (
        ("prior no checkpoint", "--checkpoint", "none"),
        ("prior missing psf", "PSF file not found", "no-psf"),
        ("prior small image", "too small for this 25x25 kernel", "small-out"),
    ):
        r = res[label]
        assert r["rc"] == 1 and words in r["err"], (label, r["err"][-2000:])
        assert "Traceback" not in r["err"]
        assert not (root / folder).exists()
