import dataclasses

import pytest
import torch
from torch.utils.data import Dataset

import convae
from convae import ConvAE, TrainConfig, evaluate, plot_history, train
from convae.checkpoint import read_checkpoint


def tiny_model(c: int = 3, seed: int = 1) -> ConvAE:
    torch.manual_seed(seed)
    return ConvAE(in_channels=c, base_channels=4)


def cfg(**kw) -> TrainConfig:
    kw.setdefault("epochs", 2)
    kw.setdefault("batch_size", 8)
    return TrainConfig(**kw)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_one_step_lowers_loss(pairs):
    b, s = pairs(4)
    m = tiny_model()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    before = convae.mse_ssim_loss(m(b), s)
    opt.zero_grad()
    before.backward()
    opt.step()
    after = convae.mse_ssim_loss(m(b), s)
    assert after.item() < before.item()


def test_training_lowers_loss_and_records_history(pairs):
    b, s = pairs(16)
    m = tiny_model()
    start = evaluate(m, (b, s))["loss"]
    r = train(m, (b, s), (b[:4], s[:4]), cfg(epochs=3, lr=3e-3), progress=False)
    assert r.epochs_run == r.epochs_completed == 3 and r.stopped_reason == "epochs"
    assert [h["epoch"] for h in r.history] == [1, 2, 3]
    for h in r.history:
        assert {"train_loss", "val_loss", "val_mse", "seconds", "images_per_s"} <= h.keys()
        assert h["images_per_s"] > 0
    assert evaluate(m, (b, s))["loss"] < start
    assert r.parameters == convae.count_parameters(m)
    assert r.best_path is None and r.last_path is None


def test_resume_reaches_same_weights(pairs, tmp_path):
    b, s = pairs(20)
    vb, vs = pairs(6, seed=1)
    meta = {"sigma": 3.0}
    straight = train(
        tiny_model(),
        (b, s),
        (vb, vs),
        cfg(epochs=2, keep_best=False),
        checkpoint_dir=tmp_path / "a",
        meta=meta,
        progress=False,
    )
    first = train(
        tiny_model(),
        (b, s),
        (vb, vs),
        cfg(epochs=1, keep_best=False),
        checkpoint_dir=tmp_path / "b",
        meta=meta,
        progress=False,
    )
    assert first.epochs_completed == 1
    # drift the global RNG: resume must restore it
    torch.rand(100)
    m = tiny_model(seed=123)  # different init: everything comes from the checkpoint
    resumed = train(
        m,
        (b, s),
        (vb, vs),
        cfg(epochs=2, keep_best=False),
        checkpoint_dir=tmp_path / "b",
        resume_from=tmp_path / "b" / "last.pt",
        meta=meta,
        progress=False,
    )
    assert resumed.epochs_run == 1 and resumed.epochs_completed == 2
    a = read_checkpoint(tmp_path / "a" / "last.pt")
    c = read_checkpoint(tmp_path / "b" / "last.pt")
    assert states_equal(a["model_state"], c["model_state"])
    assert states_equal(a["model_state"], {k: v for k, v in m.state_dict().items()})
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in c["history"]]
    assert [h["val_loss"] for h in straight.history] == [h["val_loss"] for h in resumed.history]
    sa, sc = a["optimizer_state"]["state"], c["optimizer_state"]["state"]
    assert all(torch.equal(sa[k]["exp_avg"], sc[k]["exp_avg"]) for k in sa)
    assert torch.equal(a["rng"]["shuffle"], c["rng"]["shuffle"])


