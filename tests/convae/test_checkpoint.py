import random

import numpy as np
import pytest
import torch

import convae
from convae import CheckpointError, ConvAE, MetaMismatchWarning, TrainConfig, train
from convae.checkpoint import (
    capture_rng_state,
    check_compatible,
    load_model,
    read_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def tiny(c: int = 3, base: int = 4) -> ConvAE:
    torch.manual_seed(0)
    return ConvAE(in_channels=c, base_channels=base)


@pytest.fixture
def trained(pairs, tmp_path):
    b, s = pairs(8)
    train(
        tiny(),
        (b, s),
        (b[:2], s[:2]),
        TrainConfig(epochs=1, batch_size=4),
        checkpoint_dir=tmp_path,
        meta={"kind": "gaussian", "sigma": 3.0, "size": [25, 25]},
        progress=False,
    )
    return tmp_path / "last.pt"


def test_round_trip(tmp_path):
    m = tiny()
    p = save_checkpoint(
        tmp_path / "m.pt",
        m,
        epoch=3,
        history=[{"epoch": 1, "x": 1.0}],
        meta={"sigma": 3.0, "shape": (25, 25)},
        config={"lr": 1e-3},
    )
    raw = torch.load(p, weights_only=True)  # plain, safe-loadable content
    assert raw["architecture"] == "convae" and raw["meta"]["shape"] == [25, 25]
    m2 = load_model(p)
    assert not m2.training
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])
    x = torch.rand(1, 3, 37, 31)
    assert torch.equal(m.eval()(x), m2(x))
    assert m2.checkpoint["epoch"] == 3 and m2.checkpoint["history"][0]["x"] == 1.0
    assert not list(tmp_path.glob("*.tmp"))


def test_training_checkpoint_contents(trained):
    ck = read_checkpoint(trained)
    assert {
        "model_state",
        "optimizer_state",
        "config",
        "architecture",
        "model_kwargs",
        "epoch",
        "rng",
        "best_val_loss",
        "history",
        "meta",
    } <= ck.keys()
    assert ck["config"]["batch_size"] == 4 and ck["epoch"] == 1
    assert {"torch", "numpy", "python", "shuffle"} <= ck["rng"].keys()


def test_atomic_save_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = save_checkpoint(tmp_path / "m.pt", tiny(), epoch=1)
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(p, tiny(), epoch=2)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.pt"]


def test_refuses_other_channel_count(trained, pairs):
    b, s = pairs(4, c=1)
    with pytest.raises(CheckpointError, match=r"3 channels \(RGB\).*1 channel \(gray\)"):
        train(
            tiny(c=1),
            (b, s),
            None,
            TrainConfig(epochs=2, batch_size=4),
            resume_from=trained,
            progress=False,
        )
    with pytest.raises(CheckpointError, match="1 channel"):
        load_model(trained, expect_in_channels=1)


def test_refuses_other_architecture(trained):
    ck = read_checkpoint(trained)
    with pytest.raises(CheckpointError, match="made for architecture 'convae', not 'unet'"):
        check_compatible(ck, "unet", {"in_channels": 3}, trained)
    with pytest.raises(CheckpointError, match="not 'unet'"):
        load_model(trained, expect_architecture="unet")
    with pytest.raises(CheckpointError, match="base_channels"):
        check_compatible(ck, "convae", {"in_channels": 3, "base_channels": 64}, trained)


def test_corrupt_or_truncated_file(trained, tmp_path):
    data = trained.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt.*truncated, corrupt"):
        read_checkpoint(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_model(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a convae checkpoint"):
        read_checkpoint(other)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        read_checkpoint(tmp_path / "missing.pt")


def test_blur_meta_mismatch_warns(trained, pairs):
    with pytest.warns(MetaMismatchWarning, match=r"sigma: checkpoint 3\.0 vs expected 2\.0"):
        load_model(trained, expect_meta={"kind": "gaussian", "sigma": 2.0, "size": [25, 25]})
    b, s = pairs(8)
    with pytest.warns(MetaMismatchWarning, match="sigma"):
        train(
            tiny(),
            (b, s),
            None,
            TrainConfig(epochs=2, batch_size=4),
            resume_from=trained,
            meta={"sigma": 1.0},
            progress=False,
        )


def test_same_meta_does_not_warn(trained, recwarn):
    load_model(trained, expect_meta={"sigma": 3.0, "size": (25, 25)})  # tuple == list
    assert not [w for w in recwarn if issubclass(w.category, MetaMismatchWarning)]


def test_weights_only_file_cannot_be_resumed(trained, pairs):
    b, s = pairs(8)
    best = trained.with_name("best.pt")
    with pytest.raises(CheckpointError, match="cannot be resumed"):
        train(
            tiny(),
            (b, s),
            None,
            TrainConfig(epochs=2, batch_size=4),
            resume_from=best,
            progress=False,
        )


def test_meta_must_be_json(tmp_path):
    with pytest.raises(TypeError, match="JSON-able"):
        save_checkpoint(tmp_path / "m.pt", tiny(), meta={"k": torch.zeros(1)})


def test_rng_state_round_trip(tmp_path):
    g = torch.Generator().manual_seed(7)
    state = capture_rng_state(g)
    save_checkpoint(tmp_path / "r.pt", tiny(), rng=state)
    want = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=g))
    restore_rng_state(read_checkpoint(tmp_path / "r.pt")["rng"], g)
    got = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=g))
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1])
    assert want[2] == got[2] and torch.equal(want[3], got[3])


def test_load_model_rebuilds_any_registered_architecture(tmp_path):
    p = save_checkpoint(tmp_path / "g.pt", ConvAE(in_channels=1, base_channels=8))
    m = convae.load_model(p)
    assert convae.architecture_of(m) == ("convae", {"in_channels": 1, "base_channels": 8})


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_load_model(tmp_path):
    p = save_checkpoint(tmp_path / "m.pt", tiny())
    m = load_model(p, map_location="cuda")
    assert next(m.parameters()).is_cuda
    x = torch.rand(1, 3, 33, 45)
    torch.testing.assert_close(m(x.cuda()).cpu(), tiny().eval()(x), atol=1e-4, rtol=1e-4)
