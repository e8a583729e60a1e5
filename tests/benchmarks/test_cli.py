"""The CLI end to end, in a subprocess, as a user runs it."""

import json

import pandas as pd
import pytest

CLASSICAL = ["identity", "wiener", "richardson-lucy"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, run_cli):
    out = tmp_path_factory.mktemp("runs") / "smoke"
    r = run_cli(
        "run",
        "--preset",
        "smoke",
        "--methods",
        *CLASSICAL,
        "--out",
        str(out),
        "--save-images",
        "--quiet",
    )
    return r, out


@pytest.mark.slow  # a smoke run of the classical methods in a subprocess
def test_run_smoke_writes_everything(smoke_run):
    r, out = smoke_run
    assert r.returncode == 0, r.stderr
    assert "| wiener |" in r.stdout and "PSNR (dB)" in r.stdout
    assert "shipped face set" in r.stdout  # the default data (the shipped faces) is announced
    for f in ["summary.md", "summary.csv", "per_image.csv", "run.json", "examples.png"]:
        assert (out / f).is_file(), f
    per_image = pd.read_csv(out / "per_image.csv")
    assert set(per_image["method"]) == set(CLASSICAL)
    assert per_image.groupby("method").size().nunique() == 1
    record = json.loads((out / "run.json").read_text())
    assert record["format_version"] == 1 and record["preset"]["name"] == "smoke"
    assert record["methods"]["wiener"]["balance"] > 0
    assert record["memory"]["peak_rss_mib"] > 0 and record["versions"]["torch"]
    assert not set(record["data"]["test_ids"]) & set(record["data"]["train_ids"])
    n_test = record["data"]["n_test"]
    assert len(list((out / "images" / "wiener").glob("*.png"))) == n_test


@pytest.mark.slow  # a CLI subprocess after the smoke run
def test_run_refuses_overwrite(smoke_run, run_cli):
    _, out = smoke_run
    r = run_cli("run", "--preset", "smoke", "--methods", "identity", "--out", str(out), "--quiet")
    assert r.returncode == 1 and "--overwrite" in r.stderr
    assert (out / "run.json").is_file()  # nothing was lost


@pytest.mark.slow  # four CLI subprocesses
def test_run_bad_inputs(tmp_path, run_cli):
    r = run_cli("run", "--preset", "smoke", "--methods", "nope", "--out", str(tmp_path / "x"))
    assert r.returncode == 1 and "unknown method" in r.stderr
    (tmp_path / "empty").mkdir()
    r = run_cli(
        "run",
        "--preset",
        "smoke",
        "--data-dir",
        str(tmp_path / "empty"),
        "--methods",
        "identity",
        "--out",
        str(tmp_path / "y"),
    )
    assert r.returncode == 1 and "no images" in r.stderr
    r = run_cli(
        "run",
        "--preset",
        "smoke",
        "--data-dir",
        str(tmp_path / "missing"),
        "--methods",
        "identity",
        "--out",
        str(tmp_path / "z"),
    )
    assert r.returncode == 1 and "not found" in r.stderr
    import numpy as np

    np.save(tmp_path / "line.npy", np.array([[1.0, 2.0, 0.0]]))  # changed by a left-right flip
    r = run_cli(
        "run",
        "--preset",
        "smoke",
        "--methods",
        "identity",
        "--psf",
        str(tmp_path / "line.npy"),
        "--tta",
        "--out",
        str(tmp_path / "t"),
    )
    assert r.returncode == 1 and "--tta" in r.stderr and not (tmp_path / "t").exists()


@pytest.mark.slow  # a second smoke run and two reports in subprocesses
def test_report_merges_two_runs(smoke_run, tmp_path, run_cli):
    _, out = smoke_run
    second = tmp_path / "seed1"
    r = run_cli(
        "run",
        "--preset",
        "smoke",
        "--methods",
        "identity",
        "wiener",
        "--seed",
        "1",
        "--out",
        str(second),
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    r = run_cli("report", str(out), str(second), "--out", str(tmp_path / "merged.md"))
    assert r.returncode == 0, r.stderr
    assert "Merged report of 2 runs" in r.stdout and "ΔPSNR vs identity" in r.stdout
    wiener_row = [ln for ln in r.stdout.splitlines() if ln.startswith("| wiener |")][0]
    n1 = len(pd.read_csv(out / "per_image.csv").query("method == 'wiener'"))
    n2 = len(pd.read_csv(second / "per_image.csv").query("method == 'wiener'"))
    assert f"| wiener | {n1 + n2} |" in wiener_row
    assert (tmp_path / "merged.md").is_file()
    r = run_cli("report", str(tmp_path))
    assert r.returncode == 1 and "not a finished run" in r.stderr


@pytest.mark.slow  # two CLI subprocesses
def test_restore_folder_of_two_images(tmp_path, make_image, run_cli):
    make_image(tmp_path / "in" / "a.jpg", size=(40, 52))
    make_image(tmp_path / "in" / "b.png", size=(37, 31), seed=2)
    r = run_cli("restore", str(tmp_path / "in"), "--method", "wiener", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    from PIL import Image

    assert Image.open(tmp_path / "o" / "a.png").size == (52, 40)
    assert Image.open(tmp_path / "o" / "b.png").size == (31, 37)
    r = run_cli("restore", str(tmp_path / "in"), "--method", "wiener", "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "--overwrite" in r.stderr


@pytest.mark.slow  # `list` loads every method in a subprocess
def test_list_version_help(run_cli):
    r = run_cli("list")
    assert r.returncode == 0 and "wiener" in r.stdout and "smoke" in r.stdout
    r = run_cli("--version")
    assert r.returncode == 0 and "deblur-bench" in r.stdout
    r = run_cli()
    assert r.returncode == 2


@pytest.mark.slow  # every method, trainings included, in a subprocess
def test_run_smoke_every_method(tmp_path, run_cli):
    """Every registered method runs in the smoke preset (DESIGN §8: every preset)."""
    from benchmarks.methods import registry

    out = tmp_path / "all"
    r = run_cli("run", "--preset", "smoke", "--out", str(out), "--quiet", "--threads", "1")
    assert r.returncode == 0, r.stderr
    per_image = pd.read_csv(out / "per_image.csv")
    assert set(per_image["method"]) == set(registry())
    assert per_image[["psnr", "ssim", "mse"]].notna().all().all()
    record = json.loads((out / "run.json").read_text())
    for fig in record["figures"]:
        assert (out / fig).is_file(), fig
