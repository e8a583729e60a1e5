import pytest
import torch
from torch import nn

import convae
from convae.ref_model import ConvAE, pad_to_multiple


def expected_params(c: int, base: int = 64) -> int:
    chans = [c] + [base * 2**i for i in range(5)]
    enc = sum(ci * co * 9 + co for ci, co in zip(chans[:-1], chans[1:]))
    rev = chans[::-1]
    dec = sum(ci * co * 9 + co for ci, co in zip(rev[:-1], rev[1:]))
    return enc + dec


def test_rgb_param_count_is_the_reference():
    m = ConvAE(in_channels=3)
    assert expected_params(3) == 12_540_163
    assert convae.count_parameters(m) == 12_540_163


def test_layers_follow_the_reference():
    m = ConvAE()
    convs = [l for l in m.encoder if isinstance(l, nn.Conv2d)]
    assert [(l.in_channels, l.out_channels) for l in convs] == [
        (3, 64),
        (64, 128),
        (128, 256),
        (256, 512),
        (512, 1024),
    ]
    assert all(
        l.kernel_size == (3, 3) and l.stride == (2, 2) and l.padding == (1, 1) for l in convs
    )
    tconvs = [l for l in m.decoder if isinstance(l, nn.ConvTranspose2d)]
    assert [(l.in_channels, l.out_channels) for l in tconvs] == [
        (1024, 512),
        (512, 256),
        (256, 128),
        (128, 64),
        (64, 3),
    ]
    assert all(l.output_padding == (1, 1) for l in tconvs)
    assert isinstance(m.decoder[-1], nn.Sigmoid)
    assert sum(isinstance(l, nn.ReLU) for l in m.decoder) == 4


@pytest.mark.parametrize("c", [3, 1])
@pytest.mark.parametrize("hw", [(37, 31), (33, 45), (32, 32), (5, 7)])
def test_output_shape_any_size(c, hw):
    m = ConvAE(in_channels=c, base_channels=4)
    x = torch.rand(2, c, *hw)
    y = m(x)
    assert y.shape == x.shape
    assert y.dtype == torch.float32
    assert ((y > 0) & (y < 1)).all()


def test_faithful_model_odd_size_gray():
    m = ConvAE(in_channels=1)
    assert m(torch.rand(1, 1, 37, 31)).shape == (1, 1, 37, 31)
    assert convae.count_parameters(m) == expected_params(1)


def test_padding_multiple_and_no_pad_at_160():
    x = torch.rand(1, 3, 160, 160)
    xp, h, w = pad_to_multiple(x, 32)
    assert xp is x and (h, w) == (160, 160)
    xp, h, w = pad_to_multiple(torch.rand(1, 3, 37, 31), 32)
    assert xp.shape[-2:] == (64, 32) and (h, w) == (37, 31)


def test_bad_arguments():
    with pytest.raises(ValueError, match="in_channels"):
        ConvAE(in_channels=2)
    with pytest.raises(ValueError, match="base_channels"):
        ConvAE(base_channels=0)
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\)"):
        ConvAE(base_channels=4)(torch.rand(1, 1, 32, 32))


def test_registry_and_architecture_of():
    assert "convae" in convae.available_architectures()
    m = convae.build_model("convae", in_channels=1, base_channels=8)
    assert isinstance(m, ConvAE)
    assert convae.architecture_of(m) == ("convae", {"in_channels": 1, "base_channels": 8})
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        convae.build_model("nope")
    with pytest.raises(TypeError, match="not a registered"):
        convae.architecture_of(nn.Linear(2, 2))


def test_count_macs_matches_formula():
    base, s = 8, 32
    m = ConvAE(base_channels=base)
    chans = [3] + [base * 2**i for i in range(5)]
    enc = sum((s // 2 ** (i + 1)) ** 2 * chans[i + 1] * chans[i] * 9 for i in range(5))
    rev = chans[::-1]
    dec = sum((s // 32 * 2**i) ** 2 * rev[i] * rev[i + 1] * 9 for i in range(5))
    assert convae.count_macs(m, (3, s, s)) == enc + dec


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_matches_cpu():
    torch.manual_seed(0)
    m = ConvAE(base_channels=8)
    x = torch.rand(2, 3, 37, 31)
    ref = m(x)
    out = m.cuda()(x.cuda()).cpu()
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_convae_never_imports_benchmarks_or_dnmf():
    import subprocess
    import sys

    code = (
        "import sys, convae; convae.available_architectures(); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('benchmarks', 'dnmf')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
