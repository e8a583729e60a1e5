"""Non-blind Deep NMF prior: MU keeps H >= 0 and is monotone; acceleration is safeguarded."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dnmf.deblur.patches import PatchGrid
from dnmf.deblur.prior import DeepNMFPrior, LinearOperator, code_patches, deblur_mu


class ConvBlur:
    """Zero-boundary Gaussian blur by conv2d, with the exact adjoint (conv_transpose2d)."""

    def __init__(self, sigma=1.2, size=7):
        x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        g = torch.exp(-0.5 * (x / sigma) ** 2)
        k = torch.outer(g, g)
        self.k = (k / k.sum())[None, None]
        self.p = size // 2

    def _w(self, x):
        return self.k.to(x).expand(x.shape[1], 1, *self.k.shape[-2:])

    def A(self, x):
        return F.conv2d(x, self._w(x), padding=self.p, groups=x.shape[1])

    def A_adjoint(self, y):
        return F.conv_transpose2d(y, self._w(y), padding=self.p, groups=y.shape[1])


def synthetic(n, size=24, seed=0):
    """Piecewise-constant colour images (rectangles on a background) in [0.1, 0.9]."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        img = torch.rand(3, 1, 1, generator=g) * 0.4 + 0.1 + torch.zeros(3, size, size)
        for _ in range(4):
            y0, x0 = torch.randint(0, size - 6, (2,), generator=g).tolist()
            h, w = torch.randint(4, 12, (2,), generator=g).tolist()
            img[:, y0 : y0 + h, x0 : x0 + w] = torch.rand(3, 1, 1, generator=g) * 0.8 + 0.1
        out[i] = img
    return out


def quant(x):
    return (x.clamp(0, 1) * 255).round() / 255


def psnr(a, b):
    return float((10 * torch.log10(1 / ((a.clamp(0, 1) - b) ** 2).mean(dim=(1, 2, 3)))).mean())


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    prior = DeepNMFPrior(
        size=4,
        stride=2,
        ranks=(24, 12),
        n_patches=3000,
        fit_iter=40,
        code_iter=30,
        n_iter=40,
        seed=0,
    )
    return prior.fit(synthetic(12, seed=1))


def test_operator_protocol_and_adjoint():
    op = ConvBlur()
    assert isinstance(op, LinearOperator)
    x, y = (
        torch.rand(2, 3, 20, 17, dtype=torch.float64),
        torch.rand(2, 3, 20, 17, dtype=torch.float64),
    )
    assert torch.allclose((op.A(x) * y).sum(), (x * op.A_adjoint(y)).sum())


@pytest.mark.parametrize("l1", [0.0, 0.05])
def test_plain_mu_nonnegative_and_monotone(fitted, l1):
    op = ConvBlur()
    y = quant(op.A(synthetic(3, seed=7)))
    W = fitted.dictionary()
    grid = PatchGrid(24, 24, 4, 2)
    H0 = code_patches(grid.extract(y, mode="reflect"), W, n_iter=5)
    res = deblur_mu(y, op, W, grid, H0, n_iter=30, l1=l1, accelerate=False)
    assert (res.H >= 0).all()
    hist = np.stack(res.history)  # (iterations + 1, N)
    assert (np.diff(hist, axis=0) <= 1e-6 * hist[:-1]).all()
    assert (hist[-1] < hist[0]).all()


def test_accelerated_is_monotone_and_not_worse_than_plain(fitted):
    op = ConvBlur()
    y = quant(op.A(synthetic(3, seed=8)))
    W = fitted.dictionary()
    grid = PatchGrid(24, 24, 4, 2)
    H0 = code_patches(grid.extract(y, mode="reflect"), W, n_iter=5)
    plain = deblur_mu(y, op, W, grid, H0, n_iter=40, accelerate=False)
    acc = deblur_mu(y, op, W, grid, H0, n_iter=40, accelerate=True)
    assert (acc.H >= 0).all()
    hist = np.stack(acc.history)
    assert (np.diff(hist, axis=0) <= 1e-6 * hist[:-1]).all()
    assert (hist[-1] <= np.stack(plain.history)[-1] * (1 + 1e-6)).all()
    assert acc.accepted > 0


def test_restore_beats_blurred_input(fitted):
    op = ConvBlur()
    x = synthetic(4, seed=9)
    y = quant(op.A(x))
    out = fitted.restore(y, op, init="y", n_iter=60).x
    assert out.shape == y.shape
    assert psnr(out, x) > psnr(y, x) + 0.5


def test_save_load_round_trip(fitted, tmp_path):
    op = ConvBlur()
    y = quant(op.A(synthetic(2, seed=10)))
    fitted.save(tmp_path / "prior.npz")
    back = DeepNMFPrior.load(tmp_path / "prior.npz")
    assert back.get_params() == fitted.get_params()
    a = fitted.restore(y, op, init="y", n_iter=5).x
    b = back.restore(y, op, init="y", n_iter=5).x
    assert torch.allclose(a, b, atol=1e-6)


def test_bad_init_rejected():
    with pytest.raises(ValueError, match="init"):
        DeepNMFPrior(init="wiener")


def test_hals_coder_reaches_the_nnls_optimum():
    """HALS sweeps solve min_{H>=0} ||V - W H|| (scipy's NNLS per column), far faster than MU."""
    from scipy.optimize import nnls

    from dnmf.deblur.prior import code_patches_hals

    g = torch.Generator().manual_seed(3)
    W = torch.rand(30, 12, generator=g, dtype=torch.float64)
    V = torch.rand(30, 7, generator=g, dtype=torch.float64)
    ref = np.stack([nnls(W.numpy(), V[:, j].numpy())[0] for j in range(V.shape[1])], 1)
    H = code_patches_hals(V, W, n_iter=200)
    assert (H >= 0).all()
    assert np.abs(H.numpy() - ref).max() < 1e-6
    # batched (N, m, L) input gives the same codes as column-by-column
    Vb = torch.stack([V[:, :4], V[:, 3:]])
    Hb = code_patches_hals(Vb, W, n_iter=200)
    assert torch.allclose(Hb[0], H[:, :4], atol=1e-6) and torch.allclose(Hb[1], H[:, 3:], atol=1e-6)

    # at an equal small budget HALS is closer to the optimum than MU
    def err(Hx):
        return float((V - W @ Hx).square().sum())

    best = float(((V.numpy() - W.numpy() @ ref) ** 2).sum())
    assert (
        err(code_patches_hals(V, W, n_iter=10)) - best < err(code_patches(V, W, n_iter=10)) - best
    )


def test_hals_l1_matches_penalised_optimum():
    """With l1, HALS decreases ½||V - WH||² + l1·ΣH below what MU reaches at the same budget."""
    from dnmf.deblur.prior import code_patches_hals

    g = torch.Generator().manual_seed(4)
    W = torch.rand(20, 8, generator=g, dtype=torch.float64)
    V = torch.rand(20, 5, generator=g, dtype=torch.float64)

    def obj(H):
        return float(0.5 * (V - W @ H).square().sum() + 0.3 * H.sum())

    Hh = code_patches_hals(V, W, n_iter=100, l1=0.3)
    Hm = code_patches(V, W, n_iter=2000, l1=0.3)
    assert (Hh >= 0).all() and obj(Hh) <= obj(Hm) + 1e-9
