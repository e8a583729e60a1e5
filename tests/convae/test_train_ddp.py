"""convae.train under DistributedDataParallel: two real processes, PyTorch's own engine.

Each test starts two worker processes (a script written to tmp_path) that join one process
group (gloo on CPU, nccl on two GPUs) through a file store and call ``convae.train`` on
tiny random tensors.  The workers save what they end with; the test compares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import convae
from convae.checkpoint import read_checkpoint

WORKER = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    rank, world, backend, store, out = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                        sys.argv[4], Path(sys.argv[5]))
    torch.set_num_threads(1)
    device = "cpu"
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank,
                            world_size=world)

    import convae
    T = sys.modules["convae._epoch"]    # the module whose save_checkpoint the loop calls

    writes = []                       # every checkpoint this rank writes
    _save = T.save_checkpoint
    def spy(path, *a, **k):
        writes.append(Path(path).name)
        return _save(path, *a, **k)
    T.save_checkpoint = spy

    def pairs(n, seed):
        g = torch.Generator().manual_seed(seed)
        sharp = torch.rand(n, 3, 32, 32, generator=g)
        k = torch.full((3, 1, 3, 3), 1 / 9)
        return F.conv2d(F.pad(sharp, (1, 1, 1, 1), mode="reflect"), k, groups=3).clamp(0, 1), sharp

    def model(seed):
        torch.manual_seed(seed)
        return convae.ConvAE(in_channels=3, base_channels=4)

    def cfg(**kw):
        return convae.TrainConfig(batch_size=4, lr=3e-3, keep_best=False, device=device, **kw)

    def cpu_state(m):
        return {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}

    b, s = pairs(21, 0)               # 21 images: uneven over 2 ranks (sampler pads)
    vb, vs = pairs(5, 1)
    rep = {"rank": rank}

    # a) 2 epochs straight; every rank starts from a different init (DDP broadcasts rank 0's)
    m = model(1 + rank)
    r = convae.train(m, (b, s), (vb, vs), cfg(epochs=2), checkpoint_dir=out / "a",
                     progress=False)
    torch.save(cpu_state(m), out / f"a_rank{rank}.pt")
    rep["a"] = {"world_size": r.world_size, "epochs": r.epochs_completed,
                "val_loss": r.history[-1]["val_loss"], "writes": list(writes),
                "single_process_val_loss": convae.evaluate(m, (vb, vs), batch_size=4)["loss"]}

    # b) 1 epoch, then a resume to 2 from rank 0's last.pt (a fresh init: all from the file)
    writes.clear()
    convae.train(model(1), (b, s), (vb, vs), cfg(epochs=1), checkpoint_dir=out / "b",
                 progress=False)
    m = model(50 + rank)
    r = convae.train(m, (b, s), (vb, vs), cfg(epochs=2), checkpoint_dir=out / "b",
                     resume_from=out / "b" / "last.pt", progress=False)
    torch.save(cpu_state(m), out / f"b_rank{rank}.pt")
    rep["b"] = {"epochs_run": r.epochs_run, "epochs": r.epochs_completed,
                "writes": list(writes)}

    # c) a callback that stops rank 1 only, and 1 validation image for 2 ranks: all stop
    r = convae.train(model(1), (b, s), (vb[:1], vs[:1]), cfg(epochs=4),
                     callback=lambda rec: rank == 1, progress=False)
    rep["c"] = {"stopped": r.stopped_reason, "epochs": r.epochs_completed}

    # d) the ranks hold different data: a clear error on every rank, not a hang
    try:
        n = 21 - rank
        convae.train(model(1), (b[:n], s[:n]), None, cfg(epochs=1), progress=False)
        rep["d"] = "no error"
    except ValueError as e:
        rep["d"] = str(e)

    (out / f"report_rank{rank}.json").write_text(json.dumps(rep))
    # as the command does: every rank done before any tears down its gloo connections (a rank
    # leaving while the other is still in a collective made that one abort at exit, rarely)
    dist.barrier()
    dist.destroy_process_group()
""")

BACKENDS = [
    "gloo",
    pytest.param(
        "nccl",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices"),
        ],
    ),
]


