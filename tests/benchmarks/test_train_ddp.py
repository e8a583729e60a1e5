"""`torchrun --nproc_per_node=2 -m benchmarks train` on the smoke preset (DDP, gloo, CPU).

The venv's own torchrun is used (``python -m torch.distributed.run``).  The smoke preset
reads the embedded photographs (or data/faces/), 32 px, the tiny ConvAE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import convae


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "benchmarks",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


COMMON = ("train", "convae", "--preset", "smoke", "--threads", "1", "--max-images", "24")


@pytest.mark.slow  # torchrun, two processes, train and resume
def test_torchrun_two_processes_train_resume_and_load(tmp_path):
    out = tmp_path / "run"
    r = torchrun(*COMMON, "--epochs", "1", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    # rank 0 alone prints the summary and writes the one checkpoint folder
    assert r.stdout.count("on 2 processes") == 1, r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sorted(p.name for p in out.iterdir()) == [
        ".deblur-bench-run",  # the run-folder marker (benchmarks.run_dir)
        "best.pt",
        "last.pt",
        "train.json",
        "training_curve.png",
    ]
    info = json.loads((out / "train.json").read_text())
    assert info["distributed"]["world_size"] == 2
    assert info["distributed"]["global_batch_size"] == 2 * info["config"]["batch_size"]

    # rank 0's checkpoint loads into a single-process model and runs
    model = convae.load_model(out / "best.pt", expect_architecture="convae")
    assert not any(k.startswith("module.") for k in model.state_dict())
    with torch.no_grad():
        y = model(torch.rand(2, 3, 32, 32))
    assert y.shape == (2, 3, 32, 32) and torch.isfinite(y).all()

    # resume to 2 epochs under DDP, in place
    r = torchrun(*COMMON, "--epochs", "2", "--quiet", "--resume", str(out / "last.pt"))
    assert r.returncode == 0, r.stdout + r.stderr
    ck = convae.read_checkpoint(out / "last.pt")
    assert ck["epoch"] == 2 and [h["epoch"] for h in ck["history"]] == [1, 2]
    assert json.loads((out / "train.json").read_text())["epochs_run"] == 1

    # an existing run folder is refused on every rank (no hang), exit code 1
    r = torchrun(*COMMON, "--epochs", "1", "--quiet", "--out", str(out))
    assert r.returncode != 0
    assert "already holds a run" in r.stdout + r.stderr


@pytest.mark.slow  # a CLI subprocess that loads every method
def test_distributed_flag_without_torchrun_is_a_clear_error(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    }
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            *COMMON,
            "--distributed",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 1 and "torchrun" in r.stderr


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_torchrun_two_gpus_nccl(tmp_path):
    out = tmp_path / "run"
    r = torchrun(*COMMON, "--epochs", "1", "--device", "cuda", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads((out / "train.json").read_text())["distributed"]["backend"] == "nccl"
    convae.load_model(out / "best.pt")
