"""perf.solver_validation: its matrices are not the benchmark's, and its table."""

from __future__ import annotations

import numpy as np

from perf import solver_validation as sv
from perf import time_to_target as ttt


def test_validation_matrices_differ_from_the_benchmark_cases():
    faces = np.random.default_rng(0).random((64, 30)).astype(np.float32)
    val = sv.cases(faces)
    bench = ttt.make_cases(False, faces)
    bench_keys = {(c.V.shape, c.rank) for c in bench}
    assert len(val) == 5
    for V, r in val.values():
        assert (V.shape, r) not in bench_keys
    deep = sv.deep_cases(faces)
    assert len(deep) == 3
    for _, ranks in deep.values():
        assert ranks not in list(ttt.DEEP_FULL.values())


def test_markdown_has_a_row_per_matrix_and_a_column_per_solver():
    out = {
        "solvers": ["hals-acc", "hals-acc-e"],
        "cases": {
            "m": {
                "reference_seconds": [2.0, 2.0],
                "runs": {"hals-acc": [[1.0, 10], [None, 40]], "hals-acc-e": [[0.5, 5], [0.6, 5]]},
            }
        },
    }
    md = sv.to_markdown(out).splitlines()
    assert md[0] == "| matrix | scikit-learn (s) | hals-acc | hals-acc-e |"
    assert md[2] == "| m | 2.00 | 0.50, –× (10 its) | 0.25, 0.30× (5 its) |"


def test_validation_batches_differ_from_the_benchmark_batch():
    from perf._problems import random_problem

    bench = random_problem(64, 96, 8, np.float32, 7, batch=256)[0]  # time_to_target's, seed 0
    for V, r in sv.batched_cases().values():
        assert V.ndim == 3 and r < min(V.shape[1:])
        assert V.shape != bench.shape or not np.array_equal(V, bench)


def test_batch_state_reads_the_last_point_within_the_time():
    from perf import _traces as tr

    target = np.array([1.0, 2.0])
    trace = tr.Trace(seconds=[0.1, 0.2, 0.4], iters=[1, 2, 3])
    trace.losses = [[3.0, 3.0], [1.0, 2.2], [0.9, 1.8]]
    assert sv.batch_state(trace, target, 0.05) is None
    mid = sv.batch_state(trace, target, 0.3)
    assert mid == {"reached": 0.5, "mean_ratio": (1.0 + 1.1) / 2}
    assert sv.batch_state(trace, target, 1.0)["reached"] == 1.0


def test_batched_markdown_has_a_row_per_batch_and_solver():
    s = {"reached": 0.75, "mean_ratio": 0.99912}
    out = {
        "solvers": ["hals", "hals-acc-e"],
        "batched_at": [0.5, 1.0],
        "cases": {
            "b": {
                "reference_seconds": [1.0, 1.2],
                "states": {"hals": [[None, s], [None, s]], "hals-acc-e": [[s, s], [None, s]]},
            }
        },
    }
    md = sv.to_markdown(out).splitlines()
    assert md[0].startswith("| batch | scikit-learn loop (s) | solver | at 0.5× the loop's time")
    assert md[2] == "| b | 1.10 | hals | – | 75.0 % (75.0 %), 0.99912 |"
    assert md[3] == "| b | 1.10 | hals-acc-e | 75.0 % (–), 0.99912 | 75.0 % (75.0 %), 0.99912 |"


def test_command_refuses_deep_and_batched_together(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "perf.solver_validation", "--deep", "--batched"]
    proc = subprocess.run(
        cmd + ["--out", str(tmp_path)], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "--deep and --batched" in proc.stderr
    assert not any(tmp_path.iterdir())
