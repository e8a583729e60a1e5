"""perf/masked_solvers.py at a toy size: it runs, finds a common target, writes JSON and md."""

from __future__ import annotations

import json

import pytest
import torch

from perf import masked_solvers


def test_masked_solvers_script_small(tiny_faces, tmp_path):
    out = tmp_path / "masked.json"
    threads = torch.get_num_threads()
    args = [
        "--data-dir",
        str(tiny_faces),
        "--size",
        "16",
        "--iters",
        "20",
        "--rank",
        "4",
        "--out",
        str(out),
    ]
    try:
        assert masked_solvers.main(args) == 0
    finally:
        torch.set_num_threads(threads)
    res = json.loads(out.read_text())
    for rec in res["problems"].values():
        reached = [r for r in rec["rows"].values() if r["iterations"][-1] is not None]
        assert reached  # the best solver reaches every target by construction
        assert min(r["final_over_best"] for r in rec["rows"].values()) >= 1.0
        for trace in rec["traces"].values():
            assert len(trace["train_loss"]) == 20 and trace["heldout_end"] > 0
    assert "iterations to target" in out.with_suffix(".md").read_text()


def test_masked_solvers_refuses_a_bad_share(tmp_path, capsys):
    with pytest.raises(SystemExit):
        masked_solvers.main(["--hide", "1.5", "--out", str(tmp_path / "x.json")])
    assert "--hide must be in (0, 1)" in capsys.readouterr().err
