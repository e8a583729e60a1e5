"""Unfolded Deep NMF networks: untrained they ARE the fitted models, then they train.

`dnmf.deblur.unfolded.UnfoldedCoupled` (blind) against `CoupledDeblur` with multiplicative
coding, `dnmf.deblur.unfolded_prior.UnfoldedPrior` (non-blind) against `DeepNMFPrior`; the
differentiable HALS sweeps against autograd's numerical gradient and the library's sweep; the
nonnegative parametrisations and the multiplicative step.
"""

from __future__ import annotations

import pytest
import torch

import dnmf
from dnmf._solvers.hals import run_hals_codes
from dnmf.deblur.coupled import CoupledDeblur
from dnmf.deblur.nonneg import FLOOR, MultiplicativeStep, NonnegMatrix, nonneg_param_groups
from dnmf.deblur.prior import DeepNMFPrior
from dnmf.deblur.unfolded import UnfoldedCoupled
from dnmf.deblur.unfolded_prior import UnfoldedPrior, hals_sweeps


@pytest.fixture(scope="module")
def pairs(kit):
    op = kit.ConvBlur(sigma=1.2)
    sharp = kit.synthetic(6, size=24, seed=3)
    return kit.quant(op.A(sharp)), sharp


def _coupled(pairs, **kw):
    blurred, sharp = pairs
    settings = dict(size=4, context=2, stride=2, ranks=(12, 6), n_patches=1500, fit_iter=15)
    return CoupledDeblur(**{**settings, **kw, "coder": "mu"}).fit(blurred, sharp)


# ---------------------------------------------------------------------------- blind
@pytest.mark.parametrize(
    "kw",
    [
        dict(code_iter=4),
        dict(code_iter=3, stages=2),  # the cascade: every stage unfolded, clamped between
        dict(code_iter=5, ranks=(10,)),  # depth 1
        dict(code_iter=2, ranks=(12, 8, 5), l1=0.05, batch_size=1),  # L1 and a per-image start
    ],
)
def test_untrained_network_is_the_coupled_model(pairs, kw):
    model = _coupled(pairs, **kw)
    blurred = pairs[0]
    want = model.restore(blurred)
    for untie in ("deep", "none", "all") if len(model.ranks) > 1 else ("all", "none"):
        net = UnfoldedCoupled.from_coupled(model, layers=model.code_iter, untie=untie)
        with torch.no_grad():
            got = net(blurred).clamp(0, 1)
        assert torch.allclose(got, want, atol=2e-5), (untie, (got - want).abs().max())


def test_parameters_per_untying(pairs):
    model = _coupled(pairs)
    m_blur, (r1, r2), m_out = 2 * 3 * 8 * 8, model.ranks, 2 * 3 * 4 * 4
    count = {
        u: sum(
            p.numel() for p in UnfoldedCoupled.from_coupled(model, layers=3, untie=u).parameters()
        )
        for u in ("none", "deep", "all")
    }
    assert count["none"] == m_blur * r1 + r1 * r2 + m_out * r2
    assert count["deep"] == m_blur * r1 + 3 * r1 * r2 + m_out * r2
    assert count["all"] == 3 * (m_blur * r1 + r1 * r2) + m_out * r2


def test_training_moves_every_parameter_and_keeps_factors_nonnegative(pairs):
    blurred, sharp = pairs[0][:2], pairs[1][:2]
    for nonneg in ("exp", "softplus", "multiplicative"):
        net = UnfoldedCoupled.from_coupled(_coupled(pairs), layers=3, nonneg=nonneg)
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        opt = net.make_optimizer(0.05)
        assert isinstance(opt, MultiplicativeStep) == (nonneg == "multiplicative")
        losses = []
        for _ in range(5):
            loss = (net(blurred) - sharp).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0], nonneg
        for n, p in net.named_parameters():
            assert not torch.equal(p, before[n]), (nonneg, n)
        st = net.stage_list()[0]
        for W in (st.dictionary(0), st.dictionary(2), st.out()):
            assert bool((W > 0).all()), nonneg
        b0, b1 = net.first_layer_atoms()
        assert not torch.equal(b0, b1)  # the figure's "before" stays what it started as


