"""dnmf.distributed: column-split Deep NMF over torch.distributed equals the single-process run.

The multi-process tests start 2 and 3 ``gloo`` processes on 127.0.0.1 (one thread each) once per
world size, run every scenario in that group (start-up dominates), and compare with the same
function run in this process, where ``torch.distributed`` is not initialised. 37 columns do not
split evenly over 2 or 3 processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import dnmf
from dnmf.distributed import (
    ShardedFactorizationResult,
    factorize_columns,
    gather_result,
    keyed_column_normal,
    main,
    run_local,
    run_local_batch,
    sample_columns,
)
from dnmf.shards import column_range

REPO = Path(__file__).resolve().parents[2]
M, N = 24, 37  # 37 columns: 19+18 over 2 processes, 13+12+12 over 3
RTOL = 1e-5


def _data() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.random((M, 6)) @ rng.random((6, N)) + 0.01 * rng.random((M, N))


def _custom_factors() -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.random((M, 6)), rng.random((6, 3))], rng.random((3, N))


# Scenarios run in every group; the same kwargs run in this process for the reference.
SCENARIOS = {
    "frob-random-pretrain": dict(
        ranks=[6, 3], kwargs=dict(init="random", seed=3, max_iter=80, tol=1e-6, pretrain=30)
    ),
    "kl-nndsvda-sampled": dict(
        ranks=[5, 2],
        kwargs=dict(beta=1, init="nndsvda", seed=5, init_sample=16, max_iter=40, tol=0),
    ),
    "frob-nndsvd-penalties": dict(
        ranks=[4],
        kwargs=dict(init="nndsvd", seed=0, max_iter=60, tol=1e-5, l1=0.01, l2=[0.02, 0.03]),
    ),
    "beta-half-nndsvdar": dict(
        ranks=[5, 3],
        kwargs=dict(beta=0.5, init="nndsvdar", seed=2, init_sample=20, max_iter=30, tol=0),
    ),
    "frob-custom": dict(ranks=[6, 3], kwargs=dict(init="custom", max_iter=50, tol=0)),
    # the coordinate-descent solvers: H's change summed over the shards, middle-layer entries
    "frob-hals-deep": dict(
        ranks=[6, 3, 2], kwargs=dict(solver="hals", seed=4, max_iter=30, tol=0, pretrain=10)
    ),
    "frob-mu-acc": dict(ranks=[5, 3], kwargs=dict(solver="mu-acc", seed=6, max_iter=30, tol=1e-6)),
}


def _reference(name: str) -> ShardedFactorizationResult:
    sc = SCENARIOS[name]
    kw = dict(sc["kwargs"])
    if kw.get("init") == "custom":
        kw["Ws"], kw["H"] = _custom_factors()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dnmf.ConvergenceWarning)
        return factorize_columns(_data(), sc["ranks"], **kw)


def _jobs(world: int, npy: Path) -> list[dict]:
    V = _data()
    jobs = []
    for sc in SCENARIOS.values():
        kw = dict(sc["kwargs"])
        job = {"V": V, "ranks": sc["ranks"], "kwargs": kw}
        if kw.get("init") == "custom":
            Ws, H = _custom_factors()
            kw["Ws"], job["H"] = Ws, H
        jobs.append(job)
    bad = V.copy()
    bad[3, -2] = np.nan  # in the last process's columns only
    jobs.append({"V": bad, "ranks": [3], "kwargs": {"max_iter": 5}})
    jobs.append({"V": -V, "ranks": [3], "kwargs": {"max_iter": 5}})
    jobs.append({"V": V, "ranks": [3], "kwargs": {"max_iter": 5, "init": "bogus"}})
    shards = [V[:, a:b] for a, b in (column_range(N, r, world) for r in range(world))]
    shards[-1] = shards[-1][:-1]  # one row short
    jobs.append({"shards": shards, "ranks": [3], "kwargs": {"max_iter": 5}})
    # after the collective errors, the group goes on; each process maps its columns of a .npy
    jobs.append(
        {"npy": str(npy), "ranks": [4], "kwargs": dict(init="random", seed=1, max_iter=20, tol=0)}
    )
    return jobs


N_ERR = 4


@pytest.fixture(scope="module", params=[2, 3], ids=["world2", "world3"])
def group_runs(request, tmp_path_factory) -> tuple[int, list]:
    npy = tmp_path_factory.mktemp("npy") / "V.npy"
    np.save(npy, _data())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dnmf.ConvergenceWarning)
        jobs = _jobs(request.param, npy)
        return request.param, run_local_batch(jobs, request.param, threads=1, timeout=240)


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_group_equals_single_process(group_runs, name):
    world, results = group_runs
    got = results[list(SCENARIOS).index(name)]
    assert not isinstance(got, BaseException), got
    ref = _reference(name)
    assert got.world_size == world and ref.world_size == 1
    assert got.H.shape == (ref.ranks[-1], N)
    assert got.n_iter == ref.n_iter and got.converged == ref.converged
    assert _rel(got.W(), ref.W()) < RTOL
    for Wg, Wr in zip(got.Ws, ref.Ws):
        assert _rel(Wg, Wr) < RTOL
    assert _rel(got.H, ref.H) < RTOL
    assert _rel(got.loss_history, ref.loss_history) < RTOL
    np.testing.assert_array_equal(got.loss_iters, ref.loss_iters)
    assert len(got.pretrain_loss_histories) == len(ref.pretrain_loss_histories)
    for a, b in zip(got.pretrain_loss_histories, ref.pretrain_loss_histories):
        assert _rel(a, b) < RTOL
    assert got.seconds > 0


def test_group_custom_init_equals_dnmf_factorize(group_runs):
    _, results = group_runs
    got = results[list(SCENARIOS).index("frob-custom")]
    Ws, H = _custom_factors()
    ref = dnmf.factorize(_data(), [6, 3], init="custom", Ws=Ws, H=H, max_iter=50, tol=0)
    assert _rel(got.W(), ref.W()) < RTOL and _rel(got.H, ref.H) < RTOL
    assert got.n_iter == ref.n_iter == 50


def test_group_errors_are_raised_on_every_rank(group_runs):
    world, results = group_runs
    nan_err, neg_err, init_err, rows_err = results[-N_ERR - 1 : -1]
    # the NaN sits in the last process's block: rank 0 reports that rank refused its input
    assert isinstance(nan_err, ValueError)
    assert f"rank {world - 1} refused its input" in str(nan_err) and "NaN" in str(nan_err)
    assert isinstance(neg_err, ValueError) and "nonnegative" in str(neg_err)
    assert isinstance(init_err, ValueError) and "init must be one of" in str(init_err)
    assert isinstance(rows_err, ValueError) and "same rows" in str(rows_err)
    assert str([M] * (world - 1) + [M - 1]) in str(rows_err)


def test_group_reads_npy_shards_after_errors(group_runs):
    world, results = group_runs
    got = results[-1]
    assert isinstance(got, ShardedFactorizationResult) and got.world_size == world
    ref = factorize_columns(_data(), [4], init="random", seed=1, max_iter=20, tol=0)
    assert _rel(got.W(), ref.W()) < RTOL and _rel(got.H, ref.H) < RTOL
    assert got.n_iter == 20


def test_run_local_checks_before_starting_processes():
    with pytest.raises(ValueError, match="world_size"):
        run_local(_data(), [4], world_size=0)
    with pytest.raises(ValueError, match="backend"):
        run_local(_data(), [4], world_size=2, backend="mpi")


# ---------------------------------------------------------------- single process, no dist


def test_single_process_matches_factorize_with_custom_init():
    V = _data()
    Ws, H = _custom_factors()
    for beta in (2, 1):
        a = factorize_columns(V, [6, 3], beta=beta, init="custom", Ws=Ws, H=H, max_iter=40, tol=0)
        b = dnmf.factorize(V, [6, 3], beta=beta, init="custom", Ws=Ws, H=H, max_iter=40, tol=0)
        assert _rel(a.W(), b.W()) < 1e-12 and _rel(a.H, b.H) < 1e-12
        assert _rel(a.loss_history, b.loss_history) < 1e-12


@pytest.mark.parametrize("init", ["nndsvd", "nndsvda"])
def test_full_sample_nndsvd_is_factorize_init(init):
    """With every column sampled, the NNDSVD init (and the pretrained fit) is dnmf.factorize's."""
    V = _data()
    a = factorize_columns(V, [6, 3], init=init, seed=0, max_iter=30, tol=0)
    b = dnmf.factorize(V, [6, 3], init=init, seed=0, max_iter=30, tol=0)
    assert _rel(a.W(), b.W()) < 1e-9 and _rel(a.H, b.H) < 1e-9


