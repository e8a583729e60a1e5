"""benchmarks/nmf_speed.py (`deblur-bench nmf-speed`) at toy sizes: it runs and reports."""
from __future__ import annotations

import argparse
import json

from benchmarks import nmf_speed


def test_run_nmf_speed_small():
    out = nmf_speed.run_nmf_speed(m=64, n=48, rank=4, n_iter=5, repeats=1, threads=1, layers=(2,),
                                  batch=(4, 10, 12, 2), batch_iter=5, include_torchnmf=False, log=None)
    methods = [r["method"] for r in out["results"]]
    assert methods[:2] == ["dnmf k=1", "sklearn NMF(mu)"] and "dnmf k=2" in methods
    k1, sk = out["results"][0], out["results"][1]
    assert abs(k1["final_loss"] / sk["final_loss"] - 1) < 1e-5  # same iterations, same loss
    assert out["batched"]["max_loss_rel_diff"] < 1e-4
    assert "| dnmf k=1 |" in out["markdown"] and "Batched" in out["markdown"]
    json.dumps(out)  # JSON-ready


def test_main_writes_json(tmp_path, capsys):
    p = argparse.ArgumentParser()
    nmf_speed.add_arguments(p)
    args = p.parse_args(["--m", "40", "--n", "30", "--rank", "3", "--iters", "3", "--repeats", "1",
                         "--threads", "1", "--layers", "--no-batch", "--no-torchnmf",
                         "--json", str(tmp_path / "speed.json")])
    assert nmf_speed.main(args) == 0
    assert "| sklearn NMF(mu) |" in capsys.readouterr().out
    data = json.loads((tmp_path / "speed.json").read_text())
    assert data["format_version"] == 1 and data["config"]["m"] == 40
