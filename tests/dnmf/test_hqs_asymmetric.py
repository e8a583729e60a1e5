"""The HQS x-step with an asymmetric (motion) kernel: the FFT solve on the reflect-extended grid
is exact only for a symmetric impulse response, so any other one is solved by conjugate
gradients on the operator's own normal equations."""

import math

import pytest
import torch
import torch.nn.functional as F

from dnmf.deblur.hqs import (
    _centro_symmetric,
    _SymmetricFFTStep,
    annealing_schedule,
    hqs_deblur,
    solve_data_step,
)


class MotionBlur:
    """Reflect-boundary convolution (edge not repeated) by any kernel, centred as
    scipy.ndimage.convolve (also for even sizes), with its exact adjoint (autograd)."""

    def __init__(self, kernel: torch.Tensor):
        self.k = (kernel / kernel.sum()).flip(0, 1)[None, None]  # conv2d correlates
        kh, kw = kernel.shape
        self.pad = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2)

    def A(self, x):
        xp = F.pad(x, self.pad, mode="reflect")
        return F.conv2d(xp, self.k.to(x).expand(x.shape[1], 1, -1, -1), groups=x.shape[1])

    def A_adjoint(self, y):
        x = torch.zeros_like(y, requires_grad=True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad((self.A(x) * y).sum(), x)
        return g


def streak(size: int = 9) -> torch.Tensor:
    """A bent camera-shake streak: diagonal, then along a row (no symmetry at all)."""
    k = torch.zeros(size, size, dtype=torch.float64)
    for i in range(size // 2 + 1):
        k[i, i] = 1.0 + 0.2 * i
    k[size // 2, size // 2 :] = 0.6
    return k


def gaussian(size: int = 7, sigma: float = 1.2) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return torch.outer(g, g)


def scene(n=2, shape=(37, 31), seed=0):
    g = torch.Generator().manual_seed(seed)
    out = torch.full((n, 3, *shape), 0.3, dtype=torch.float64)
    for i in range(n):
        for _ in range(6):
            y0 = int(torch.randint(0, shape[0] - 9, (1,), generator=g))
            x0 = int(torch.randint(0, shape[1] - 9, (1,), generator=g))
            out[i, :, y0 : y0 + 9, x0 : x0 + 7] = torch.rand(3, 1, 1, generator=g) * 0.7 + 0.2
    return out


def psnr(a, b):
    return float((10 * torch.log10(1 / ((a.clamp(0, 1) - b) ** 2).mean(dim=(1, 2, 3)))).mean())


def _one_stage(op, y, z, mu, **kw):
    """One HQS stage whose denoiser returns its input: the output is the x-step's."""
    sig = math.sqrt(1.0 / mu)
    return hqs_deblur(y, op, lambda x, s: x, [sig], weight=1.0, x0=z, final_data_step=True, **kw)


@pytest.mark.parametrize("kernel", [streak(9), streak(9)[:, 1:], streak(6)[:, :5]])
def test_x_step_with_an_asymmetric_kernel_solves_the_operators_normal_equations(kernel):
    """Odd and even kernel sizes on a 37 x 31 image: the default x-step ("fft") is the
    solution of (AᵀA + μI) x = Aᵀy + μz, as the CG solve from zero finds it."""
    op = MotionBlur(kernel)
    s = scene()
    y, z, mu = op.A(s), torch.full_like(s, 0.5), 1e-2
    rhs = op.A_adjoint(y) + mu * z
    ref, n = solve_data_step(op, rhs, mu, torch.zeros_like(s), max_iter=2000, tol=1e-12)
    assert n < 2000
    res = _one_stage(op, y, z, mu, cg_iter=2000, cg_tol=1e-12)
    assert float((res.x - ref).abs().max()) < 1e-8
    assert len(res.cg_iters) == 1 and res.cg_iters[0] > 0
    # the default budget is tight too: float32 images, as the methods restore them
    res32 = _one_stage(op, y.float(), z.float(), mu)
    assert float((res32.x.double() - ref).abs().max()) < 1e-3


def test_the_fft_solve_alone_answers_another_operator_for_a_motion_kernel():
    """What the fast path would give for an asymmetric kernel: far off the normal equations'
    solution (the reason it is kept for symmetric impulse responses only)."""
    op = MotionBlur(streak(9))
    s = scene()
    y, z, mu = op.A(s), torch.full_like(s, 0.5), 1e-2
    step = _SymmetricFFTStep(op, y)
    assert not step.symmetric
    ref, _ = solve_data_step(op, op.A_adjoint(y) + mu * z, mu, z, max_iter=2000, tol=1e-12)
    assert float((step(z, mu) - ref).abs().max()) > 0.05


def test_symmetric_kernels_keep_the_fast_path():
    op = MotionBlur(gaussian())
    s = scene()
    res = _one_stage(op, op.A(s), torch.full_like(s, 0.5), 1e-2)
    assert res.cg_iters == []  # one FFT pair, no CG: the Gaussian results do not move


@pytest.mark.parametrize(
    "kernel, symmetric",
    [
        (gaussian(7), True),
        (gaussian(5) * torch.tensor([1.0, 2, 3, 2, 1], dtype=torch.float64), True),
        (torch.ones(2, 2, dtype=torch.float64), False),  # centred between pixels
        (torch.ones(3, 4, dtype=torch.float64), False),
        (streak(9), False),
        (streak(9).flip(0, 1) + streak(9), True),
    ],
)
def test_symmetry_is_read_off_the_probed_impulse_response(kernel, symmetric):
    op = MotionBlur(kernel)
    for dtype in (torch.float32, torch.float64):
        y = torch.zeros(1, 1, 21, 24, dtype=dtype)
        assert _SymmetricFFTStep(op, y).symmetric is symmetric
    psf = torch.zeros(9, 9)
    psf[4, 3], psf[4, 5] = 1.0, 1.0 + 1e-6  # float round-off is still symmetric
    assert _centro_symmetric(psf, 4, 4)


def test_hqs_with_a_motion_kernel_beats_the_blurred_input(device):
    op = MotionBlur(streak(9))
    s = scene(shape=(40, 36), seed=3).float().to(device)
    y = (op.A(s) * 255).round() / 255

    def smooth(x, sigma):  # a 3x3 box mix, stronger at higher sigma: a crude denoiser
        a = min(1.0, sigma / 0.05)
        box = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
        return (1 - a) * x + a * box

    res = hqs_deblur(y, op, smooth, annealing_schedule(0.05, 0.005, 5), weight=1e-6)
    assert res.x.device.type == device.type and len(res.cg_iters) == 5
    assert psnr(res.x, s) > psnr(y, s) + 6.0  # +12.8 dB (the FFT solve alone: +1.2)
