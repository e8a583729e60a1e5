"""Half-quadratic splitting: the annealing schedule, both x-steps, the loop with a denoiser."""

import math

import pytest
import torch
import torch.nn.functional as F

from dnmf.deblur.hqs import annealing_schedule, hqs_deblur, solve_data_step


def blocks(n=2, size=33, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    out = torch.full((n, 3, size, size), 0.3)
    for i in range(n):
        for _ in range(5):
            y0, x0 = torch.randint(0, size - 8, (2,), generator=g).tolist()
            out[i, :, y0 : y0 + 8, x0 : x0 + 10] = torch.rand(3, 1, 1, generator=g) * 0.7 + 0.2
    return out.to(device)


def psnr(a, b):
    return float((10 * torch.log10(1 / ((a.clamp(0, 1) - b) ** 2).mean(dim=(1, 2, 3)))).mean())


def test_annealing_schedule():
    s = annealing_schedule(0.08, 0.01, 4)
    assert s[0] == pytest.approx(0.08) and s[-1] == pytest.approx(0.01)
    ratios = [s[i + 1] / s[i] for i in range(3)]
    assert all(r == pytest.approx(ratios[0]) for r in ratios)  # geometric
    assert annealing_schedule(0.1, 0.02, 1) == [0.02]
    with pytest.raises(ValueError, match="sigma_min"):
        annealing_schedule(0.01, 0.1, 3)
    with pytest.raises(ValueError, match="n_stages"):
        annealing_schedule(0.1, 0.01, 0)
    with pytest.raises(ValueError, match="> 0"):
        annealing_schedule(0.1, 0.0, 3)


def test_cg_solves_the_normal_equations(device, kit):
    op = kit.ReflectBlur()
    x = blocks(device=device).double()
    rhs = op.A_adjoint(op.A(x)) + 0.01 * x
    sol, n = solve_data_step(op, rhs, 0.01, torch.zeros_like(x), max_iter=300, tol=1e-10)
    assert n < 300
    assert torch.allclose(sol, x, atol=1e-6)


def _fft_step(op, y, z, mu):
    """Run one HQS stage whose denoiser returns its input: the output is the x-step's."""
    sig = math.sqrt(1.0 / mu)
    return hqs_deblur(y, op, lambda x, s: x, [sig], weight=1.0, x0=z, x_step="fft").x


def test_fft_step_matches_cg_inside_and_cg_is_exact(device, kit):
    op = kit.ReflectBlur()
    s = blocks(device=device).double()
    y = op.A(s)
    z = torch.full_like(s, 0.5)
    mu = 1e-2
    fft = _fft_step(op, y, z, mu)
    cg = hqs_deblur(
        y, op, lambda x, sg: x, [math.sqrt(1 / mu)], weight=1.0, x0=z, x_step="cg",
        cg_iter=500, cg_tol=1e-12,
    ).x  # fmt: skip
    # CG solves the operator's own normal equations exactly
    resid = op.A_adjoint(op.A(cg)) + mu * cg - op.A_adjoint(y) - mu * z
    assert float(resid.abs().max()) < 1e-8
    # the FFT step differs only near the border (edge rows weigh half on the extended grid)
    assert float((fft - cg)[..., 8:-8, 8:-8].abs().max()) < 1e-3
    assert float((fft - cg).abs().max()) < 0.2


def test_hqs_with_a_smoothing_denoiser_beats_the_blurred_input(device, kit):
    op = kit.ReflectBlur(sigma=1.5)
    s = blocks(device=device)
    y = (op.A(s) * 255).round() / 255

    def smooth(x, sigma):  # a 3x3 box mix, stronger at higher sigma: a crude denoiser
        a = min(1.0, sigma / 0.05)
        box = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
        return (1 - a) * x + a * box

    sig = annealing_schedule(0.05, 0.005, 5)
    res = hqs_deblur(y, op, smooth, sig, weight=1e-6, snapshots=[1, 5])
    assert res.x.shape == s.shape and set(res.snapshots) == {1, 5}
    assert psnr(res.x, s) > psnr(y, s) + 1.0
    assert res.sigmas == sig


def test_hqs_errors(kit):
    op = kit.ReflectBlur()
    y = blocks()
    with pytest.raises(TypeError, match="A_adjoint"):
        hqs_deblur(y, object(), lambda x, s: x, [0.1], weight=1.0)
    with pytest.raises(ValueError, match="x_step"):
        hqs_deblur(y, op, lambda x, s: x, [0.1], weight=1.0, x_step="dct")
    with pytest.raises(ValueError, match="sigmas"):
        hqs_deblur(y, op, lambda x, s: x, [], weight=1.0)
    with pytest.raises(ValueError, match="weight"):
        hqs_deblur(y, op, lambda x, s: x, [0.1], weight=0.0)
    with pytest.raises(ValueError, match="N, C, H, W"):
        hqs_deblur(y[0], op, lambda x, s: x, [0.1], weight=1.0)
