"""perf/nmf_speed.py (`python -m perf.nmf_speed`) at toy sizes: it runs and reports."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from perf import _problems, _timing, nmf_speed

REPO = Path(__file__).resolve().parents[2]


def test_run_nmf_speed_small():
    out = nmf_speed.run_nmf_speed(
        m=64,
        n=48,
        rank=4,
        n_iter=5,
        repeats=1,
        threads=1,
        layers=(2,),
        batch=(4, 10, 12, 2),
        batch_iter=5,
        include_torchnmf=False,
        log=None,
    )
    methods = [r["method"] for r in out["results"]]
    assert methods[:2] == ["dnmf k=1", "sklearn NMF(mu)"] and "dnmf k=2" in methods
    k1, sk = out["results"][0], out["results"][1]
    assert abs(k1["final_loss"] / sk["final_loss"] - 1) < 1e-5  # same iterations, same loss
    assert out["batched"]["max_loss_rel_diff"] < 1e-4
    assert "| dnmf k=1 |" in out["markdown"] and "Batched" in out["markdown"]
    pr = out["k1_over_sklearn_per_round"]  # interleaved rounds: one ratio per round
    assert pr["min"] <= pr["median"] <= pr["max"] and "within each round" in out["markdown"]
    assert len(k1["repeat_ms_per_iter"]) == len(sk["repeat_ms_per_iter"]) == 1
    json.dumps(out)  # JSON-ready


def test_main_writes_json(tmp_path, capsys):
    args = [
        "--m",
        "40",
        "--n",
        "30",
        "--rank",
        "3",
        "--iters",
        "3",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--layers",
        "--no-batch",
        "--no-torchnmf",
        "--json",
        str(tmp_path / "speed.json"),
    ]
    assert nmf_speed.main(args) == 0
    assert "| sklearn NMF(mu) |" in capsys.readouterr().out
    data = json.loads((tmp_path / "speed.json").read_text())
    assert data["format_version"] == 1 and data["config"]["m"] == 40
    assert "goals" not in data  # results only


def test_command_runs_from_a_checkout(tmp_path):
    out = tmp_path / "speed.json"
    cmd = [sys.executable, "-m", "perf.nmf_speed", "--m", "30", "--n", "20", "--rank", "2"]
    cmd += ["--iters", "2", "--repeats", "1", "--threads", "1", "--layers", "--no-batch"]
    cmd += ["--no-torchnmf", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| dnmf k=1 |" in proc.stdout and f"wrote {out}" in proc.stderr
    assert json.loads(out.read_text())["benchmark"] == "nmf-speed"


def test_throughput_sweep_small_cpu():
    out = nmf_speed.run_throughput_sweep(
        [(64, 48, 4), (96, 80, 8)], n_iter=3, repeats=1, threads=1, log=None
    )
    assert [(r["m"], r["n"], r["rank"]) for r in out["sweep"]] == [(64, 48, 4), (96, 80, 8)]
    for r in out["sweep"]:
        assert r["iterations"] == 3 and r["ms_per_iter"] > 0
        assert r["tflops"] > 0 and r["matmul_tflops"] > 0
        assert abs(r["fraction_of_matmul"] - r["tflops"] / r["matmul_tflops"]) < 1e-12
    assert "| 96 × 80 | 8 |" in out["markdown"]
    json.dumps(out)


def test_parse_size_errors():
    assert nmf_speed.parse_size("8192x4096x128") == (8192, 4096, 128)
    for bad in ("8192x8192", "axbxc", "10x10x20", "0x5x1"):
        with pytest.raises(argparse.ArgumentTypeError):
            nmf_speed.parse_size(bad)


def test_main_sweep_json(tmp_path, capsys):
    args = [
        "--sweep",
        "--sizes",
        "40x30x3",
        "--iters",
        "2",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--json",
        str(tmp_path / "sweep.json"),
    ]
    assert nmf_speed.main(args) == 0
    assert "torch.matmul TFLOP/s" in capsys.readouterr().out
    assert json.loads((tmp_path / "sweep.json").read_text())["sweep"][0]["m"] == 40


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_throughput_sweep_cuda():
    out = nmf_speed.run_throughput_sweep(
        [(256, 192, 16)], n_iter=3, repeats=1, device="cuda", log=None
    )
    r = out["sweep"][0]
    assert r["iterations"] == 3 and r["tflops"] > 0 and r["peak_mem_gib"] > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_run_nmf_speed_cuda_times_sklearn_on_the_host():
    out = nmf_speed.run_nmf_speed(
        m=64,
        n=48,
        rank=4,
        n_iter=5,
        repeats=1,
        threads=1,
        layers=(),
        batch=(4, 10, 12, 2),
        batch_iter=5,
        include_torchnmf=False,
        device="cuda",
        log=None,
    )
    k1, sk = out["results"][0], out["results"][1]
    assert sk["method"] == "sklearn NMF(mu)" and k1["tflops"] > 0
    assert abs(k1["final_loss"] / sk["final_loss"] - 1) < 1e-4  # float32 on the GPU
    assert out["batched"]["speedup"] > 0 and any("CPU" in n for n in out["notes"])


def test_random_problem_is_seeded_and_scaled():
    V, W0, H0 = _problems.random_problem(30, 20, 4, seed=3)
    V2, _, _ = _problems.random_problem(30, 20, 4, seed=3)
    assert V.dtype == W0.dtype == H0.dtype == np.float32 and (V == V2).all()
    assert abs((W0 @ H0).mean() / V.mean() - 1) < 0.2  # W0 H0 has V's scale


def test_fused_pass_ab_small(tmp_path, capsys):
    from dnmf._solvers import mu as _mu
    from perf import fused_pass_ab

    default = _mu.FUSED_BLOCK_BYTES
    # 300 x 50 float32 = 60 KB; 64-row blocks (12.8 KB) make the pass run on 5 blocks
    out = fused_pass_ab.run_ab(
        m=300, n=50, rank=4, n_iter=5, rounds=2, threads=1, block_bytes=(64 * 50 * 4,)
    )
    names = [r["variant"] for r in out["results"]]
    assert names == ["sklearn NMF(mu)", "dnmf, whole products", "dnmf, fused 12800 B blocks"]
    assert _mu.FUSED_BLOCK_BYTES == default  # the library's setting is restored
    whole, fused = out["results"][1]["final_loss"], out["results"][2]["final_loss"]
    assert fused == pytest.approx(whole, rel=1e-5)
    assert all(len(r["repeat_ms_per_iter"]) == 2 for r in out["results"])
    assert "| dnmf, fused 12800 B blocks |" in fused_pass_ab.to_markdown(out)
    assert (
        fused_pass_ab.main(
            ["--rounds", "1", "--iters", "1", "--blocks", "8", "--json", str(tmp_path / "ab.json")]
        )
        == 0
    )
    assert json.loads((tmp_path / "ab.json").read_text())["config"]["block_bytes"] == [8 << 20]


def test_round_robin_rotates_and_settles(monkeypatch):
    calls, sleeps = [], []
    monkeypatch.setattr(_timing.time, "sleep", sleeps.append)
    fns = [lambda i=i: calls.append(i) or i for i in range(3)]
    out = _timing.time_round_robin(fns, 3, torch.device("cpu"), settle=0.01)
    assert calls == [0, 1, 2, 0, 1, 2, 1, 2, 0, 2, 0, 1]  # warm-up, then rotated rounds
    assert sleeps == [0.01] * 9  # before every timed call
    assert [o for _, _, o in out] == [0, 1, 2] and all(len(t) == 3 for _, t, _ in out)
    sleeps.clear()
    nmf_speed._time(lambda: None, 2, torch.device("cpu"))
    assert sleeps == []  # one function: nothing to settle
