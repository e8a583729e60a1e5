"""`deblur-bench train` on the smoke preset: interrupted + resumed == straight run."""

import pytest
import torch


@pytest.mark.slow  # three trainings in subprocesses
def test_train_resume_equals_straight_run(tmp_path, run_cli):
    common = ["train", "convae", "--preset", "smoke", "--quiet", "--threads", "1"]
    r = run_cli(*common, "--epochs", "2", "--out", str(tmp_path / "straight"))
    assert r.returncode == 0, r.stderr
    r = run_cli(*common, "--epochs", "1", "--out", str(tmp_path / "cut"))
    assert r.returncode == 0, r.stderr
    r = run_cli(*common, "--epochs", "2", "--resume", str(tmp_path / "cut" / "last.pt"))
    assert r.returncode == 0, r.stderr
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for k, v in a["model_state"].items():
        assert torch.equal(v, b["model_state"][k]), k
    assert (tmp_path / "cut" / "training_curve.png").is_file()
    assert (tmp_path / "cut" / "train.json").is_file()


@pytest.mark.slow  # two CLI subprocesses
def test_train_rejects_non_cnn_and_missing_resume(tmp_path, run_cli):
    r = run_cli("train", "wiener", "--preset", "smoke", "--out", str(tmp_path / "w"))
    assert r.returncode == 1 and "CNN" in r.stderr
    r = run_cli("train", "convae", "--preset", "smoke", "--resume", str(tmp_path / "none.pt"))
    assert r.returncode == 1 and "not found" in r.stderr


@pytest.mark.slow  # two trainings in subprocesses
def test_train_extra_photos_and_model_args(tmp_path, run_cli):
    import json

    import convae

    out = tmp_path / "unet"
    r = run_cli(
        "train",
        "convae-unet",
        "--preset",
        "smoke",
        "--quiet",
        "--threads",
        "1",
        "--epochs",
        "1",
        "--extra-photos",
        "6",
        "--model-arg",
        "width=4",
        "--model-arg",
        "depth=1",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "train.json").read_text())
    assert info["extra_photos"] == 6 and info["model_args"] == {"width": 4, "depth": 1}
    model = convae.load_model(out / "best.pt")
    assert model.init_kwargs["width"] == 4 and model.init_kwargs["depth"] == 1

    bad = tmp_path / "bad"
    r = run_cli(
        "train",
        "convae-unet",
        "--preset",
        "smoke",
        "--quiet",
        "--model-arg",
        "nonsense=3",
        "--out",
        str(bad),
    )
    assert r.returncode == 1 and "--model-arg" in r.stderr
    assert not bad.exists()  # no empty run folder left behind