def test_single_process_without_dist_and_tensor_io():
    assert not torch.distributed.is_initialized()
    Vt = torch.from_numpy(_data())
    res = factorize_columns(Vt, 4, init="random", seed=0, max_iter=15, tol=0)
    assert isinstance(res.H, torch.Tensor) and res.H.dtype == torch.float64
    assert (res.rank, res.world_size, res.col_offset, res.n_cols) == (0, 1, 0, N)
    assert res.reconstruct().shape == (M, N)
    assert np.all(np.diff(res.loss_history) <= 1e-9 * res.loss_history[0])
    full = gather_result(res)
    assert full is not None and torch.equal(full.H, res.H)
    # same seed, same factors; another seed, others
    again = factorize_columns(_data(), 4, init="random", seed=0, max_iter=15, tol=0)
    assert np.allclose(again.H, res.H.numpy(), rtol=1e-12)
    other = factorize_columns(_data(), 4, init="random", seed=1, max_iter=15, tol=0)
    assert not np.allclose(other.H, res.H.numpy())


def test_float32_and_loss_decreases():
    V = _data().astype(np.float32)
    res = factorize_columns(V, [5, 2], init="nndsvda", seed=0, max_iter=40, tol=0)
    assert res.H.dtype == np.float32 and all(W.dtype == np.float32 for W in res.Ws)
    assert res.loss_history[-1] < res.loss_history[0]


