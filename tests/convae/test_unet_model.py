"""convae-unet (issue 7): shapes, size, residual, training step, checkpoints, registry."""

import pytest
import torch

import convae
from convae import CheckpointError, TrainConfig, train
from convae.checkpoint import load_model, read_checkpoint, save_checkpoint
from convae.unet_model import ConvAEUNet, NAFBlock

TINY = {"width": 8, "depth": 2, "middle_blocks": 1}


def tiny(c: int = 3, seed: int = 0, **kw) -> ConvAEUNet:
    torch.manual_seed(seed)
    return ConvAEUNet(in_channels=c, **{**TINY, **kw})


def randomize(m: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Give every parameter (also the zero-initialised gates and last layer) random values,
    so that every path of the network is active."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return m


@pytest.mark.parametrize("c", [3, 1])
@pytest.mark.parametrize("hw", [(37, 31), (33, 45), (32, 32), (5, 7)])
def test_output_shape_any_size(c, hw):
    m = randomize(tiny(c)).eval()
    x = torch.rand(2, c, *hw)
    y = m(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_full_resolution_and_deeper_variants_keep_shapes():
    for kw in ({"shuffle": 1}, {"depth": 3, "enc_blocks": [1, 0, 2], "dec_blocks": 0}):
        m = randomize(tiny(**kw)).eval()
        assert m(torch.rand(1, 3, 37, 31)).shape == (1, 3, 37, 31)
    assert tiny(depth=3).multiple == 16 and tiny(shuffle=1).multiple == 4


def test_default_is_under_two_million_parameters():
    m = ConvAEUNet()
    n = convae.count_parameters(m)
    assert n == 410_204 and n < 2_000_000
    assert convae.count_parameters(ConvAEUNet(width=32)) == 1_601_708
    assert convae.count_parameters(ConvAEUNet(in_channels=1)) < n
    assert m.init_kwargs == {
        "in_channels": 3,
        "width": 16,
        "depth": 3,
        "enc_blocks": [1, 1, 1],
        "middle_blocks": 2,
        "dec_blocks": [1, 1, 1],
        "shuffle": 2,
    }
    assert (
        0 < convae.count_macs(m, (3, 128, 128)) < convae.count_macs(convae.ConvAE(), (3, 128, 128))
    )


def test_residual_zeroed_last_layer_returns_input():
    x = torch.rand(2, 3, 37, 31)
    assert torch.equal(tiny()(x), x)  # fresh model: last layer starts at 0
    m = randomize(tiny())
    assert not torch.allclose(m(x), x)  # random weights: a real correction
    with torch.no_grad():
        m.ending.weight.zero_()
        m.ending.bias.zero_()
    assert torch.equal(m(x), x)


def test_naf_block_starts_as_identity():
    x = torch.randn(2, 8, 9, 7)
    assert torch.equal(NAFBlock(8)(x), x)


def test_one_training_step_lowers_the_loss(pairs):
    b, s = pairs(4)
    for m in (tiny(), randomize(tiny())):
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        before = convae.mse_ssim_loss(m(b), s)
        opt.zero_grad()
        before.backward()
        opt.step()
        assert convae.mse_ssim_loss(m(b), s).item() < before.item()


def test_bad_arguments():
    with pytest.raises(ValueError, match="in_channels"):
        ConvAEUNet(in_channels=2)
    with pytest.raises(ValueError, match="width must be even"):
        ConvAEUNet(width=7)
    with pytest.raises(ValueError, match="depth must be an int >= 0"):
        ConvAEUNet(depth=-1)
    with pytest.raises(ValueError, match="enc_blocks must be an int >= 0 or 3 such ints"):
        ConvAEUNet(enc_blocks=[1, 1])
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\)"):
        tiny()(torch.rand(1, 1, 32, 32))


def test_registered_and_built_by_name():
    assert "convae-unet" in convae.available_architectures()
    m = convae.build_model("convae-unet", in_channels=1, **TINY)
    assert isinstance(m, ConvAEUNet)
    name, kw = convae.architecture_of(m)
    assert name == "convae-unet" and kw["in_channels"] == 1 and kw["width"] == 8


def test_checkpoint_round_trip_through_shared_code(pairs, tmp_path):
    b, s = pairs(8)
    m = tiny()
    r = train(
        m,
        (b, s),
        (b[:2], s[:2]),
        TrainConfig(epochs=2, batch_size=4),
        checkpoint_dir=tmp_path,
        meta={"sigma": 3.0},
        progress=False,
    )
    assert r.epochs_completed == 2 and (tmp_path / "best.pt").is_file()
    ck = read_checkpoint(tmp_path / "last.pt")
    assert ck["architecture"] == "convae-unet" and ck["model_kwargs"] == m.init_kwargs
    m2 = load_model(tmp_path / "last.pt", expect_architecture="convae-unet")
    assert isinstance(m2, ConvAEUNet)
    x = torch.rand(1, 3, 37, 31)
    m_last = tiny()
    m_last.load_state_dict(ck["model_state"])
    assert torch.equal(m_last.eval()(x), m2(x))
    # resume continues with the shared loop and refuses a differently shaped model
    r3 = train(
        tiny(),
        (b, s),
        (b[:2], s[:2]),
        TrainConfig(epochs=3, batch_size=4),
        checkpoint_dir=tmp_path,
        resume_from=tmp_path / "last.pt",
        progress=False,
    )
    assert r3.epochs_completed == 3 and r3.epochs_run == 1
    with pytest.raises(CheckpointError, match="was made for 'convae-unet' with"):
        train(
            tiny(width=4),
            (b, s),
            None,
            TrainConfig(epochs=4, batch_size=4),
            resume_from=tmp_path / "last.pt",
            progress=False,
        )


def test_refuses_a_convae_checkpoint(pairs, tmp_path):
    torch.manual_seed(0)
    p = save_checkpoint(tmp_path / "ae.pt", convae.ConvAE(base_channels=4), epoch=1)
    with pytest.raises(CheckpointError, match="'convae', not 'convae-unet'"):
        load_model(p, expect_architecture="convae-unet")
    b, s = pairs(4)
    with pytest.raises(CheckpointError, match="architecture 'convae', not 'convae-unet'"):
        train(
            tiny(), (b, s), None, TrainConfig(epochs=2, batch_size=4), resume_from=p, progress=False
        )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_and_training(pairs):
    m = randomize(tiny())
    x = torch.rand(2, 3, 37, 31)
    ref = m.eval()(x)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # TF32 differs by ~1e-3
        got = m.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    b, s = pairs(8)
    r = train(
        tiny(),
        (b, s),
        (b[:2], s[:2]),
        TrainConfig(epochs=2, batch_size=4, device="cuda", amp=True),
        progress=False,
    )
    assert r.epochs_completed == 2 and all(h["train_loss"] > 0 for h in r.history)
