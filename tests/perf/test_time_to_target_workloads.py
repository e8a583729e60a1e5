"""perf.time_to_target's workload cases on tiny matrices: the generators, the losses, one fit
per process with its peak memory, the busy core, the tables and the command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition._nmf import _beta_divergence

from perf import _isolated, _problems, _timing, _workloads
from perf import _traces as tr
from perf import time_to_target as ttt

REPO = Path(__file__).resolve().parents[2]
LINUX = sys.platform.startswith("linux")


def _gone(pid: int) -> bool:
    """Whether ``pid`` has ended (no such process, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# ---------------------------------------------------------------- the matrices
def test_sparse_random_has_the_density_and_no_stored_zero():
    S = _problems.sparse_random(400, 500, 0.01, seed=3, dtype=np.float32)
    assert S.shape == (400, 500) and S.dtype == np.float32 and S.format == "csr"
    # about k²/(2mn) = 10 of the k = 2000 draws are duplicates, dropped
    assert 1950 <= S.nnz <= 2000 and S.has_sorted_indices
    assert S.data.min() > 0 and S.data.max() <= 1
    again = _problems.sparse_random(400, 500, 0.01, seed=3, dtype=np.float32)
    assert (S != again).nnz == 0  # seeded
    assert (S != _problems.sparse_random(400, 500, 0.01, seed=4)).nnz > 0


def test_poisson_counts_are_positive_integers_of_a_planted_rate():
    C = _problems.poisson_counts(300, 400, 0.02, rank=5, seed=0)
    assert C.shape == (300, 400) and C.dtype == np.float64
    assert 2330 <= C.nnz <= 2400  # about 24 duplicate draws dropped
    assert np.all(C.data >= 1) and np.all(C.data == np.round(C.data))
    assert 2.0 < C.data.mean() < 4.0  # 1 + Poisson with mean rate 2


def test_write_planted_rows_writes_a_row_major_npy(tmp_path):
    path = _problems.write_planted_rows(tmp_path / "x.npy", 1000, 40, 4, seed=0, block=96)
    X = np.load(path, mmap_mode="r")
    assert X.shape == (1000, 40) and X.dtype == np.float32 and X.flags.c_contiguous
    assert X.min() >= 0 and 0.2 < float(X.mean()) < 0.35  # ≈ 0.25 + 10 % noise
    s = np.linalg.svd(np.asarray(X, dtype=np.float64), compute_uv=False)
    assert s[4] < 0.05 * s[0]  # rank 4 plus a little noise


def test_problems_round_trip_through_their_files(tmp_path):
    S = _problems.sparse_random(50, 40, 0.05, seed=1)
    p = _workloads.save(S, tmp_path / "s", "csr")
    assert p.nnz == S.nnz and p.nbytes == S.data.nbytes + S.indices.nbytes + S.indptr.nbytes
    assert (_workloads.load(p) != S).nnz == 0
    D = np.asfortranarray(np.random.default_rng(0).random((30, 20)))
    q = _workloads.save(D, tmp_path / "d.npy", "dense")
    back = _workloads.load(q)
    assert np.array_equal(back, D) and back.flags.f_contiguous  # the layout is kept
    m = _workloads.written(tmp_path / "d.npy")
    assert m.kind == "memmap" and isinstance(_workloads.load(m), np.memmap)


def test_sized_scales_rows_columns_density_and_rank():
    w = _workloads.sized("sparse-20k", 0.01)
    assert (w.m, w.n, w.rank) == (200, 200, 20) and w.density == pytest.approx(0.05)
    assert _workloads.sized("sparse-20k", 1.0) == _workloads.WORKLOADS["sparse-20k"]
    tall = _workloads.sized("dense-tall", 0.01)
    assert (tall.m, tall.n, tall.rank) == (1000, 200, 10)  # the columns stay
    tiny = _workloads.sized("kl-counts", 0.001)
    assert (tiny.m, tiny.n) == (8, 8) and tiny.rank == 4 and tiny.density == 1.0


# ---------------------------------------------------------------- the losses
def test_losses_equal_the_dense_formulas_and_scikit_learns():
    rng = np.random.default_rng(2)
    S = sp.random(60, 50, density=0.1, format="csr", random_state=2)
    S.data = np.round(5 * S.data) + 1  # counts
    W, H = rng.random((60, 4)), rng.random((4, 50))
    D = S.toarray()
    want = 0.5 * np.sum((D - W @ H) ** 2)
    assert _workloads.frobenius(S, W, H) == pytest.approx(want, rel=1e-12)
    assert _workloads.frobenius(D, W, H) == pytest.approx(want, rel=1e-12)
    kl = _beta_divergence(S, W, H, 1)
    assert _workloads.kullback_leibler(S, W, H) == pytest.approx(kl, rel=1e-12)
    assert _workloads.loss(S, W, H, 1.0) == pytest.approx(kl, rel=1e-12)


# ---------------------------------------------------------------- one process per fit
@pytest.mark.skipif(not LINUX, reason="peak RSS in KiB and /proc: Linux")
def test_isolated_call_returns_the_value_and_its_own_peak_memory():
    ballast = np.ones(300 * 2**17)  # 300 MiB touched here: a child must not report it
    mib = 64
    out = _isolated.call(np.ones, mib * 2**17, threads=1)
    assert out.error is None and out.value.shape == (mib * 2**17,)
    assert out.peak_rss_mib - out.start_rss_mib >= mib
    here = _isolated.current_rss_mib()
    assert out.peak_rss_mib < here - 150, (out.peak_rss_mib, here)
    del ballast


def test_isolated_call_reports_an_exception_and_a_killed_process():
    bad = _isolated.call(np.ones, -1, threads=1)
    assert bad.value is None and bad.error.startswith("ValueError: negative dimensions")
    assert bad.peak_rss_mib > 0
    killed = _isolated.call(os.abort, threads=1)
    assert killed.error == "the process was killed by SIGABRT" and killed.peak_rss_mib is None


# ---------------------------------------------------------------- the busy core
@pytest.mark.skipif(not LINUX, reason="os.sched_setaffinity: Linux")
def test_busy_core_holds_its_core_and_is_gone_afterwards():
    with _timing.busy_core(0) as proc:
        assert proc.poll() is None and os.sched_getaffinity(proc.pid) == {0}
        time.sleep(0.2)
        assert proc.poll() is None  # still spinning
    assert proc.returncode is not None and _gone(proc.pid)
    with pytest.raises(RuntimeError, match="inside"):
        with _timing.busy_core(0) as proc:
            raise RuntimeError("inside")
    assert proc.returncode is not None and _gone(proc.pid)


@pytest.mark.skipif(not LINUX, reason="os.sched_setaffinity: Linux")
def test_busy_core_ends_by_itself_when_its_parent_is_killed():
    code = (
        "import os, signal, sys\n"
        "from perf import _timing\n"
        "with _timing.busy_core(0) as p:\n"
        "    print(p.pid, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)


def test_check_core_names_the_cores_it_may_use():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("Linux only")
    assert _timing.check_core(min(os.sched_getaffinity(0))) == min(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match=r"core 4096 is not one this process may use \(\["):
        _timing.check_core(4096)


# ---------------------------------------------------------------- the rows and cases
def test_minibatch_row_reaches_a_loose_target_and_counts_its_transform(tmp_path):
    path = _problems.write_planted_rows(tmp_path / "x.npy", 3000, 30, 4, seed=0)
    X = _workloads.load(_workloads.written(path))
    ref = _workloads.reference(X, "sklearn MiniBatchNMF()", 4, 2.0)
    assert ref.n_iter >= 1 and ref.loss > 0
    trace = _workloads.dnmf_minibatch(X, 4, tr.Recorder(ref.loss * 1.5, cap_s=60.0))
    assert trace.stop == "target" and trace.iters == list(range(1, len(trace.iters) + 1))
    assert trace.losses[-1] <= 1.5 * ref.loss and trace.seconds == sorted(trace.seconds)


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_dnmf_default_row_stops_at_the_target_and_keeps_the_exact_loss(device, beta):
    C = _problems.poisson_counts(60, 80, 0.2, rank=3, seed=0)
    ref_row = "sklearn NMF()" if beta == 2 else _workloads.REFERENCES[1]
    ref = _workloads.reference(C, ref_row, 3, beta)
    rec = tr.Recorder(ref.loss * 1.05, cap_s=60.0)
    trace = _workloads.dnmf_default(C, 3, beta, rec, str(device))
    assert trace.stop == "target" and trace.losses[-1] <= 1.05 * ref.loss
    assert trace.extra["exact_final_loss"] == pytest.approx(trace.losses[-1], rel=1e-6)
    if beta == 1:
        assert all(it % 10 == 0 for it in trace.iters)  # β = 1 records its loss at each check


def test_minibatch_row_fits_on_the_device(device, tmp_path):
    path = _problems.write_planted_rows(tmp_path / "x.npy", 2500, 20, 3, seed=1)
    X = _workloads.load(_workloads.written(path))
    trace = _workloads.dnmf_minibatch(X, 3, tr.Recorder(1e300, cap_s=60.0), str(device))
    assert trace.stop == "target" and trace.iters == [1]  # one pass, then the check


def test_run_row_refuses_an_unknown_row():
    with pytest.raises(ValueError, match="unknown row 'nosuch'"):
        _workloads.run_row(
            _workloads.Problem("dense", "", (1, 1), "float64", 0), "nosuch", 1, 2, 0, 0
        )


def test_run_workload_writes_rows_ratios_and_memory(tmp_path):
    case = ttt.run_workload("kl-counts", 0.02, 1, 1000.0, 1, 0, tmp_path, log=None)
    assert case["shape"] == [60, 100] and case["rank"] == 20 and case["nnz"] > 2000
    names = [m["method"] for m in case["methods"]]
    assert names == ["sklearn NMF(solver='mu', beta_loss='kullback-leibler')", "dnmf default"]
    assert case["beta"] == 1.0
    ref, dn = case["methods"]
    assert ref["ratio_to_sklearn_1"] == 1.0 and ref["error"] is None
    assert ref["final_over_target"] == pytest.approx(1.0, abs=1e-9)  # the same fit again
    assert dn["seconds_to_1"] is not None and dn["final_over_target"] <= 1.0
    assert dn["ratio_to_sklearn_1"] == pytest.approx(dn["seconds_to_1"] / ref["seconds_to_1"])
    for m in case["methods"]:
        assert m["peak_rss_mib"] > m["start_rss_mib"] > 0
    assert case["reference"]["peak_rss_mib"] > 0
    md = "\n".join(ttt._workload_markdown("kl-counts", case))
    assert "**kl-counts** — Poisson counts of a planted rate of the fitted rank, CSR, " in md
    assert "60×100" in md and "β = 1, matrix " in md
    assert "| peak RSS (MiB) | RSS at start (MiB) |" in md and "| dnmf default | " in md


def test_workload_row_of_a_failed_fit_is_a_row():
    fail = _isolated.Isolated(error="MemoryError: Unable to allocate", peak_rss_mib=300.0)
    ok = _isolated.Isolated(_workloads.Reference(1.0, 10, 2.0), 250.0, 200.0)
    rows = [ttt._workload_row("sklearn NMF()", [(1.2, ok)], 2.0)]
    rows.append(ttt._workload_row("dnmf default", [(0.5, fail)], 2.0))
    ttt._workload_ratios(rows)
    assert rows[1]["error"].startswith("MemoryError") and rows[1]["seconds_to_1"] is None
    assert rows[1]["ratio_to_sklearn_1"] is None and rows[1]["peak_rss_mib"] == 300.0
    case = {
        "about": "a",
        "shape": [4, 4],
        "nnz": None,
        "dtype": "float64",
        "rank": 1,
        "beta": 2.0,
        "matrix_mib": 0.0,
        "target": 2.0,
        "reference": {"method": "sklearn NMF()", "seconds": 1.0, "n_iter": 10},
        "methods": rows,
    }
    case["reference"]["peak_rss_mib"] = 250.0
    md = "\n".join(ttt._workload_markdown("x", case))
    assert "| dnmf default | failed: MemoryError: Unable to allocate | – |" in md
    json.dumps(case)  # no NaN, nothing numpy


def test_command_runs_workloads_and_the_rank_search_with_a_busy_core(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "perf.time_to_target", "--only", "sparse-20k"]
    cmd += ["rank-selection-defaults", "--scale", "0.01", "--selection-seeds", "1"]
    cmd += ["--threads", "1", "--rounds", "1", "--scratch", str(tmp_path), "--out", str(out)]
    if LINUX:
        cmd += ["--busy-core", str(min(os.sched_getaffinity(0)))]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "result.json").read_text())
    assert list(data["cases"]) == ["sparse-20k", "rank-selection-defaults"]
    assert data["config"]["scale"] == 0.01 and data["config"]["selection_seeds"] == 1
    sparse = data["cases"]["sparse-20k"]
    assert sparse["shape"] == [200, 200] and sparse["dtype"] == "float64"
    assert [m["method"] for m in sparse["methods"]] == ["sklearn NMF()", "dnmf default"]
    assert all(m["peak_rss_mib"] > m["start_rss_mib"] > 0 for m in sparse["methods"])
    sel = data["cases"]["rank-selection-defaults"]
    assert [r["seed"] for r in sel["seeds"]] == [0] and sel["seeds"][0]["seconds"] > 0
    assert sel["hits"] == (sel["seeds"][0]["best"] == 6)
    md = (out / "result.md").read_text()
    assert "**sparse-20k** — uniform nonzeros, CSR, 200×200" in md
    assert "**rank-selection-defaults** — planted rank 6, 80×120" in md
    assert (out / "loss.png").stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the matrices' folder is removed
    if LINUX:
        assert data["busy"]["core"] == data["config"]["busy_core"]
        assert "A CPU-bound process pinned to core" in md and _gone(data["busy"]["pid"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--busy-core", "4096"], "--busy-core: core 4096 is not one this process may use"),
        (["--scale", "0"], "argument --scale: must be a finite number > 0, got '0'"),
        (["--only", "sparse-2k"], "argument --only: invalid choice: 'sparse-2k'"),
    ],
)
def test_command_refuses_bad_workload_flags(tmp_path, args, message):
    cmd = [sys.executable, "-m", "perf.time_to_target", *args, "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()
