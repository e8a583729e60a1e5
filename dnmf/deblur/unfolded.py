"""Blind coupled Deep NMF deblurring unfolded into a network and trained end to end.

Deep unfolding (Hershey, Le Roux & Weninger 2014) turns each iteration of an inference
algorithm into a layer and unties the parameters per layer; "Deep NMF" (Le Roux, Hershey &
Weninger, ICASSP 2015) does it for multiplicative-update NMF. `UnfoldedCoupled` does it for
`dnmf.deblur.coupled.CoupledDeblur`, the blind coupled Deep NMF:

* features: the contrast-normalised, ON/OFF-split blurred patch with its context,
  ``v = [z⁺; z⁻]`` (exactly `CoupledDeblur`'s features, computed by its own code);
* ``K`` layers, each one multiplicative update of the codes of a ``k``-layer model
  ``W1 W2 … Wk h`` (``β = 2``, L1 weight ``l1``), with the dictionary of layer ``l``
  ``D_l = W1⁽ˡ⁾ W2⁽ˡ⁾ … Wk⁽ˡ⁾``::

      h ← h ⊙ D_lᵀ v / (D_lᵀ D_l h + l1)

  started from `CoupledDeblur`'s constant code (`dnmf.deblur.codes.mu_start`);
* a separate nonnegative output dictionary ``W_out`` gives the split residual
  ``[r⁺; r⁻] ≈ W_out h``; the sharp patch is ``b + (r⁺ − r⁻)·σ`` (``σ`` the patch's contrast)
  and overlapping patches are averaged (`dnmf.deblur.patches.PatchGrid`);
* ``stages > 1``: a cascade, each stage restoring the previous one's output (clamped to [0, 1]).

Untying (``untie``): ``"all"`` gives every layer its own factors; ``"deep"`` shares the large
first factor ``W1`` and unties ``W2 … Wk`` (cheap: the untied part lives in the small code
spaces, so depth is what makes untying affordable); ``"none"`` ties every layer (the plain
iteration). Every factor is nonnegative in one of the ways of `dnmf.deblur.nonneg`
(``nonneg``).

`UnfoldedCoupled.from_coupled` builds the network from a fitted `CoupledDeblur` (every layer
starts from the fitted factors): untrained, it restores exactly as
``CoupledDeblur(coder="mu", code_iter=K)`` does (tested to float tolerance). The constructor
alone gives a random start (random nonnegative factors; the two halves of the output
dictionary equal, so that the untrained network returns its input).

The module follows `convae`'s architecture contract (keyword-only constructor with
``in_channels``, ``init_kwargs``, ``in_channels``), so `convae`'s training loop can train it
without either package importing the other (`benchmarks` registers it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from .codes import EPS
from .coupled import CoupledDeblur
from .nonneg import MultiplicativeStep, NonnegMatrix, check_nonneg, nonneg_param_groups
from .patches import PatchGrid

__all__ = ["INITS", "UNTIE", "UnfoldedCoupled"]

UNTIE = ("none", "deep", "all")
#: how a network starts: from a fitted `CoupledDeblur` (`UnfoldedCoupled.load_coupled`, done
#: by the caller, who has the data) or from the constructor's random factors
INITS = ("nmf", "random")
#: denominator floor of a multiplicative layer: where ``D_lᵀ D_l h`` is 0 the numerator is
#: too (a zero code or a zero atom), and the code stays 0 as in `dnmf.solve_h`
TINY = float(torch.finfo(torch.float32).tiny)


def _positive_int(name: str, v: Any, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    return v


def _product(factors: Sequence[torch.Tensor]) -> torch.Tensor | None:
    if not factors:
        return None
    P = factors[0]
    for F in factors[1:]:
        P = P @ F
    return P


class _Stage(nn.Module):
    """One coupled model unfolded: the layers' factors and the output dictionary."""

    out: NonnegMatrix
    init_first: torch.Tensor
    init_out: torch.Tensor

    def __init__(
        self, *, m_blur: int, m_out: int, ranks: Sequence[int], layers: int, untie: str, nonneg: str
    ) -> None:
        super().__init__()
        dims = [m_blur, *ranks]
        self.layers, self.untie = layers, untie
        n_first = layers if untie == "all" else 1
        n_deep = 1 if untie == "none" else layers
        self.first = nn.ModuleList(NonnegMatrix((m_blur, ranks[0]), nonneg) for _ in range(n_first))
        self.deep = nn.ModuleList(
            nn.ModuleList(
                NonnegMatrix((dims[i], dims[i + 1]), nonneg) for i in range(1, len(ranks))
            )
            for _ in range(n_deep)
        )
        self.out = NonnegMatrix((m_out, ranks[-1]), nonneg)
        # what the stage was initialised with, for the before/after figures (not learned)
        self.register_buffer("init_first", torch.zeros(m_blur, ranks[-1]))
        self.register_buffer("init_out", torch.zeros(m_out, ranks[-1]))

    # ------------------------------------------------------------------ dictionaries
    def first_factor(self, layer: int) -> NonnegMatrix:
        """``W1⁽ˡ⁾`` (the shared one unless ``untie="all"``)."""
        return cast(NonnegMatrix, self.first[min(layer, len(self.first) - 1)])

    def deep_factors(self, layer: int) -> list[NonnegMatrix]:
        """``[W2⁽ˡ⁾, …, Wk⁽ˡ⁾]`` (the shared ones when ``untie="none"``)."""
        return [
            cast(NonnegMatrix, f)
            for f in cast(nn.ModuleList, self.deep[min(layer, len(self.deep) - 1)])
        ]

    def _tail(self, layer: int) -> torch.Tensor | None:
        """``W2⁽ˡ⁾ … Wk⁽ˡ⁾`` (None for one-layer models)."""
        return _product([f() for f in self.deep_factors(layer)])

    def dictionary(self, layer: int = 0) -> torch.Tensor:
        """The blurred-feature dictionary ``D_l = W1⁽ˡ⁾ … Wk⁽ˡ⁾`` of layer ``layer``."""
        W = self.first_factor(layer)()
        tail = self._tail(layer)
        return W if tail is None else W @ tail

    def set_factors(self, Ws: Sequence[torch.Tensor], W_out: torch.Tensor) -> None:
        """Every layer's factors ``Ws = [W1 (blurred rows), W2, …]`` and the output block."""
        for l in range(len(self.first)):
            self.first_factor(l).set_(Ws[0])
        for l in range(len(self.deep)):
            for f, W in zip(self.deep_factors(l), Ws[1:]):
                f.set_(W)
        self.out.set_(W_out)
        with torch.no_grad():
            self.init_first.copy_(self.dictionary(0))
            self.init_out.copy_(self.out())

    # ------------------------------------------------------------------ codes
    def codes(self, V: torch.Tensor, l1: float) -> torch.Tensor:
        """The codes ``(N, r_k, L)`` of the features ``V`` ``(N, m, L)`` after the layers."""
        shared = len(self.first) == 1
        if shared:  # W1ᵀv once; each layer then works in the code spaces only
            W1 = self.first_factor(0)()
            U, G1 = W1.T @ V, W1.T @ W1
        steps: list[tuple[torch.Tensor, torch.Tensor]] = []
        for l in range(self.layers):
            if self.untie == "none" and steps:
                steps.append(steps[0])
                continue
            if shared:
                P = self._tail(l)
                steps.append((U, G1) if P is None else (P.T @ U, P.T @ G1 @ P))
            else:
                D = self.dictionary(l)
                steps.append((D.T @ V, D.T @ D))
        # CoupledDeblur's MU start (dnmf.deblur.codes.mu_start), per image: a constant code
        # matched to the data's scale with the first layer's dictionary
        colsum = self.dictionary(0).sum(0).mean()
        scale = V.mean(dim=(-2, -1), keepdim=True) / colsum.clamp_min(EPS)
        H = scale.clamp_min(EPS).expand(V.shape[0], steps[0][1].shape[0], V.shape[-1])
        for N, G in steps:
            H = H * N / (G @ H + l1).clamp_min(TINY)
        return H


