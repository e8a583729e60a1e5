"""Asymmetric (camera-shake) kernels: the shipped Levin et al. kernels, the operator's
orientation and adjoint, and every non-blind method restoring better than the blurred input."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from benchmarks.blur import KERNEL_NAMES, BlurOperator, degrade, levin_kernel, named_kernel
from benchmarks.classical import _psf_transfer, _wiener_exact, wiener_padded
from benchmarks.faces import load_embedded
from benchmarks.methods import MethodContext, get_method
from benchmarks.metrics import psnr
from benchmarks.pairs import PairSet
from benchmarks.presets import get_preset

LEVIN_SIZES = [19, 17, 15, 27, 13, 21, 23, 23]


def test_the_eight_levin_kernels_ship_normalised_and_asymmetric():
    assert KERNEL_NAMES == tuple(f"levin09:{i}" for i in range(1, 9))
    for i, size in enumerate(LEVIN_SIZES, start=1):
        k = levin_kernel(i)
        assert k.dtype == torch.float64 and k.shape == (size, size)
        assert abs(float(k.sum()) - 1.0) < 1e-12 and float(k.min()) >= 0
        assert float((k - k.flip(0, 1)).abs().max()) > 0.05  # not symmetric: a test of it all
        assert torch.equal(named_kernel(f"levin09:{i}"), k)
    op = BlurOperator.named(" Levin09:4 ")
    assert op.kernel.shape == (27, 27) and op.meta()["kind"] == "levin09:4"


def _asymmetric(kind: str) -> torch.Tensor:
    if kind == "levin-odd":
        return levin_kernel(5)  # 13 x 13
    g = torch.Generator().manual_seed(4)  # an even-sized, odd-by-even asymmetric streak
    k = torch.zeros(6, 9, dtype=torch.float64)
    k[1, 0:4], k[2, 3:7], k[4, 6:9] = 1.0, 0.5, 0.25
    return k + 0.01 * torch.rand(6, 9, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("kind", ["levin-odd", "even"])
@pytest.mark.parametrize("shape", [(37, 31), (32, 33)])
def test_asymmetric_operator_is_a_convolution_with_its_exact_adjoint(kind, shape):
    """A is scipy's convolution (the kernel flipped, not a correlation) with the mirror
    boundary, and A_adjoint is its adjoint to float precision."""
    op = BlurOperator(_asymmetric(kind))
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, *shape, dtype=torch.float64, generator=g)
    y = torch.rand(2, 3, *shape, dtype=torch.float64, generator=g)
    ref = ndi.convolve(x[1, 2].numpy(), op.kernel.numpy(), mode="mirror")
    assert np.abs(op.A(x)[1, 2].numpy() - ref).max() < 1e-12
    lhs, rhs = (op.A(x) * y).sum(), (x * op.A_adjoint(y)).sum()
    assert torch.isclose(lhs, rhs, rtol=1e-12)
    # the adjoint is the correlation (the flipped kernel), not the blur again
    assert float((op.A_adjoint(y) - op.A(y)).abs().max()) > 1e-3


@pytest.mark.parametrize("kind", ["levin-odd", "even"])
def test_wiener_transfer_function_is_centred_as_the_operator(kind):
    """The FFT filter's PSF sits where the operator centres the kernel (index k // 2, also for
    even sizes) and is not flipped: away from the border the circular blur equals A."""
    k = _asymmetric(kind)
    op = BlurOperator(k)
    x = torch.rand(1, 1, 40, 44, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    H = _psf_transfer(op.kernel, 40, 44, x.device, x.dtype)
    circ = torch.fft.irfft2(torch.fft.rfft2(x) * H, s=(40, 44))
    m = max(k.shape)
    assert float((circ - op.A(x))[..., m:-m, m:-m].abs().max()) < 1e-12


@pytest.mark.parametrize("kind", ["levin-odd", "even"])
def test_wiener_with_an_asymmetric_kernel_solves_the_operators_equations(kind):
    """Wiener–Hunt for a kernel that is not symmetric: (AᵀA + b LᵀL) x = Aᵀy with the
    reflect-boundary operator itself, L the 4-neighbour Laplacian (reflect boundary)."""
    k = _asymmetric(kind)
    op, lap = BlurOperator(k), BlurOperator(torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 1, 0]]))
    g = torch.Generator().manual_seed(7)
    y = op.A(torch.rand(2, 3, 37, 31, dtype=torch.float64, generator=g))
    bal = [1e-2, 1e-3]
    starts = wiener_padded(y, op.kernel, bal, cg_iter=0)  # the padded FFT solutions
    outs = _wiener_exact(y, op.kernel, bal, starts, cg_iter=3000, cg_tol=1e-11)
    for b, x in zip(bal, outs, strict=True):
        lx = 4 * (x - lap.A(x))
        resid = op.A_adjoint(op.A(x) - y) + b * 4 * (lx - lap.A_adjoint(lx))
        assert float(resid.abs().max()) < 1e-9
    assert float((outs[1] - starts[1]).abs().max()) > 0.02  # the padded filter is not it


@pytest.fixture(scope="module")
def shaken():
    """Photographs at 24 px blurred by Levin et al.'s 13 px kernel 5 (8 bits, no noise)."""
    x = load_embedded(size=24, max_images=36, seed=0).images[:18]
    op = BlurOperator.named("levin09:5")
    y = degrade(x, op)
    pairs = [PairSet(y[a:b], x[a:b]) for a, b in ((0, 12), (12, 15), (15, 18))]
    return (*pairs, op)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # smoke budget
@pytest.mark.parametrize("name", ["wiener", "richardson-lucy", "epll", "dnmf-prior"])
def test_non_blind_methods_restore_a_camera_shake_blur(shaken, name, tmp_path):
    """Every non-blind method, tuned on validation, gains over the blurred input with an
    asymmetric kernel (before the exact solves: Wiener +3.7 dB, EPLL +1.6, dnmf-prior +3.8;
    now +11.7, +14.2 and +7.8; Richardson-Lucy, on the operator itself, +6.0 both times)."""
    train, val, test, op = shaken
    ctx = MethodContext(preset=get_preset("smoke"), work_dir=tmp_path, quiet=True,
                        blur_meta=op.meta())  # fmt: skip
    m = get_method(name)(ctx)
    m.fit(train, val, op)
    out = m.restore(test.blurred, op)
    gain = psnr(out, test.sharp).mean() - psnr(test.blurred, test.sharp).mean()
    assert float(gain) > 5.5
