"""perf/rank_selection_speed.py and perf/rank_selection_planted.py at toy sizes: they run,
agree with the loop, and write their JSON and markdown."""

from __future__ import annotations

import json

import pytest
import torch

from perf import rank_selection_planted, rank_selection_speed


def test_speed_script_small(tiny_faces, tmp_path):
    out = tmp_path / "speed.json"
    threads = torch.get_num_threads()
    args = ["--data-dir", str(tiny_faces), "--size", "16", "--candidates", "1", "2"]
    args += ["--folds", "2", "--max-iter", "5", "--rounds", "2", "--threads", "1"]
    args += ["--loop-folds", "1", "--out", str(out)]
    try:
        assert rank_selection_speed.main(args) == 0
    finally:
        torch.set_num_threads(threads)
    res = json.loads(out.read_text())
    assert res["V_shape"] == [256, 12] and res["loop_folds"] == 1 and len(res["rounds"]) == 2
    assert res["max_rel_diff"] < 1e-5  # the batched search and the loop made the same fits
    held = res["rounds"][0]["loop"]["heldout"]
    assert held[0][1] is None and held[0][0] > 0  # the second fold was not looped
    assert "loop / batched" in out.with_suffix(".md").read_text()


@pytest.mark.slow  # three searches, one of them deep
def test_planted_script_small(tmp_path):
    out = tmp_path / "planted.json"
    threads = torch.get_num_threads()
    try:
        assert rank_selection_planted.main(["--seeds", "1", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    res = json.loads(out.read_text())
    assert set(res["hits"]) >= {"one_layer_rank6", "pure_noise (rank 1)", "defaults_80x120_rank6"}
    assert len(res["one_layer_rank6"]["picks"]) == 1
    assert "chosen as planted" in out.with_suffix(".md").read_text()