class UnfoldedCoupled(nn.Module):
    """`CoupledDeblur` unfolded into ``layers`` multiplicative layers (module docstring).

    Parameters (keyword-only, stored in ``init_kwargs``)
    ----------
    in_channels : 1 or 3.
    size, context, stride : patch side, extra context pixels on every side, grid step.
    ranks : ``(r1, …, rk)`` of the ``k``-layer model.
    layers : ``K``, the unfolded multiplicative updates.
    untie : ``"none"`` (tied), ``"deep"`` (``W1`` shared, ``W2 … Wk`` per layer) or ``"all"``.
    nonneg : ``"exp"``, ``"softplus"`` or ``"multiplicative"`` (`dnmf.deblur.nonneg`).
    contrast_floor, blur_weight, l1 : as `CoupledDeblur`'s.
    stages : cascade length.
    init : ``"nmf"`` or ``"random"``: how the network is meant to start. The constructor
        always gives the random start; ``"nmf"`` records that the caller starts it from a
        fitted `CoupledDeblur` (`load_coupled`, `from_coupled`), which needs the data.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        size: int = 6,
        context: int = 3,
        stride: int = 3,
        ranks: Sequence[int] = (32, 16),
        layers: int = 5,
        untie: str = "deep",
        nonneg: str = "exp",
        contrast_floor: float = 0.02,
        blur_weight: float = 1.0,
        l1: float = 0.0,
        stages: int = 1,
        init: str = "nmf",
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (gray) or 3 (RGB), got {in_channels!r}")
        _positive_int("size", size)
        _positive_int("context", context, 0)
        _positive_int("stride", stride)
        _positive_int("layers", layers)
        _positive_int("stages", stages)
        if stride > size:
            raise ValueError(f"stride ({stride}) must not exceed size ({size})")
        ranks = [int(r) for r in ranks]
        if not ranks or min(ranks) < 1:
            raise ValueError(f"ranks must be one or more positive ints, got {ranks!r}")
        if untie not in UNTIE:
            raise ValueError(f"untie must be one of {UNTIE}, got {untie!r}")
        if untie == "deep" and len(ranks) < 2:
            raise ValueError(
                "untie='deep' unties W2 … Wk and needs ranks of 2 or more layers; "
                f"got ranks={ranks} (use untie='all' or 'none')"
            )
        check_nonneg(nonneg)
        if not (contrast_floor > 0 and blur_weight > 0 and l1 >= 0):
            raise ValueError(
                f"contrast_floor and blur_weight must be > 0 and l1 >= 0, got "
                f"{contrast_floor}, {blur_weight}, {l1}"
            )
        self.in_channels = in_channels
        self.init_kwargs: dict[str, Any] = dict(
            in_channels=in_channels, size=size, context=context, stride=stride, ranks=ranks,
            layers=layers, untie=untie, nonneg=nonneg, contrast_floor=float(contrast_floor),
            blur_weight=float(blur_weight), l1=float(l1), stages=stages, init=init,
        )  # fmt: skip
        self.size, self.stride, self.l1 = size, stride, float(l1)
        # CoupledDeblur's own feature code (one home for the features); it holds no factors
        self._featurizer = CoupledDeblur(
            size=size, context=context, stride=stride, ranks=ranks, normalise="contrast",
            contrast_floor=contrast_floor, blur_weight=blur_weight,
        )  # fmt: skip
        m_blur = 2 * in_channels * (size + 2 * context) ** 2
        m_out = 2 * in_channels * size**2
        self.stages = nn.ModuleList(
            _Stage(m_blur=m_blur, m_out=m_out, ranks=ranks, layers=layers, untie=untie,
                   nonneg=nonneg)
            for _ in range(stages)
        )  # fmt: skip
        self.reset_random()

    def stage_list(self) -> list[_Stage]:
        """The cascade's stages, in order."""
        return [cast(_Stage, st) for st in self.stages]

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def reset_random(self, generator: torch.Generator | None = None) -> None:
        """Random nonnegative factors (uniform on [0.5, 1.5], every column scaled to unit
        norm); the output dictionary's two halves equal (small), so the network starts as the
        identity.

        Unit columns keep the codes of order one: with raw entries near 1 the product
        ``W1 W2`` has columns of norm near ``r1·√m``, the codes come out near 1e-3, and the
        output dictionary's gradient (``∝ h``) is then too small for training to leave the
        identity (the first layers get no gradient at all until the two halves differ)."""
        for st in self.stage_list():
            factors = [st.first_factor(0), *st.deep_factors(0)]
            Ws = [0.5 + torch.rand(f.raw.shape, generator=generator) for f in factors]
            Ws = [W / W.norm(dim=0, keepdim=True) for W in Ws]
            m_out, r = st.out.raw.shape
            half = 0.01 * torch.rand(m_out // 2, r, generator=generator)
            st.set_factors(Ws, torch.cat([half, half]))

    def coupled_params(self) -> dict[str, Any]:
        """The `CoupledDeblur` settings whose fitted model initialises this network
        (`load_coupled`); the fit settings (patches, iterations) are the caller's."""
        k = self.init_kwargs
        return dict(
            size=k["size"], context=k["context"], stride=k["stride"], ranks=list(k["ranks"]),
            target="residual", normalise="contrast", contrast_floor=k["contrast_floor"],
            blur_weight=k["blur_weight"], l1=k["l1"], coder="mu", code_iter=k["layers"],
            stages=k["stages"],
        )  # fmt: skip

    @torch.no_grad()
    def load_coupled(self, model: CoupledDeblur) -> UnfoldedCoupled:
        """Start every layer (and every stage) from a fitted `CoupledDeblur`'s factors; its
        settings must be this network's (`coupled_params`, the grid step being its restore
        step)."""
        have = model.get_params()
        have["stride"] = have["restore_stride"] or have["stride"]
        diff = [
            f"{k}={have.get(k)!r} (the network's: {v!r})"
            for k, v in self.coupled_params().items()
            if k not in ("coder", "code_iter") and have.get(k) != v
        ]
        if diff:
            raise ValueError("the CoupledDeblur does not match this network: " + "; ".join(diff))
        if model.channels_ != self.in_channels:
            raise ValueError(
                f"the CoupledDeblur was fitted on {model.channels_}-channel images, "
                f"the network has in_channels={self.in_channels}"
            )
        cm: CoupledDeblur | None = model
        for st in self.stage_list():
            if cm is None or cm.Ws_ is None or cm.W_out_ is None:
                raise ValueError("the CoupledDeblur is not fitted: call fit() or load() first")
            mb = st.first_factor(0).raw.shape[0]
            st.set_factors([cm.Ws_[0][:mb], *cm.Ws_[1:]], cm.W_out_)
            cm = cm.next_
        return self

    @classmethod
    def from_coupled(
        cls, model: CoupledDeblur, *, layers: int, untie: str = "deep", nonneg: str = "exp"
    ) -> UnfoldedCoupled:
        """The network of ``layers`` multiplicative layers that starts as ``model`` (a fitted
        `CoupledDeblur` with the residual target and contrast normalisation)."""
        p = model.get_params()
        if p["target"] != "residual" or p["normalise"] != "contrast":
            raise ValueError(
                "only the residual target with contrast normalisation is unfolded, got "
                f"target={p['target']!r}, normalise={p['normalise']!r}"
            )
        net = cls(
            in_channels=int(model.channels_ or 3), size=p["size"], context=p["context"],
            stride=p["restore_stride"] or p["stride"], ranks=p["ranks"], layers=layers,
            untie=untie, nonneg=nonneg, contrast_floor=p["contrast_floor"],
            blur_weight=p["blur_weight"], l1=p["l1"], stages=p["stages"],
        )  # fmt: skip
        return net.to(model.device).load_coupled(model)

    # ------------------------------------------------------------------ training hooks
    def make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """Adam on ``θ`` (``nonneg="exp"``/``"softplus"``), the multiplicative step on the
        factors themselves (``"multiplicative"``): `dnmf.deblur.nonneg`."""
        if self.init_kwargs["nonneg"] == "multiplicative":
            return MultiplicativeStep(nonneg_param_groups(self), lr=lr)
        return torch.optim.Adam(self.parameters(), lr=lr)

    # ------------------------------------------------------------------ forward
    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Restore ``y`` (N, C, H, W) in [0, 1]; the last stage's output is not clamped."""
        if y.ndim != 4 or y.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W), got {tuple(y.shape)}")
        h, w = int(y.shape[-2]), int(y.shape[-1])
        grid = PatchGrid(h, w, self.size, self.stride)
        x = y
        for i, st in enumerate(self.stage_list()):
            if i:  # CoupledDeblur clamps every stage's output
                x = x.clamp(0.0, 1.0)
            x = self._stage(st, x, grid)
        return x

    def _stage(self, st: _Stage, y: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
        V, Bc, mu = self._featurizer._features(y, grid)
        O = st.out() @ st.codes(V, self.l1)
        m = O.shape[-2] // 2
        return grid.assemble(Bc + (O[..., :m, :] - O[..., m:, :]) * mu)

    def first_layer_atoms(self, stage: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(before, after)`` training: the first layer's blurred-feature dictionary."""
        st = self.stage_list()[stage]
        return st.init_first.detach(), st.dictionary(0).detach()

    def output_atoms(self, stage: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(before, after)`` training: the output dictionary ``W_out``."""
        st = self.stage_list()[stage]
        return st.init_out.detach(), st.out().detach()