def test_max_minutes_stops_at_epoch_boundary_and_resumes(pairs, tmp_path):
    b, s = pairs(8)
    r = train(
        tiny_model(),
        (b, s),
        None,
        cfg(epochs=5, max_minutes=1e-6),
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert r.stopped_reason == "max_minutes" and r.epochs_run == 1
    assert read_checkpoint(r.last_path)["epoch"] == 1
    r2 = train(
        tiny_model(),
        (b, s),
        None,
        cfg(epochs=2),
        checkpoint_dir=tmp_path,
        resume_from=r.last_path,
        progress=False,
    )
    assert r2.epochs_completed == 2 and r2.epochs_run == 1


def test_callback_can_stop(pairs):
    b, s = pairs(8)
    seen = []
    r = train(
        tiny_model(),
        (b, s),
        None,
        cfg(epochs=4),
        callback=lambda rec: seen.append(rec["epoch"]) or rec["epoch"] == 2,
        progress=False,
    )
    assert seen == [1, 2] and r.stopped_reason == "callback"


def test_best_checkpoint_and_keep_best(pairs, tmp_path):
    b, s = pairs(16)
    vb, vs = pairs(4, seed=5)
    m = tiny_model()
    r = train(m, (b, s), (vb, vs), cfg(epochs=4, lr=5e-3), checkpoint_dir=tmp_path, progress=False)
    vals = [h["val_loss"] for h in r.history]
    best_epoch = vals.index(min(vals)) + 1
    assert r.best_epoch == best_epoch and r.best_val_loss == min(vals)
    best = read_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == best_epoch and "optimizer_state" not in best
    assert states_equal(best["model_state"], m.state_dict())  # keep_best restored it
    assert read_checkpoint(tmp_path / "last.pt")["epoch"] == 4
    assert not list(tmp_path.glob("*.tmp"))


class PairDataset(Dataset):
    def __init__(self, b, s):
        self.b, self.s = b, s

    def __len__(self):
        return len(self.b)

    def __getitem__(self, i):
        return self.b[i], self.s[i]


class PairSetLike:
    def __init__(self, b, s):
        self.blurred, self.sharp = b, s


def test_dataset_and_pairset_inputs_match_tensors(pairs):
    b, s = pairs(12, c=1)
    ref = tiny_model(1)
    train(ref, (b, s), (b[:3], s[:3]), cfg(), progress=False)
    for data, val in (
        (PairDataset(b, s), PairDataset(b[:3], s[:3])),
        (PairSetLike(b, s), PairSetLike(b[:3], s[:3])),
    ):
        m = tiny_model(1)
        train(m, data, val, cfg(), progress=False)
        assert states_equal(m.state_dict(), ref.state_dict())


def test_bad_data_is_refused(pairs):
    b, s = pairs(4)
    m = tiny_model()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train(m, (b * 2, s), None, cfg(), progress=False)
    with pytest.raises(ValueError, match="must be equal"):
        train(m, (b, s[:, :, :16]), None, cfg(), progress=False)
    with pytest.raises(ValueError, match="expects 3"):
        train(m, pairs(4, c=1), None, cfg(), progress=False)
    with pytest.raises(ValueError, match="float tensor"):
        train(m, ((b * 255).to(torch.uint8), s), None, cfg(), progress=False)
    with pytest.raises(ValueError, match="no images"):
        train(m, (b[:0], s[:0]), None, cfg(), progress=False)
    with pytest.raises(TypeError, match="train_data must be"):
        train(m, b, None, cfg(), progress=False)
    with pytest.raises(ValueError, match="TrainConfig.batch_size"):
        train(m, (b, s), None, cfg(batch_size=0), progress=False)
    with pytest.raises(ValueError, match="TrainConfig.lr"):
        train(m, (b, s), None, cfg(lr=-1.0), progress=False)


def test_progress_false_is_silent_and_amp_on_cpu_is_ignored(pairs, capsys):
    b, s = pairs(8)
    train(tiny_model(), (b, s), (b, s), cfg(epochs=1, amp=True), progress=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_progress_true_prints_epoch_lines(pairs, capsys):
    b, s = pairs(8)
    train(tiny_model(), (b, s), (b, s), cfg(epochs=1), progress=True)
    out = capsys.readouterr()
    assert "epoch 1/1" in out.out + out.err and "img/s" in out.out + out.err


def test_resume_with_changed_config_warns(pairs, tmp_path):
    b, s = pairs(8)
    train(tiny_model(), (b, s), None, cfg(epochs=1), checkpoint_dir=tmp_path, progress=False)
    with pytest.warns(UserWarning, match="batch_size: 8 -> 4"):
        train(
            tiny_model(),
            (b, s),
            None,
            cfg(epochs=2, batch_size=4),
            resume_from=tmp_path / "last.pt",
            progress=False,
        )


def test_plot_history(tmp_path, pairs):
    b, s = pairs(8)
    r = train(tiny_model(), (b, s), (b, s), cfg(epochs=2), progress=False)
    p = plot_history(r.history, tmp_path / "curve.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_round_trip():
    c = TrainConfig(epochs=3, lr=2e-3)
    assert TrainConfig.from_dict({**c.to_dict(), "unknown": 1}) == c
    assert dataclasses.asdict(c)["batch_size"] == 64


def test_cosine_factor():
    from convae.train import cosine_factor

    assert cosine_factor(0.0) == 1.0 and cosine_factor(-1.0) == 1.0
    assert cosine_factor(0.5) == pytest.approx(0.5)
    assert cosine_factor(1.0) == pytest.approx(0.0) and cosine_factor(3.0) == pytest.approx(0.0)


def test_cosine_schedule_decays_lr_per_step(pairs, capsys):
    from convae.train import cosine_factor

    b, s = pairs(16)  # batch 8: 2 steps per epoch, 3 epochs = 6 steps
    r = train(
        tiny_model(), (b, s), None, cfg(epochs=3, lr=1e-2, lr_schedule="cosine"), progress=False
    )
    # history records the lr of each epoch's last step: step 2e+1 of 6
    want = [1e-2 * cosine_factor((2 * e + 1) / 6) for e in range(3)]
    assert [h["lr"] for h in r.history] == pytest.approx(want)
    assert capsys.readouterr().err == ""  # progress=False stays silent with a schedule
    const = train(tiny_model(), (b, s), None, cfg(epochs=3, lr=1e-2), progress=False)
    assert [h["lr"] for h in const.history] == [1e-2] * 3


def test_cosine_schedule_follows_the_time_budget(pairs):
    from convae.train import cosine_factor

    b, s = pairs(16)
    # a tiny budget is used up after the first epoch: the next epoch's lr is near 0,
    # below what the epoch count alone gives, and training stops there
    r = train(
        tiny_model(),
        (b, s),
        None,
        cfg(epochs=50, lr=1e-2, lr_schedule="cosine", max_minutes=1e-6),
        progress=False,
    )
    assert r.stopped_reason == "max_minutes" and r.epochs_run == 1
    assert r.history[0]["lr"] == pytest.approx(1e-2 * cosine_factor(1 / 100))
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear").validate()


def test_cosine_schedule_time_part_outpaces_the_epoch_count(pairs, monkeypatch):
    from convae.train import cosine_factor

    ct = __import__("sys").modules["convae.train"]  # the module (convae.train is also a function)
    clock = iter(range(0, 10**6, 2))  # a slow fake clock: 2 s per reading
    monkeypatch.setattr(ct.time, "perf_counter", lambda: float(next(clock)))
    b, s = pairs(16)
    r = train(
        tiny_model(),
        (b, s),
        None,
        cfg(epochs=50, lr=1e-2, lr_schedule="cosine", max_minutes=1.0),
        progress=False,
    )
    by_epochs = [1e-2 * cosine_factor((e + 0.5) / 50) for e in range(len(r.history))]
    assert r.stopped_reason == "max_minutes" and 2 < r.epochs_run < 50
    assert r.history[0]["lr"] == pytest.approx(by_epochs[0])  # no time estimate yet
    assert all(h["lr"] < want for h, want in zip(r.history[1:], by_epochs[1:]))
    assert r.history[-1]["lr"] < 0.2 * by_epochs[-1]


def test_cosine_schedule_resumes_exactly(pairs, tmp_path):
    b, s = pairs(16)
    c = cfg(epochs=3, lr=1e-2, lr_schedule="cosine", keep_best=False)
    straight = tiny_model()
    train(straight, (b, s), None, c, progress=False)
    # stopped after epoch 1 of 3 (a crash, Ctrl-C): the decay continues where it was
    train(
        tiny_model(),
        (b, s),
        None,
        c,
        checkpoint_dir=tmp_path,
        progress=False,
        callback=lambda rec: True,
    )
    resumed = tiny_model(seed=9)
    r = train(
        resumed,
        (b, s),
        None,
        c,
        checkpoint_dir=tmp_path,
        progress=False,
        resume_from=tmp_path / "last.pt",
    )
    assert r.epochs_run == 2 and states_equal(straight.state_dict(), resumed.state_dict())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_keeps_tensor_pairs_on_the_device(pairs):
    from convae.data import PairData

    b, s = pairs(8)
    d = PairData((b, s), "train_data")
    assert d.keep_on(torch.device("cuda")) and d.blurred.is_cuda and d.sharp.is_cuda
    assert not b.is_cuda  # the caller's tensors stay where they were
    ((gb, gs),) = d.batches([torch.tensor([3, 1])], torch.device("cuda"))
    assert torch.equal(gb.cpu(), b[[3, 1]]) and torch.equal(gs.cpu(), s[[3, 1]])
    assert not PairData((b, s), "x").keep_on(torch.device("cpu"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_training_and_resume(pairs, tmp_path, amp):
    b, s = pairs(16)
    c = cfg(epochs=2, device="cuda", amp=amp, keep_best=False)
    m = tiny_model()
    r = train(m, (b, s), (b[:4], s[:4]), c, checkpoint_dir=tmp_path / "a", progress=False)
    assert next(m.parameters()).is_cuda and r.epochs_completed == 2
    ck = read_checkpoint(tmp_path / "a" / "last.pt")
    assert ck["rng"]["cuda"] is not None
    if amp:
        assert "scaler_state" in ck
    train(
        tiny_model(),
        (b, s),
        (b[:4], s[:4]),
        dataclasses.replace(c, epochs=1),
        checkpoint_dir=tmp_path / "b",
        progress=False,
    )
    m2 = tiny_model()
    train(
        m2,
        (b, s),
        (b[:4], s[:4]),
        c,
        checkpoint_dir=tmp_path / "b",
        resume_from=tmp_path / "b" / "last.pt",
        progress=False,
    )
    a, bb = m.state_dict(), m2.state_dict()
    for k in a:  # cuDNN may pick non-deterministic kernels: close, not bitwise
        torch.testing.assert_close(a[k], bb[k], atol=1e-4, rtol=1e-3)


@pytest.mark.slow
@pytest.mark.skipif(
    not __import__("os").environ.get("CONVAE_SLOW_TESTS"),
    reason="torch.compile takes about a minute on CPU; set CONVAE_SLOW_TESTS=1",
)
def test_compile_matches_eager(pairs):
    b, s = pairs(8)
    eager, comp = tiny_model(), tiny_model()
    train(eager, (b, s), None, cfg(epochs=1, batch_size=4), progress=False)
    train(comp, (b, s), None, cfg(epochs=1, batch_size=4, compile=True), progress=False)
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(comp.state_dict()[k], v, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("ssim_weight", [0.0, 0.1])
def test_history_records_the_epochs_training_mse(pairs, ssim_weight):
    """``train_mse`` is the epoch's mean batch MSE: the loss itself when the loss is MSE alone,
    below the loss when the SSIM term is added (1 - SSIM > 0 on these images)."""
    b, s = pairs(12)
    r = train(tiny_model(), (b, s), None, cfg(epochs=2, ssim_weight=ssim_weight), progress=False)
    for h in r.history:
        assert h["train_mse"] > 0
        if ssim_weight == 0:
            assert h["train_mse"] == pytest.approx(h["train_loss"], rel=1e-12)
        else:
            assert h["train_mse"] < h["train_loss"]
