"""perf.subnormals: the flush probe and the sweep timing run, and leave the thread count."""

from __future__ import annotations

import torch

from perf import subnormals


def test_flush_reach_one_thread_flushes_everything_and_restores():
    before = torch.get_num_threads()
    out = subnormals.flush_reach(1)
    assert out == {"elementwise_flushed": 1.0, "matmul_flushed": 1.0}
    x = torch.tensor([torch.finfo(torch.float32).tiny / 16])
    assert float(x * 1.0) > 0  # flushing is off again
    torch.set_num_threads(before)


def test_sweep_cost_rows(tmp_path):
    rows = subnormals.sweep_cost(1, [0.1], rounds=1, shape=(40, 30, 4))
    assert rows[0]["fraction"] == 0.1
    assert all(rows[0][f"{k}_ms"] > 0 for k in ("subnormal", "floored", "clean"))
    md = subnormals.to_markdown({"flush": {"1": subnormals.flush_reach(1)}, "sweep": {"1": rows}})
    assert "| 1 | 10.0 % |" in md