def test_callback_stops_run():
    seen = []

    def cb(it, loss):
        seen.append((it, loss))
        return it >= 4

    res = factorize_columns(_data(), 3, init="random", seed=0, max_iter=50, tol=0, callback=cb)
    assert res.n_iter == 4 and seen[-1][0] == 4


def test_keyed_random_columns_do_not_depend_on_the_split():
    whole = keyed_column_normal(9, 0, 5, 0, 700)
    for cuts in ([0, 300, 700], [0, 1, 255, 256, 257, 699, 700], [0, 512, 700]):
        parts = [keyed_column_normal(9, 0, 5, a, b) for a, b in zip(cuts[:-1], cuts[1:])]
        assert torch.equal(torch.cat(parts, dim=1), whole)
    assert not torch.equal(keyed_column_normal(9, 1, 5, 0, 700), whole)  # another layer
    assert not torch.equal(keyed_column_normal(8, 0, 5, 0, 700), whole)  # another seed


def test_sample_columns():
    assert np.array_equal(sample_columns(10, 50, seed=0), np.arange(10))
    s = sample_columns(1000, 64, seed=0)
    assert s.shape == (64,) and np.all(np.diff(s) > 0) and s.max() < 1000
    assert np.array_equal(s, sample_columns(1000, 64, seed=0))
    assert not np.array_equal(s, sample_columns(1000, 64, seed=1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(init="nndsvda", init_sample=3), r"ranks\[0\] <= min\(24, sampled columns 3\)"),
        (dict(init="random", Ws=[np.ones((M, 4))]), "only used with init='custom'"),
        (dict(col_offset=5), "tile"),
        (dict(n_cols=40), "does not match"),
        (dict(seed=-1), "seed"),
        (dict(beta="nope"), "beta"),
        (dict(pretrain=0), "pretrain"),
        (dict(init_sample=0), "init_sample"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        factorize_columns(_data(), 4, max_iter=2, **kwargs)


def test_bad_data():
    V = _data()
    V[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        factorize_columns(V, 2)
    with pytest.raises(ValueError, match="nonnegative"):
        factorize_columns(-_data(), 2)
    with pytest.raises(ValueError, match="2-D"):
        factorize_columns(np.ones((2, 3, 4)), 2)
    with pytest.raises(ValueError, match="not initialised"):
        factorize_columns(_data(), 2, group=object())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_single_process_cuda_matches_cpu():
    V = _data()
    a = factorize_columns(V, [5, 2], init="nndsvda", seed=0, max_iter=30, tol=0, device="cuda")
    b = factorize_columns(V, [5, 2], init="nndsvda", seed=0, max_iter=30, tol=0)
    assert _rel(a.W(), b.W()) < 1e-8 and _rel(a.H, b.H) < 1e-8
    t = factorize_columns(torch.from_numpy(V).cuda(), 3, init="random", seed=0, max_iter=10, tol=0)
    assert t.H.is_cuda


# ---------------------------------------------------------------- command line


def _cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_cli_single_process(tmp_path, capsys, monkeypatch):
    """Without torchrun, ``python -m dnmf.distributed`` is one process (main() in-process here)."""
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    V = _data()
    np.save(tmp_path / "V.npy", V)
    out = tmp_path / "res.npz"
    args = [
        "--npy",
        str(tmp_path / "V.npy"),
        "--ranks",
        "5",
        "2",
        "--max-iter",
        "20",
        "--tol",
        "0",
        "--seed",
        "0",
        "--dtype",
        "float64",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["world_size"] == 1 and info["n"] == N and info["n_iter"] == 20
    got = dnmf.load(out)
    ref = factorize_columns(V, [5, 2], max_iter=20, tol=0, seed=0)
    assert _rel(got.W(), ref.W()) < RTOL and _rel(got.H, ref.H) < RTOL
    assert main(["--npy", str(tmp_path / "missing.npy"), "--ranks", "2"]) == 2
    assert "no .npy file" in capsys.readouterr().err
    np.save(tmp_path / "neg.npy", -V)
    assert main(["--npy", str(tmp_path / "neg.npy"), "--ranks", "2"]) == 2
    assert "nonnegative" in capsys.readouterr().err


@pytest.mark.skipif(
    shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
    reason="torchrun not installed beside python",
)
def test_cli_torchrun_two_processes(tmp_path):
    """The README's single-node command, with 2 processes."""
    V = _data()
    np.save(tmp_path / "V.npy", V)
    out = tmp_path / "res.npz"
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "dnmf.distributed",
        "--npy",
        str(tmp_path / "V.npy"),
        "--ranks",
        "5",
        "2",
        "--max-iter",
        "20",
        "--tol",
        "0",
        "--seed",
        "0",
        "--dtype",
        "float64",
        "--out",
        str(out),
    ]
    p = subprocess.run(
        cmd, capture_output=True, text=True, env=_cli_env(), timeout=180, cwd=tmp_path
    )
    assert p.returncode == 0, p.stderr[-3000:]
    info = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1])
    assert info["world_size"] == 2 and info["backend"] == "gloo"
    got = dnmf.load(out)
    ref = factorize_columns(V, [5, 2], max_iter=20, tol=0, seed=0)
    assert _rel(got.W(), ref.W()) < RTOL and _rel(got.H, ref.H) < RTOL


def test_masked_arrays_are_refused():
    """factorize_columns takes no mask: a masked array's mask must not be dropped silently."""
    V = np.ma.masked_array(_data(), mask=_data() > 0.9)
    with pytest.raises(ValueError, match="V_local is a numpy masked array"):
        factorize_columns(V, 2)
