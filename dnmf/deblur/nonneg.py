"""Nonnegative parameters for networks trained by backpropagation, two ways.

An unfolded Deep NMF network (`dnmf.deblur.unfolded`, `dnmf.deblur.unfolded_prior`) keeps every
dictionary nonnegative while it is trained end to end. `NonnegMatrix` holds one such matrix
``W`` in one of three modes (`NONNEG`):

* ``"exp"`` and ``"softplus"`` — a positive reparametrisation: the parameter is a signed ``θ``
  and ``W = exp(θ)`` (as Wisdom et al.'s deep recurrent NMF, ``stwisdom/dr-nmf``, keep their
  dictionary) or ``W = softplus(θ)``; any optimizer (Adam) may update ``θ``.
* ``"multiplicative"`` — the parameter is ``W`` itself, updated by `MultiplicativeStep`:
  ``W ← W ⊙ ∇⁻ / ∇⁺``, the multiplicative form of the gradient step of Le Roux, Hershey &
  Weninger ("Deep NMF for speech separation", ICASSP 2015): a positive entry stays positive
  without any projection.

The split of the gradient ``g = ∇⁺ − ∇⁻`` into two nonnegative parts is not unique. Le Roux
et al. obtain a natural split by carrying the positive and negative parts separately through
every layer of their network, which needs a hand-written backward rule for each operation.
Autograd returns only the difference ``g``, and the networks here also pass through the
contrast normalisation, the signed residual, the averaging of patches, the SSIM loss and (for
the non-blind one) an FFT solve, so that propagation is impractical. `MultiplicativeStep`
uses the split ``∇⁺ = [g]₊ + c``, ``∇⁻ = [g]₋ + c`` with ``c = √v̂ / lr`` per entry (``v̂`` the
bias-corrected running mean of ``g²``, as in Adam): the step is still ``W ⊙ ∇⁻/∇⁺`` (a gradient
step of per-entry size ``W / ∇⁺``), and ``lr`` bounds the relative change of an entry per step,
as Adam's ``lr`` bounds the change of ``θ = log W``. To first order both modes take the same
relative step; they differ in what they divide by (the running size of ``∂L/∂W`` against that of
``∂L/∂θ``) and in Adam's momentum.

Entries of the initial ``W`` are raised to at least `FLOOR` times its largest entry: a zero
entry would stay zero under a multiplicative step and has no finite ``θ``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NONNEG", "FLOOR", "NonnegMatrix", "MultiplicativeStep", "nonneg_param_groups"]

NONNEG = ("exp", "softplus", "multiplicative")
#: smallest entry of an initial matrix, relative to its largest (see the module docstring)
FLOOR = 1e-6


def check_nonneg(mode: str) -> str:
    if mode not in NONNEG:
        raise ValueError(f"nonneg must be one of {NONNEG}, got {mode!r}")
    return mode


def _inverse_softplus(w: torch.Tensor) -> torch.Tensor:
    """``θ`` with ``softplus(θ) = w`` (w > 0): ``w + log(1 − e^{−w})``, stable for small w."""
    return w + torch.log(-torch.expm1(-w))


class NonnegMatrix(nn.Module):
    """One nonnegative matrix ``W`` (see the module docstring); call it to get ``W``.

    Parameters
    ----------
    shape : the matrix's shape.
    mode : ``"exp"``, ``"softplus"`` or ``"multiplicative"`` (`NONNEG`).
    """

    def __init__(self, shape: tuple[int, ...], mode: str) -> None:
        super().__init__()
        self.mode = check_nonneg(mode)
        self.raw = nn.Parameter(torch.zeros(shape))
        self.set_(torch.ones(shape))

    def forward(self) -> torch.Tensor:
        if self.mode == "exp":
            return torch.exp(self.raw)
        if self.mode == "softplus":
            return F.softplus(self.raw)
        return self.raw

    @torch.no_grad()
    def set_(self, W: torch.Tensor) -> None:
        """Make this matrix ``W`` (nonnegative; entries below `FLOOR` × its largest raised)."""
        if tuple(W.shape) != tuple(self.raw.shape):
            raise ValueError(f"expected a {tuple(self.raw.shape)} matrix, got {tuple(W.shape)}")
        W = W.detach().to(self.raw.device, torch.float64)
        if not bool(torch.isfinite(W).all()) or bool((W < 0).any()):
            raise ValueError("a nonnegative matrix must have finite entries >= 0")
        top = float(W.max()) if W.numel() else 1.0
        W = W.clamp_min(FLOOR * top if top > 0 else FLOOR)
        if self.mode == "exp":
            raw = torch.log(W)
        elif self.mode == "softplus":
            raw = _inverse_softplus(W)
        else:
            raw = W
        self.raw.copy_(raw.to(self.raw.dtype))


def nonneg_param_groups(module: nn.Module) -> list[dict[str, Any]]:
    """``module``'s parameters as two `MultiplicativeStep` groups: the multiplicative matrices
    (``multiplicative=True``) and every other parameter (Adam)."""
    # found by module (a tag on the Parameter itself would not survive copy.deepcopy)
    mult_ids = {
        id(m.raw)
        for m in module.modules()
        if isinstance(m, NonnegMatrix) and m.mode == "multiplicative"
    }
    mult: list[nn.Parameter] = []
    other: list[nn.Parameter] = []
    for p in module.parameters():
        if p.requires_grad:
            (mult if id(p) in mult_ids else other).append(p)
    groups: list[dict[str, Any]] = []
    if mult:
        groups.append({"params": mult, "multiplicative": True})
    if other:
        groups.append({"params": other, "multiplicative": False})
    return groups


class MultiplicativeStep(torch.optim.Optimizer):
    """``W ← W ⊙ ∇⁻/∇⁺`` for the groups with ``multiplicative=True``, Adam for the others.

    ``∇⁺ = [g]₊ + c`` and ``∇⁻ = [g]₋ + c`` with ``c = (√v̂ + eps) / lr`` (module docstring);
    ``betas`` as Adam's (the first is used by the Adam groups only).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, multiplicative=False))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if not group["multiplicative"]:
                        state["exp_avg"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                scale = (v / (1 - b2**t)).sqrt_().add_(eps)
                if group["multiplicative"]:
                    c = scale.div_(lr)
                    ratio = (-g).clamp_min(0).add_(c).div_(g.clamp_min(0).add_(c))
                    p.mul_(ratio)
                else:
                    m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                    p.addcdiv_(m, scale, value=-lr / (1 - b1**t))
        return loss