def test_random_start_returns_its_input_then_leaves_it(pairs):
    torch.manual_seed(0)
    net = UnfoldedCoupled(in_channels=3, size=4, context=2, stride=2, ranks=(8, 4), init="random")
    blurred, sharp = pairs
    with torch.no_grad():
        assert torch.allclose(net(blurred), blurred, atol=1e-6)
    # unit-norm random factors keep the codes of order one, so a few steps leave the identity
    # (with raw entries near 1 the codes were near 1e-3 and training did not move it)
    opt = net.make_optimizer(0.1)
    losses = []
    for _ in range(4):
        loss = (net(blurred) - sharp).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        assert (net(blurred) - blurred).abs().mean() > 1e-3
    assert losses[-1] < losses[0]


def test_bad_input_network_settings_are_refused(pairs):
    with pytest.raises(ValueError, match="untie='deep'.*2 or more"):
        UnfoldedCoupled(ranks=(16,), untie="deep")
    with pytest.raises(ValueError, match="nonneg must be one of"):
        UnfoldedCoupled(nonneg="relu")
    with pytest.raises(ValueError, match="init must be one of"):
        UnfoldedCoupled(init="zeros")
    with pytest.raises(ValueError, match="stride .* must not exceed size"):
        UnfoldedCoupled(size=4, stride=5)
    net = UnfoldedCoupled(size=4, context=2, stride=2, ranks=(12, 5))
    with pytest.raises(ValueError, match=r"does not match this network: ranks=\[12, 6\]"):
        net.load_coupled(_coupled(pairs))
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\)"):
        net(torch.zeros(1, 1, 24, 24))


# ---------------------------------------------------------------------------- non-blind
@pytest.fixture(scope="module")
def prior(kit):
    sharp = kit.synthetic(4, size=24, seed=5)
    return DeepNMFPrior(size=4, ranks=(12, 6), n_patches=1500, fit_iter=15, n_stages=3).fit(sharp)


def test_untrained_network_is_the_prior(kit, prior):
    op = kit.ReflectBlur(sigma=1.2)
    sharp = kit.synthetic(3, size=24, seed=6)
    y = kit.quant(op.A(sharp))
    want = prior.restore(y, op).x
    for untie in ("stages", "none"):
        net = UnfoldedPrior.from_prior(prior, untie=untie).set_operator(op)
        with torch.no_grad():
            got = net(y)
        assert torch.allclose(got, want, atol=2e-5), (untie, (got - want).abs().max())


def test_untrained_network_is_the_prior_for_an_asymmetric_kernel(kit, prior):
    """The x-step by conjugate gradients on the operator (as hqs_deblur): equal up to where
    CG stops (a relative residual of 3e-6; the learned weight's float rounding may move it)."""
    g = torch.Generator().manual_seed(0)
    k = torch.rand(5, 5, generator=g, dtype=torch.float64)
    op = kit.ReflectBlur(sigma=1.2)
    op.k, op.p = (k / k.sum())[None, None], 2
    sharp = kit.synthetic(2, size=24, seed=7)
    y = kit.quant(op.A(sharp))
    want = prior.restore(y, op).x
    with torch.no_grad():
        got = UnfoldedPrior.from_prior(prior).set_operator(op)(y)
    assert (got - want).abs().max() < 2e-3


def test_prior_network_trains_its_noise_levels_weights_and_dictionary(kit, prior):
    op = kit.ReflectBlur(sigma=1.2)
    sharp = kit.synthetic(2, size=24, seed=8)
    y = kit.quant(op.A(sharp))
    net = UnfoldedPrior.from_prior(prior, nonneg="multiplicative").set_operator(op)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = net.make_optimizer(0.02)
    first = None
    for _ in range(4):
        loss = (net(y) - sharp).square().mean()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert (net(y) - sharp).square().mean().item() < first
    for n, p in net.named_parameters():
        assert not torch.equal(p, before[n]), n
    assert all(bool((f() > 0).all()) for s in range(3) for f in net.factors(s))


def test_bad_input_prior_network_without_operator_or_with_other_settings(prior):
    net = UnfoldedPrior.from_prior(prior)
    with pytest.raises(RuntimeError, match="set_operator"):
        net(torch.zeros(1, 3, 24, 24))
    with pytest.raises(TypeError, match="A\\(x\\) and A_adjoint"):
        net.set_operator(object())  # type: ignore[arg-type]
    other = UnfoldedPrior(size=4, ranks=(12, 6), n_stages=4)
    with pytest.raises(ValueError, match="n_stages=3 \\(the network's: 4\\)"):
        other.load_prior(prior)


