"""perf.time_to_target on tiny matrices: traces, reach times, the tables, the command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from perf import _traces as tr
from perf import time_to_target as ttt

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def case():
    rng = np.random.default_rng(0)
    V = (rng.random((30, 4)) @ rng.random((4, 24)) + 0.05 * rng.random((30, 24))).astype(np.float32)
    return ttt.Case("tiny", "30×24", V, V, 4)


def test_exact_loss_dense_and_sparse_agree():
    rng = np.random.default_rng(1)
    S = sp.random(40, 30, density=0.2, format="csr", random_state=1, dtype=np.float64)
    W, H = rng.random((40, 3)), rng.random((3, 30))
    want = 0.5 * np.sum((S.toarray() - W @ H) ** 2)
    assert tr.exact_loss(S, W, H) == pytest.approx(want, rel=1e-12)
    assert tr.exact_loss(S.toarray(), W, H) == pytest.approx(want, rel=1e-12)


def test_recorder_stops_at_target_or_cap_and_pauses_for_the_loss():
    rec = tr.Recorder(target=1.0, cap_s=1e9)
    assert rec.point(1, 2.0) is False and rec.point(2, lambda: 0.5) is True
    assert rec.trace.stop == "target" and rec.trace.iters == [1, 2]
    assert rec.trace.losses == [2.0, 0.5]
    capped = tr.Recorder(target=0.0, cap_s=-1.0)
    assert capped.point(1, 3.0) is True and capped.trace.stop == "cap"
    batch = tr.Recorder(target=np.array([1.0, 2.0]), cap_s=1e9)
    assert batch.point(1, np.array([0.5, 3.0])) is False  # every matrix must reach its own
    assert batch.point(2, np.array([0.5, 1.5])) is True


def test_reach_finds_the_first_point_at_each_level():
    t = tr.Trace(seconds=[0.1, 0.2, 0.3], iters=[1, 2, 3], losses=[3.0, 1.0005, 0.99])
    assert ttt.reach(t, 1.0, 1.0) == (0.3, 3)
    assert ttt.reach(t, 1.0, 1.001) == (0.2, 2)
    assert ttt.reach(t, 0.5, 1.0) == (None, None)


@pytest.mark.parametrize("method", list(ttt.SINGLE_METHODS))
def test_every_method_traces_a_decreasing_loss_to_its_stop(case, method):
    if method in ttt.OPTIONAL_PEERS:
        pytest.importorskip(ttt.OPTIONAL_PEERS[method])
    # a loose target: each library reaches it within a few iterations
    loose = 0.5 * float(np.sum(case.V.astype(np.float64) ** 2)) * 0.01
    rec = tr.Recorder(target=loose, cap_s=30.0)
    trace = ttt.SINGLE_METHODS[method](case, rec)
    assert trace.stop == "target", (method, trace.losses[-3:])
    assert trace.seconds == sorted(trace.seconds) and trace.iters == sorted(trace.iters)
    assert trace.losses[-1] <= loose
    if "exact_final_loss" in trace.extra:  # dnmf's own loss is the exact loss
        assert trace.extra["exact_final_loss"] == pytest.approx(trace.losses[-1], rel=1e-4)


def test_sklearn_trace_is_scikit_learns_own_fit(case):
    """The wrapped updates change nothing: the traced run ends where an untraced one does."""
    from sklearn.decomposition import NMF

    est = NMF(n_components=4, random_state=0, max_iter=15, tol=0)
    W = est.fit_transform(case.X)
    want = tr.exact_loss(case.X, W, est.components_)

    class StopAt15(tr.Recorder):
        def point(self, it, loss):
            return super().point(it, loss) or it >= 15

    trace = tr.sklearn_nmf(case.X, 4, StopAt15(target=-1.0, cap_s=1e9), "cd")
    assert trace.iters[-1] == 15 and trace.losses[-1] == pytest.approx(want, rel=1e-10)


def test_single_case_table_and_ratios(case):
    methods = ["sklearn NMF()", "dnmf hals", "dnmf default"]
    out = ttt.run_single(case, 1, 1000.0, methods, log=None)  # no time cap: not flaky
    names = [m["method"] for m in out["methods"]]
    assert names == ["sklearn NMF()", "dnmf hals", "dnmf default"]
    sk = out["methods"][0]
    assert sk["ratio_to_sklearn_1"] == 1.0 and sk["final_over_target"] == pytest.approx(1, abs=1e-6)
    assert out["reference"]["n_iter"] >= sk["iters_to_1"] >= 1
    for m in out["methods"]:
        r = m["rounds"][0]
        if r["seconds_to_1"] is not None:
            assert r["seconds_to_1.001"] <= r["seconds_to_1"]
        assert len(m["trace"]["seconds"]) == len(m["trace"]["losses"]) <= 300
    md = ttt.to_markdown({"cases": {"tiny": out}})
    assert "| dnmf default |" in md and "seconds to target" in md


def test_dnmf_rows_fit_on_the_requested_device(case, device, monkeypatch):
    """dnmf's rows fit on ``device`` (``V`` moves there inside the timed call); scikit-learn's
    stays on the host; the table says where each ran."""
    import dnmf

    seen = []
    factorize = dnmf.factorize

    def spy(*args, **kw):
        seen.append(kw.get("device"))
        return factorize(*args, **kw)

    monkeypatch.setattr(dnmf, "factorize", spy)
    case.device = str(device)
    out = ttt.run_single(case, 1, 1000.0, ["sklearn NMF()", "dnmf default"], log=None)
    assert seen == [str(device)]
    assert out["methods"][1]["final_over_target"] <= 1.0
    config = {"device": str(device), "threads": 2}
    env = {"gpu": "a GPU"} if device.type == "cuda" else {}
    md = ttt.to_markdown({"config": config, "environment": env, "cases": {"tiny": out}})
    assert ("host CPU with 2 threads" in md) == (device.type == "cuda")


def test_check_device_names_what_is_missing():
    assert ttt.check_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="'nonsense' is not a torch device"):
        ttt.check_device("nonsense")
    with pytest.raises(ValueError, match="only 'cpu' and CUDA"):
        ttt.check_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda': no CUDA device is available here"):
            ttt.check_device("cuda")


def test_deep_target_is_cached(case):
    cache: dict = {}
    a = ttt.deep_target(case.V, [4, 2], 30, 5, cache)
    assert len(cache) == 1 and a["iters"] == 30
    cache[next(iter(cache))]["target"] = -1.0  # a cached value is used as it is
    assert ttt.deep_target(case.V, [4, 2], 30, 5, cache)["target"] == -1.0
    assert len(cache) == 1 and ttt.deep_target(case.V, [4, 2], 31, 5, cache)["iters"] == 31


def test_batched_case_reaches_every_matrix_target():
    out = ttt.run_batched(6, 12, 10, 2, 1, 1000.0, 0, log=lambda s: None)
    assert [m["method"] for m in out["methods"]] == [
        "dnmf mu, one batched call",
        "dnmf hals, one batched call",
        "dnmf hals-acc, one batched call",
        "dnmf default, one batched call",
        "dnmf hals, one batched call from scikit-learn's starting factors",
        "dnmf default, one batched call from scikit-learn's starting factors",
    ]
    for m in out["methods"]:  # a matrix may settle in a worse local minimum than scikit-learn's
        assert 0 < m["fraction_reached"] <= 1
        assert 0 < m["mean_final_over_target"] <= m["final_over_target"]  # mean ≤ worst
        assert (m["seconds_to_1"] is None) == (m["fraction_reached"] < 1)
        assert (m["speedup_1"] is None) == (m["seconds_to_1"] is None)
    # from scikit-learn's own start HALS is its cd, so every matrix reaches its target
    assert out["methods"][-2]["fraction_reached"] == 1
    md = "\n".join(ttt._batched_markdown(out))
    assert "| dnmf default, one batched call |" in md
    ctl = out["control"]
    assert ctl["random_state"] == 1 and 0 <= ctl["fraction_reached"] <= 1
    assert ctl["fraction_reached"] <= ctl["fraction_within_1.001"]
    assert f"reaches {100 * ctl['fraction_reached']:.1f} % of these targets" in md
    assert f"mean {ctl['mean_ratio']:.5f}×" in md and "| mean final / target |" in md


def test_command_writes_json_markdown_and_png(tmp_path):
    cmd = [sys.executable, "-m", "perf.time_to_target", "--quick", "--only", "batched"]
    cmd += ["--threads", "1", "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "run" / "result.json").read_text())
    assert data["benchmark"] == "time-to-target" and list(data["cases"]) == ["batched"]
    assert "goals" not in data and data["config"]["quick"] is True
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert "**batched**" in (tmp_path / "run" / "result.md").read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "perf.time_to_target", "--rounds", "0", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--rounds" in bad.stderr
    wrong = subprocess.run(
        [sys.executable, "-m", "perf.time_to_target", "--device", "nonsense"]
        + ["--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 2 and "--device: device 'nonsense'" in wrong.stderr
