"""`deblur-bench sweep`: the grid, the files it writes, and --resume without recomputing."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from benchmarks import cli
from benchmarks.degradation import Degradation, parse_kernel
from benchmarks.errors import UserError
from benchmarks.sweep_plan import cell_seed, expand_grid, parse_label


def test_grid_expands_levin_noise_levels_and_duplicates():
    grid = expand_grid(["gaussian:1", "levin09", "levin09:4@0.01,0.03", "gaussian:1"], [0.0], None)
    assert [d.label for d in grid[:3]] == [
        "gaussian:1, noise 0",
        "levin09:1, noise 0",
        "levin09:2, noise 0",
    ]
    assert len(grid) == 1 + 8 + 2  # levin09:4 at noise 0 comes once; gaussian:1 once
    assert grid[-1] == Degradation(parse_kernel("levin09:4"), 0.03)
    assert all(d.jpeg_quality == 75 for d in expand_grid(["gaussian:2"], [0.0], 75))
    with pytest.raises(UserError, match="--grid 'levin09:4@x'"):
        expand_grid(["levin09:4@x"], [0.0], None)
    with pytest.raises(UserError, match="--grid 'box:1'"):
        expand_grid(["box:1"], [0.0], None)


def test_cell_noise_seeds_depend_on_the_degradation_only():
    a, b = Degradation(parse_kernel("gaussian:1"), 0.01), Degradation(parse_kernel("levin09:2"))
    assert cell_seed(0, a, "test") == cell_seed(0, a, "test")
    assert (
        len(
            {
                cell_seed(0, a, "test"),
                cell_seed(0, a, "val"),
                cell_seed(1, a, "test"),
                cell_seed(0, b, "test"),
            }
        )
        == 4
    )
    assert parse_label("convae-unet@generalist") == "convae-unet"
    with pytest.raises(UserError, match="METHOD@TAG"):
        parse_label("convae-unet@")
    with pytest.raises(ValueError, match="unknown method"):
        parse_label("nope")


def _args(out, *extra: str) -> list[str]:
    return [
        "sweep",
        "--preset",
        "smoke",
        "--quiet",
        "--threads",
        "1",
        "--out",
        str(out),
        "--test-images",
        "4",
        "--tune-images",
        "3",
        *extra,
    ]


def test_sweep_writes_its_files_and_resume_computes_only_missing_cells(tmp_path, monkeypatch):
    """In one process, with every method's restore counted: a second call with --resume
    restores nothing; an extended grid restores only the new cells."""
    from benchmarks.methods.base import Method
    from benchmarks.methods.identity import Identity
    from benchmarks.methods.wiener import Wiener

    calls: list[str] = []
    for cls in (Identity, Wiener):
        orig = cls.restore

        def spy(self, y, blur, _orig=orig):
            calls.append(self.name)
            return _orig(self, y, blur)

        monkeypatch.setattr(cls, "restore", spy)
    assert issubclass(Wiener, Method)
    out = tmp_path / "s"
    grid = ["--methods", "identity", "wiener", "--grid", "gaussian:1", "levin09:5@0.01"]
    assert cli.main(_args(out, *grid)) == 0
    assert sorted(calls) == ["identity", "identity", "wiener", "wiener"]
    names = [
        "per_image.csv",
        "summary.csv",
        "summary.md",
        "run.json",
        "sweep.json",
        "psnr_vs_sigma.png",
        "gain_heatmap.png",
        "examples_per_kernel.png",
    ]
    assert all((out / n).is_file() for n in names)
    per_image = pd.read_csv(out / "per_image.csv")
    assert len(per_image) == 2 * 2 * 4
    assert set(per_image["degradation"]) == {"gaussian:1, noise 0", "levin09:5, noise 0.01"}
    assert {"method", "kernel", "noise", "image", "psnr", "ssim", "mse"} <= set(per_image)
    summary = pd.read_csv(out / "summary.csv")
    assert (
        len(summary) == 4 and "dpsnr_vs_identity_ci95" in summary and "dpsnr_vs_wiener" in summary
    )
    wiener = summary[(summary.method == "wiener") & (summary.kernel == "levin09:5")]
    assert float(wiener["dpsnr_vs_identity"].iloc[0]) > 2  # the exact solve gains on a shake
    record = json.loads((out / "run.json").read_text())
    assert len(record["cells"]["computed_now"]) == 4 and record["cells"]["reused"] == 0
    assert record["base_degradation"]["spec"] == "gaussian:3"
    cell = out / "cells" / "wiener" / "levin09-5_n0.01.json"
    stamp = cell.stat().st_mtime_ns
    rec = json.loads(cell.read_text())
    assert rec["info"]["balance"] in rec["info"]["balance_grid"]  # re-tuned for this kernel
    assert "## PSNR gain over the blurred input" in (out / "summary.md").read_text()

    calls.clear()
    assert cli.main(_args(out, *grid, "--resume")) == 0
    assert calls == []  # nothing recomputed
    assert cell.stat().st_mtime_ns == stamp
    record = json.loads((out / "run.json").read_text())
    assert record["cells"]["computed_now"] == [] and record["cells"]["reused"] == 4

    calls.clear()
    more = [
        "--methods",
        "identity",
        "wiener",
        "--grid",
        "gaussian:1",
        "gaussian:2",
        "levin09:5@0.01",
    ]
    assert cli.main(_args(out, *more, "--resume")) == 0
    assert sorted(calls) == ["identity", "wiener"]  # only gaussian:2's two cells
    record = json.loads((out / "run.json").read_text())
    assert record["cells"]["computed_now"] == [
        "identity gaussian:2, noise 0",
        "wiener gaussian:2, noise 0",
    ]
    assert len(pd.read_csv(out / "per_image.csv")) == 2 * 3 * 4
    assert cell.stat().st_mtime_ns == stamp


@pytest.mark.slow  # two sweeps in subprocesses with a CNN row fitted once
def test_sweep_cli_fits_a_cnn_once_and_resumes(tmp_path, run_cli):
    out = tmp_path / "s"
    common = [
        *_args(
            out,
            "--methods",
            "identity",
            "convae-unet",
            "--grid",
            "gaussian:1",
            "gaussian:3",
            "--epochs",
            "1",
        )
    ]
    r = run_cli(*common)
    assert r.returncode == 0, r.stderr
    model = out / "methods" / "convae-unet" / "model.pt"
    stamp = model.stat().st_mtime_ns
    r = run_cli(*common, "--resume")
    assert r.returncode == 0, r.stderr
    assert model.stat().st_mtime_ns == stamp  # loaded, not fitted again
    record = json.loads((out / "run.json").read_text())
    assert record["cells"]["computed_now"] == [] and record["cells"]["reused"] == 4
    assert record["methods"]["convae-unet"]["info"]["trained_on"].startswith("Gaussian blur")


def test_sweep_flags_parse():
    p = argparse.ArgumentParser()
    from benchmarks.cli_args import sweep_flags

    sweep_flags(p)
    a = p.parse_args(["--grid", "gaussian:1", "levin09@0.01", "--grid-noise", "0", "0.03"])
    assert a.grid == ["gaussian:1", "levin09@0.01"] and a.grid_noise == [0.0, 0.03]