# ---------------------------------------------------------------------------- HALS sweeps
def test_hals_sweeps_gradient_is_exact():
    g = torch.Generator().manual_seed(0)
    V = torch.randn(6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    D = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    l1 = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    H = torch.rand(4, 7, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda V, D, l1, H: hals_sweeps(V, D, l1, 3, H), (V, D, l1, H))
    assert torch.autograd.gradcheck(lambda V, D: hals_sweeps(V, D, 0.05, 2), (V, D))


def test_hals_sweeps_equal_the_library_sweeps():
    g = torch.Generator().manual_seed(1)
    V, D = torch.rand(10, 50, generator=g), torch.rand(10, 6, generator=g)
    got = hals_sweeps(V, D, 0.01, 3, torch.full((6, 50), 0.1))
    want = dnmf.solve_h(
        V, [D], H=torch.full((6, 50), 0.1), solver="hals", max_iter=3, tol=0.0, l1=0.01,
        warn=False, check_every=3,
    ).H  # fmt: skip
    assert torch.allclose(got, torch.as_tensor(want), atol=1e-6)
    Ds = D - 0.5  # a signed dictionary (semi-NMF codes), the library's kernel as the prior uses it
    H = torch.zeros(6, 50)
    run_hals_codes(V - 0.5, [Ds], H, max_iter=2, tol=0.0, l1=0.01, check_every=2)
    assert torch.allclose(hals_sweeps(V - 0.5, Ds, 0.01, 2), H, atol=1e-6)


# ---------------------------------------------------------------------------- nonnegativity
@pytest.mark.parametrize("mode", ["exp", "softplus", "multiplicative"])
def test_nonneg_matrix_round_trip_and_floor(mode):
    W = torch.tensor([[0.0, 0.5], [2.0, 1e-9]])
    m = NonnegMatrix((2, 2), mode)
    m.set_(W)
    got = m().detach()
    assert torch.allclose(got, W.clamp_min(FLOOR * 2.0), rtol=1e-5, atol=1e-12)
    with pytest.raises(ValueError, match="finite entries >= 0"):
        m.set_(-W)
    with pytest.raises(ValueError, match=r"expected a \(2, 2\) matrix"):
        m.set_(torch.ones(3, 2))


def test_multiplicative_step_keeps_entries_positive_and_adam_updates_the_rest():
    net = torch.nn.Module()
    net.W = NonnegMatrix((3, 4), "multiplicative")
    net.b = torch.nn.Parameter(torch.zeros(4))
    groups = nonneg_param_groups(net)
    assert [g["multiplicative"] for g in groups] == [True, False]
    opt = MultiplicativeStep(groups, lr=0.5)
    for step in range(20):  # large gradients of both signs
        loss = ((net.W() * (-1.0) ** step * 1e3).sum() + net.b.sum()) * (step + 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert bool((net.W() > 0).all()) and bool(torch.isfinite(net.W()).all())
    assert bool((net.b < 0).all())  # Adam went down the gradient
    state = opt.state_dict()
    again = MultiplicativeStep(nonneg_param_groups(net), lr=0.5)
    again.load_state_dict(state)
    assert again.state_dict()["state"][0]["step"] == state["state"][0]["step"]
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        MultiplicativeStep(groups, lr=0.0)


# ---------------------------------------------------------------------------- devices
def test_networks_train_on_the_device_as_on_the_cpu(kit, pairs, prior, device):
    """Both networks moved to ``device`` (CUDA when present): the untrained restoration equals
    the CPU one and one training step keeps the factors positive and finite there."""
    blurred, sharp = pairs[0][:2], pairs[1][:2]
    op = kit.ReflectBlur(sigma=1.2)
    nets = [
        (UnfoldedCoupled.from_coupled(_coupled(pairs), layers=3, nonneg=mode), None)
        for mode in ("exp", "multiplicative")
    ] + [(UnfoldedPrior.from_prior(prior, nonneg="multiplicative"), op)]
    for net, blur in nets:
        if blur is not None:
            net.set_operator(blur)
        with torch.no_grad():
            want = net(blurred)
        net.to(device)
        with torch.no_grad():
            got = net(blurred.to(device)).cpu()
        assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
        opt = net.make_optimizer(0.05)
        loss = (net(blurred.to(device)) - sharp.to(device)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        for p in net.parameters():
            assert p.device.type == device.type and bool(torch.isfinite(p).all())
        factors = (
            [f() for s in range(3) for f in net.factors(s)]
            if isinstance(net, UnfoldedPrior)
            else [net.stage_list()[0].dictionary(0), net.stage_list()[0].out()]
        )
        assert all(bool((W > 0).all()) for W in factors)
