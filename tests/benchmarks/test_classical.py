import numpy as np
import pytest
import torch
from skimage.restoration import wiener as sk_wiener

from benchmarks.blur import BlurOperator, degrade
from benchmarks.classical import richardson_lucy, wiener_padded
from benchmarks.faces import load_embedded
from benchmarks.methods import MethodContext, get_method, registry
from benchmarks.metrics import psnr, ssim
from benchmarks.pairs import PairSet
from benchmarks.presets import get_preset


def test_wiener_matches_skimage_without_padding():
    op = BlurOperator.gaussian(9, 1.5)
    y = torch.rand(1, 1, 40, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = wiener_padded(y, op.kernel, 0.05, pad=0)[0, 0].numpy()
    ref = np.clip(sk_wiener(y[0, 0].numpy(), op.kernel.numpy(), 0.05), 0, 1)
    assert np.abs(ours - ref).max() < 1e-10


@pytest.fixture(scope="module")
def pairs():
    x = load_embedded(size=48, max_images=36, seed=0).images
    op = BlurOperator.gaussian(25, 3.0)
    y = degrade(x, op)
    return PairSet(y[:18], x[:18]), PairSet(y[18:], x[18:]), op


@pytest.mark.parametrize("name", ["wiener", "richardson-lucy"])
def test_baselines_improve_on_blurred(pairs, name, device):
    val, test, op = pairs
    m = get_method(name)(MethodContext(preset=get_preset("smoke"), device=device, quiet=True))
    m.fit(val, val, op)
    out = m.restore(test.blurred, op)
    assert out.shape == test.sharp.shape and out.device.type == "cpu"
    gain = psnr(out, test.sharp) - psnr(test.blurred, test.sharp)
    assert gain.mean() > 1.0
    assert (ssim(out, test.sharp) - ssim(test.blurred, test.sharp)).mean() > 0.02
    assert m.info()  # the chosen parameter is recorded


def test_padding_removes_wraparound(pairs):
    """Unpadded (circular) Wiener is worse at the borders than the padded one."""
    _, test, op = pairs
    padded = wiener_padded(test.blurred, op.kernel, 1e-3)
    circular = wiener_padded(test.blurred, op.kernel, 1e-3, pad=0)
    assert psnr(padded, test.sharp).mean() > psnr(circular, test.sharp).mean() + 0.5


def test_richardson_lucy_keeps_nonnegative_and_callback():
    op = BlurOperator.gaussian(9, 2.0)
    y = op.A(torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1)))
    seen = []
    x = richardson_lucy(y, op, 5, callback=lambda k, xx: seen.append(k))
    assert seen == [1, 2, 3, 4, 5] and x.min() >= 0


def test_registry_has_foundation_methods():
    assert {"identity", "wiener", "richardson-lucy"} <= set(registry())
    with pytest.raises(ValueError, match="unknown method"):
        get_method("nope")
