"""Patch denoisers: the colour rotation, patch averaging, and the Deep NMF patch prior's codes."""

import pytest
import torch

from dnmf.deblur.nmf_patch_prior import (
    NMFPatchPrior,
    normalise_layers,
    onoff,
    sample_centred_patches,
)
from dnmf.deblur.patch_denoise import PatchDenoiser, from_opponent, to_opponent


def images(n=2, c=3, h=20, w=23, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g).to(device)


def test_opponent_rotation_is_orthonormal(device):
    x = images(device=device)
    o = to_opponent(x)
    assert torch.allclose(from_opponent(o), x, atol=1e-6)
    assert torch.allclose(o.square().sum(1), x.square().sum(1), atol=1e-5)  # norm kept
    assert torch.allclose(o[:, 0], x.sum(1) / 3**0.5, atol=1e-6)  # luminance first
    with pytest.raises(ValueError, match="1 or 3 channels"):
        to_opponent(images(c=2))


@pytest.mark.parametrize("colour", ["opponent", "rgb"])
@pytest.mark.parametrize("stride", [1, 3])
def test_identity_prior_returns_the_image(colour, stride, device):
    x = images(device=device)
    den = PatchDenoiser(lambda P, s: P, size=4, stride=stride, colour=colour)
    assert torch.allclose(den(x, 0.1), x, atol=1e-5)


def test_zero_prior_keeps_only_patch_means():
    x = images(c=1)
    den = PatchDenoiser(lambda P, s: torch.zeros_like(P), size=3, stride=1, colour="rgb")
    out = den(x, 0.1)
    # interior pixel: the average of the means of the 9 patches covering it = a 5x5 tent mean
    box = torch.nn.functional.avg_pool2d(x, 3, stride=1)  # patch means
    tent = torch.nn.functional.avg_pool2d(box, 3, stride=1)
    assert torch.allclose(out[..., 2:-2, 2:-2], tent, atol=1e-6)
    raw = PatchDenoiser(lambda P, s: torch.zeros_like(P), size=3, remove_mean=False)
    assert float(raw(x, 0.1).abs().max()) == 0.0


def test_onoff_and_centred_samples():
    P = torch.randn(6, 10)
    V = onoff(P)
    assert (V >= 0).all() and torch.equal(V[:6] - V[6:], P)
    S = sample_centred_patches(images(n=3), size=4, colour="opponent", n_patches=50)
    assert S.shape == (16, 50)
    assert torch.allclose(S.mean(0), torch.zeros(50), atol=1e-6)
    R = sample_centred_patches(images(n=3), size=4, colour="rgb", n_patches=50, remove_mean=False)
    assert R.shape == (48, 50) and (R >= 0).all()


def test_normalise_layers_keeps_the_product_directions():
    g = torch.Generator().manual_seed(1)
    Ws = [torch.rand(10, 6, generator=g), torch.rand(6, 4, generator=g)]
    N = normalise_layers(Ws)
    assert torch.allclose(N[0].norm(dim=0), torch.ones(6))
    assert torch.allclose(N[1].norm(dim=0), torch.ones(4))
    a, b = Ws[0] @ Ws[1], N[0] @ N[1]
    assert torch.allclose(a / a.norm(dim=0), b / b.norm(dim=0), atol=1e-6)


def _planted(seed=0, d=8, r=12, n=40, one_hot=False):
    """Unit-norm ON/OFF layers whose first layer is the split of signed atoms, and patches
    made of them (sparse codes; one atom per patch with ``one_hot``, so that the ON/OFF
    split of a patch is exactly the split of its atom)."""
    g = torch.Generator().manual_seed(seed)
    W1 = onoff(torch.randn(d, r, generator=g))
    W2 = torch.rand(r, 5, generator=g)
    Ws = normalise_layers([W1, W2])
    D = Ws[0][:d] - Ws[0][d:]
    if one_hot:
        H = torch.zeros(r, n)
        H[torch.randint(0, r, (n,), generator=g), torch.arange(n)] = 1 + torch.rand(n, generator=g)
    else:
        H = torch.rand(r, n, generator=g) * (torch.rand(r, n, generator=g) < 0.3)
    return Ws, D, D @ H


@pytest.mark.parametrize("coding", ["semi", "onoff"])
def test_clean_patches_in_the_span_are_kept(coding, device):
    Ws, D, P = _planted(one_hot=coding == "onoff")
    prior = NMFPatchPrior([W.to(device) for W in Ws], coding=coding, depth="layered",
                          gamma=1e-6, n_iter=60, n_outer=0, warm_start=False)  # fmt: skip
    out = prior(P.to(device), 0.0).cpu()
    assert float((out - P).norm() / P.norm()) < 1e-2


def test_sparsity_grows_with_the_noise_level():
    Ws, D, P = _planted()
    prior = NMFPatchPrior(Ws, coding="semi", depth="product", sparsity=1.0, warm_start=False)
    sums = [float(prior.code(P, s)[0].sum()) for s in (0.0, 0.05, 0.2)]
    assert sums[0] > sums[1] > sums[2]


def test_layered_codes_lower_the_objective_and_warm_start_is_reused():
    Ws, D, P = _planted(seed=3)
    g = torch.Generator().manual_seed(4)
    Pn = P + 0.05 * torch.randn(P.shape, generator=g)
    prior = NMFPatchPrior(Ws, coding="semi", depth="layered", gamma=0.5, sparsity=0.2, n_iter=3)

    def objective(h, sigma=0.05):
        fit = 0.5 * (Pn - D @ h[0]).square().sum()
        link = 0.25 * (h[0] - Ws[1] @ h[1]).square().sum()
        return float(fit + link + 0.2 * sigma * h[0].sum())

    one = NMFPatchPrior(Ws, coding="semi", gamma=0.5, sparsity=0.2, n_iter=3, n_outer=1)
    more = NMFPatchPrior(Ws, coding="semi", gamma=0.5, sparsity=0.2, n_iter=3, n_outer=4)
    assert objective(more.code(Pn, 0.05)) <= objective(one.code(Pn, 0.05)) + 1e-6
    prior(Pn, 0.05)
    assert prior._codes is not None and prior._codes[0].shape == (12, 40)
    prior.reset()
    assert prior._codes is None


def test_bad_options():
    Ws, _, _ = _planted()
    with pytest.raises(ValueError, match="coding"):
        NMFPatchPrior(Ws, coding="signed")
    with pytest.raises(ValueError, match="depth"):
        NMFPatchPrior(Ws, depth="deep")
    with pytest.raises(ValueError, match="colour"):
        PatchDenoiser(lambda P, s: P, size=3, colour="lab")
