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
