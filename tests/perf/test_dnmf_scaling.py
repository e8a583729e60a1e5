"""perf.dnmf_scaling: the strong-scaling tool runs on a tiny matrix, in Python and as a command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perf import _problems, dnmf_scaling

REPO = Path(__file__).resolve().parents[2]


def test_planted_lowrank_is_seeded_nonnegative_and_column_major():
    V = _problems.planted_lowrank(30, 20, 4, seed=1, dtype="float32")
    assert V.shape == (30, 20) and V.dtype == np.float32 and V.flags.f_contiguous
    assert V.min() >= 0 and np.array_equal(V, _problems.planted_lowrank(30, 20, 4, 1, "float32"))
    assert not np.array_equal(V, _problems.planted_lowrank(30, 20, 4, 2, "float32"))


@pytest.mark.slow
def test_two_processes_compute_the_one_process_factors():
    out = dnmf_scaling.run_scaling(m=24, n=40, ranks=[3], iters=3, repeats=1, worlds=[2])
    one, two = out["rows"]
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["speedup"] == 1.0 and two["speedup"] > 0 and two["efficiency"] > 0
    assert two["rel_diff_W"] < 1e-5 and two["rel_diff_H"] < 1e-5
    # The reported loss is ½(‖V‖² − 2⟨PᵀV, H⟩ + ⟨PᵀP, HHᵀ⟩) from float32 products: its rounding
    # is about 1e-7·‖V‖², 2e-5 of this small loss, so shard sums in another order move it
    # by that much while the factors agree to 1e-5 (above).
    assert two["final_loss"] == pytest.approx(one["final_loss"], rel=1e-4)
    assert out["allreduce_bytes_per_iter"] == (24 * 3 + 3 * 3) * 4 + 16
    assert set(out["allreduce_seconds"]) == {"2"}
    md = dnmf_scaling.to_markdown(out)
    assert "| 2 | 1 |" in md and "One all_reduce of V Hᵀ (24×3 float32) among 2" in md


@pytest.mark.slow
def test_command_writes_markdown_and_json(tmp_path):
    cmd = [sys.executable, "-m", "perf.dnmf_scaling", "--m", "16", "--n", "20", "--ranks", "2"]
    cmd += ["--iters", "2", "--repeats", "1", "--worlds", "1"]
    cmd += ["--out", str(tmp_path / "s.md"), "--json", str(tmp_path / "s.json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "s.json").read_text())
    assert res["format_version"] == 1 and [r["processes"] for r in res["rows"]] == [1]
    assert res["config"]["m"] == 16 and res["config"]["ranks"] == [2]
    assert (tmp_path / "s.md").read_text() == p.stdout
    assert "| processes |" in p.stdout
