"""`deblur-bench sweep` refuses what `run` refuses (its --out, bad flags) and what would mix two
sweeps (--resume with other settings), keeps its finished cells when it is stopped, and lets
only one command write a sweep folder at a time."""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path

import pytest

SMOKE = [
    "sweep",
    "--preset",
    "smoke",
    "--quiet",
    "--threads",
    "1",
    "--test-images",
    "3",
    "--tune-images",
    "2",
]
ONE_CELL = ["--methods", "identity", "--grid", "gaussian:1"]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_bad_input_sweep_flags_and_folders(tmp_path, cli_batch, tiny_faces):
    done = tmp_path / "done"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"not used: refused before it is read")
    cases = {  # name: (extra argv, exit code, text of the error line)
        "exists": (
            [*ONE_CELL, "--out", str(done)],
            1,
            f"output folder {done} already holds a sweep; pass --resume to continue it",
        ),
        "other_seed": (
            [*ONE_CELL, "--out", str(done), "--resume", "--seed", "4"],
            1,
            "was made with other settings (different: seed)",
        ),
        "other_size": (
            [*ONE_CELL, "--out", str(done), "--resume", "--size", "40"],
            1,
            "(different: preset)",
        ),
        "not_a_sweep": (
            [*ONE_CELL, "--out", str(mine), "--resume"],
            1,
            f"--resume: {mine} holds no sweep to continue",
        ),
        "resume_and_overwrite": (
            [*ONE_CELL, "--out", str(done), "--resume", "--overwrite"],
            1,
            "--resume continues a sweep and --overwrite replaces it",
        ),
        "cwd": ([*ONE_CELL, "--out", "."], 1, "--out . refused: it is the current folder"),
        "data": (
            [*ONE_CELL, "--data-dir", str(tiny_faces), "--out", str(tiny_faces / "s")],
            1,
            "refused: it is inside the data folder",
        ),
        "tag_without_checkpoint": (
            ["--methods", "identity", "convae-unet@gen", "--out", str(tmp_path / "t")],
            1,
            "--methods convae-unet@gen: a tagged row is a trained model: give --checkpoint "
            "convae-unet@gen=PATH",
        ),
        "checkpoint_not_swept": (
            [*ONE_CELL, "--checkpoint", f"convae-unet={ckpt}", "--out", str(tmp_path / "c")],
            1,
            "--checkpoint given for 'convae-unet', which is not among --methods",
        ),
        "baseline": (
            [*ONE_CELL, "--baseline", "epll", "--out", str(tmp_path / "b")],
            1,
            "--baseline 'epll' is not among the swept methods (identity)",
        ),
        "grid": (
            ["--grid", "levin09:12", "--out", str(tmp_path / "g")],
            1,
            "--grid 'levin09:12': N must be from 1 to 8, got 12",
        ),
        "grid_noise": (
            ["--grid-noise", "-1", "--out", str(tmp_path / "n")],
            2,
            "argument --grid-noise: must be a finite number >= 0",
        ),
        "label": (
            ["--methods", "wiener@", "--out", str(tmp_path / "l")],
            1,
            "--methods 'wiener@': write METHOD or METHOD@TAG",
        ),
    }
    argvs = [[*SMOKE, *ONE_CELL, "--out", str(done)]]  # the sweep the cases meet
    argvs += [[*SMOKE, *extra] for extra, _, _ in cases.values()]
    results = cli_batch(argvs, cwd=tmp_path)
    assert results[0]["rc"] == 0, results[0]["err"]
    before = _snapshot(done)
    for (name, (_, code, text)), res in zip(cases.items(), results[1:]):
        assert res["rc"] == code, (name, res["err"])
        assert text in res["err"], (name, res["err"])
        assert "Traceback" not in res["err"], name
    assert _snapshot(done) == before  # a refused --resume changes nothing
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1
    for name in ("t", "c", "b", "g", "n", "l"):
        assert not (tmp_path / name).exists()
    assert not (tiny_faces / "s").exists()


@pytest.mark.slow  # a sweep stopped by SIGTERM, then resumed, in subprocesses
def test_fault_a_stopped_sweep_keeps_its_cells_and_resume_finishes_it(tmp_path, start_cli, run_cli):
    out = tmp_path / "s"
    grid = [
        "--methods",
        "identity",
        "wiener",
        "--grid",
        "gaussian:1",
        "gaussian:2",
        "levin09:1@0.01",
        "levin09:2@0.01",
        "levin09:3@0.01",
        "levin09:5@0.01",
    ]
    proc = start_cli(*SMOKE, *grid, "--out", str(out))
    deadline = time.monotonic() + 120
    while not list((out / "cells").rglob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    kept = sorted(p.relative_to(out) for p in (out / "cells").rglob("*.json"))
    if proc.returncode == 0:  # finished before the signal landed: nothing to resume
        pytest.skip("the sweep finished before it could be stopped")
    assert proc.returncode == 128 + signal.SIGTERM and "interrupted by SIGTERM" in err
    assert 1 <= len(kept) < 12 and not (out / "run.json").exists()
    stamps = {p: (out / p).stat().st_mtime_ns for p in kept}
    r = run_cli(*SMOKE, *grid, "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    record = json.loads((out / "run.json").read_text())
    assert len(record["cells"]["computed_now"]) == 12 - len(kept)
    assert record["cells"]["reused"] == len(kept)
    assert all((out / p).stat().st_mtime_ns == t for p, t in stamps.items())


@pytest.mark.slow  # two sweep commands at once, in subprocesses
def test_concurrency_a_second_command_cannot_write_the_same_sweep(tmp_path, start_cli, run_cli):
    out = tmp_path / "s"
    grid = ["--methods", "identity", "wiener", "--grid", "levin09@0.01"]
    first = start_cli(*SMOKE, *grid, "--out", str(out))
    lock = tmp_path / ".s.lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run_cli(*SMOKE, *grid, "--out", str(out), "--resume")
    first.communicate(timeout=300)
    assert first.returncode == 0
    if second.returncode == 0:
        pytest.skip("the first sweep finished before the second one started")
    assert second.returncode == 1, second.stderr
    assert "another deblur-bench command" in second.stderr
    record = json.loads((out / "run.json").read_text())
    assert len(record["cells"]["computed_now"]) == 16  # the first sweep's cells, all its own