def run_workers(tmp_path: Path, backend: str, world: int = 2, timeout: float = 180) -> Path:
    """Start ``world`` worker processes in one process group; fail on error or hang."""
    script = tmp_path / "ddp_worker.py"
    script.write_text(WORKER)
    out = tmp_path / "out"
    out.mkdir()
    store = tmp_path / "store"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), str(world), backend, str(store), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(world)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("DDP workers hung (timeout)")
    for r, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"rank {r} failed:\n{log}"
    return out


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def states_close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_process_ddp_training(tmp_path, backend, pairs):
    out = run_workers(tmp_path, backend)
    rep = [json.loads((out / f"report_rank{r}.json").read_text()) for r in range(2)]
    exact = backend == "gloo"  # CUDA kernels need not be bit-reproducible
    same = states_equal if exact else states_close

    # a) DDP keeps the ranks in sync, although they started from different inits
    a0, a1 = (torch.load(out / f"a_rank{r}.pt", weights_only=True) for r in range(2))
    assert states_equal(a0, a1)
    assert all(r["a"]["world_size"] == 2 and r["a"]["epochs"] == 2 for r in rep)
    # only rank 0 writes, and its checkpoint is the final model (unwrapped: no "module.")
    assert rep[1]["a"]["writes"] == [] and rep[1]["b"]["writes"] == []
    assert rep[0]["a"]["writes"] == ["best.pt", "last.pt", "best.pt", "last.pt"]
    ck = read_checkpoint(out / "a" / "last.pt")
    assert states_equal(ck["model_state"], a0)
    assert sorted(p.name for p in (out / "a").iterdir()) == ["best.pt", "last.pt"]
    # it loads in a single process and runs
    m = convae.load_model(out / "a" / "last.pt")
    assert states_equal({k: v for k, v in m.state_dict().items()}, a0)
    with torch.no_grad():
        y = m(torch.rand(2, 3, 32, 32))
    assert y.shape == (2, 3, 32, 32) and torch.isfinite(y).all()
    # the sharded, all-reduced validation loss is the single-process one; ranks agree
    assert rep[0]["a"]["val_loss"] == rep[1]["a"]["val_loss"]
    assert rep[0]["a"]["val_loss"] == pytest.approx(
        rep[0]["a"]["single_process_val_loss"], rel=1e-6
    )

    # b) 1 epoch + resume to 2 under DDP == 2 epochs straight
    assert all(r["b"] == {"epochs_run": 1, "epochs": 2, "writes": r["b"]["writes"]} for r in rep)
    b0, b1 = (torch.load(out / f"b_rank{r}.pt", weights_only=True) for r in range(2))
    assert states_equal(b0, b1)
    assert same(b0, a0)
    cb = read_checkpoint(out / "b" / "last.pt")
    if exact:
        assert [h["train_loss"] for h in cb["history"]] == [h["train_loss"] for h in ck["history"]]
        for k, st in ck["optimizer_state"]["state"].items():
            assert torch.equal(st["exp_avg"], cb["optimizer_state"]["state"][k]["exp_avg"])

    # c) one rank's callback stops every rank at the same epoch (no hang)
    assert [r["c"] for r in rep] == [{"stopped": "callback", "epochs": 1}] * 2

    # d) different data on the ranks: both raise the same clear error
    assert all("different training data" in r["d"] for r in rep)

    # e) a DDP last.pt resumes in a single process too, warning that the order changes
    if exact:
        b, s = pairs(21, seed=0)  # the workers' data (same recipe as conftest)
        vb, vs = pairs(5, seed=1)
        m = convae.ConvAE(in_channels=3, base_channels=4)
        with pytest.warns(UserWarning, match="trained on 2 process"):
            r = convae.train(
                m,
                (b, s),
                (vb, vs),
                convae.TrainConfig(epochs=3, batch_size=4, lr=3e-3, keep_best=False),
                resume_from=out / "a" / "last.pt",
                progress=False,
            )
        assert r.epochs_run == 1 and r.world_size == 1


def test_distributed_sampler_shards_cover_the_epoch():
    """The sharding the loop uses under DDP: equal shares, together every index, per-epoch."""
    from torch.utils.data.distributed import DistributedSampler

    from convae.distributed import epoch_order

    gen = torch.Generator().manual_seed(0)
    shards = [
        epoch_order(
            21, gen, 3, DistributedSampler(range(21), num_replicas=2, rank=r, shuffle=True, seed=0)
        )
        for r in range(2)
    ]
    assert [len(s) for s in shards] == [11, 11]  # padded by wrapping
    assert set(torch.cat(shards).tolist()) == set(range(21))
    other = epoch_order(
        21, gen, 4, DistributedSampler(range(21), num_replicas=2, rank=0, shuffle=True, seed=0)
    )
    assert not torch.equal(other, shards[0])  # set_epoch reshuffles


def test_init_distributed_errors(monkeypatch):
    from convae.train import init_distributed

    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        init_distributed("cpu")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    with pytest.raises(ValueError, match="cpu or cuda"):
        init_distributed("mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            init_distributed("cuda")
    elif torch.cuda.device_count() < 2:
        with pytest.raises(ValueError, match="needs 2 GPUs"):
            init_distributed("cuda")
