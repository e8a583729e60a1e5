"""Non-blind Deep NMF prior with half-quadratic splitting, unfolded and trained end to end.

`dnmf.deblur.prior.DeepNMFPrior` restores by ``S`` stages of half-quadratic splitting
(`dnmf.deblur.hqs`): an exact x-step with the blur operator, ``(AᵀA + μ_s) x = Aᵀy + μ_s z``,
then a z-step that codes every overlapping, mean-removed patch of ``x`` with the Deep NMF
dictionary (semi-NMF codes, `dnmf.deblur.nmf_patch_prior`) by ``code_iter`` HALS sweeps with
the L1 weight of the stage's noise level ``σ_s``, and averages the patches back. As in unrolled
HQS (USRNet, DPIR), `UnfoldedPrior` makes every stage a layer and learns, by backpropagation
through the whole restoration, the per-stage x-step weights ``μ_s`` and noise levels ``σ_s``
(both positive, as ``exp`` of a learned number) and the dictionary ``W1 W2 … Wk``, one per
stage (``untie="stages"``) or one for all (``"none"``), nonnegative in one of the ways of
`dnmf.deblur.nonneg`.

What is computed is `DeepNMFPrior`'s own code wherever it is differentiable: the x-step of
`dnmf.deblur.hqs` (FFT for an impulse response symmetric about its centre, conjugate
gradients on the operator otherwise, differentiated through its iterations), the patch
extraction, colour rotation and averaging of `dnmf.deblur.patch_denoise.PatchDenoiser`, the
product dictionary of `dnmf.deblur.nmf_patch_prior.NMFPatchPrior`. The HALS sweeps are written
here with out-of-place rows (the library's sweep updates the codes in place, which autograd
cannot differentiate): the same exact row-wise minimisation, in the same order.

`UnfoldedPrior.from_prior` (or `load_prior`) starts the network from a fitted
`DeepNMFPrior` (product depth, semi-NMF codes, mean removal): untrained, the network restores
exactly as that model does (tested to float tolerance). The operator is not a parameter: the
caller sets it (`set_operator`) before a forward pass, and it is not saved with the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from .._solvers.hals_kernels import hals_rows
from .hqs import LinearOperator, _SymmetricFFTStep, annealing_schedule, solve_data_step
from .nmf_patch_prior import SIGMA_REF, NMFPatchPrior
from .nonneg import MultiplicativeStep, NonnegMatrix, check_nonneg, nonneg_param_groups
from .patch_denoise import PatchDenoiser
from .prior import DeepNMFPrior

__all__ = ["UNTIE_PRIOR", "UnfoldedPrior", "hals_sweeps"]

UNTIE_PRIOR = ("none", "stages")
INITS = ("nmf", "random")
#: images whose patches `PatchDenoiser` codes together: all of a forward pass (the codes of one
#: stage start the next one's sweeps, so the batch is never split)
_ALL = 1 << 30


#: columns swept together: a code block of r × CHUNK floats (and its adjoint) stays in cache,
#: as in `dnmf.deblur.nmf_patch_prior` (the columns are independent problems)
CHUNK = 4096
#: rows of a sweep's adjoint handled together (`_sweep_adjoint`)
ROW_BLOCK = 16


def _inverse_diagonal(G: torch.Tensor) -> torch.Tensor:
    """``1 / G_tt`` where ``G_tt > 0``, else 0 (a row without curvature is left as it is)."""
    diag = G.diagonal()
    return torch.where(diag > 0, 1.0 / diag.clamp_min(torch.finfo(G.dtype).tiny), 0.0 * diag)


def _sweep_adjoint(
    lam: torch.Tensor,
    before: torch.Tensor,
    after: torch.Tensor,
    G: torch.Tensor,
    inv: list[float],
    grads: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """The adjoint of one HALS sweep of a column block (`_HALSSweeps`): ``lam`` is the adjoint
    of the codes ``after`` the sweep; returns that of the codes ``before`` it and adds the
    sweep's share to ``grads = (dC block, dG, dl1)``.

    Only the scaled row adjoints ``Γ_t = g_t/G_tt`` need the rows in reverse order (row ``t``
    needs the ``Γ`` of the rows after it: one matrix-vector product); everything else is a
    few matrix products of the whole block afterwards.
    """
    dC, dG, dl1 = grads
    r = lam.shape[0]
    gam = torch.zeros_like(lam)
    out = torch.empty_like(lam)
    # Γ_t = λ_t ⊙ [u_t > 0] / G_tt, the mask and the scale taken once for the block
    scale = (after > 0).to(lam.dtype) * torch.tensor(inv, dtype=lam.dtype, device=lam.device)[
        :, None
    ]
    for hi in range(r, 0, -ROW_BLOCK):  # rows in blocks: what the later blocks pass is a GEMM
        lo = max(0, hi - ROW_BLOCK)
        cur = torch.addmm(lam[lo:hi], G[hi:, lo:hi].T, gam[hi:], alpha=-1.0)
        for t in reversed(range(lo, hi)):
            row = torch.addmv(cur[t - lo], gam[t + 1 : hi].T, G[t + 1 : hi, t], alpha=-1.0)
            if inv[t] == 0.0:  # the row was left as it was: its adjoint passes through
                out[t] = row
                continue
            torch.mul(row, scale[t], out=gam[t])
            out[t] = 0.0
    out -= torch.tril(G, -1) @ gam  # rows before t saw the codes row t started from
    dC += gam
    dl1 -= gam.sum(dtype=torch.float64)
    dG -= torch.tril(gam @ after.T) + torch.triu(gam @ before.T, 1)
    return out


class _HALSSweeps(torch.autograd.Function):
    """``n_iter`` HALS sweeps of the codes as one differentiable function of ``(C, G, l1, H0)``.

    Forward: the library's own sweep (`dnmf._solvers.hals_kernels.hals_rows`, in place on a
    copy, in column blocks of `CHUNK`), keeping the codes before every sweep. Backward: the
    sweeps' adjoint (`_sweep_adjoint`). Row ``t`` computes (``a = 1/G_tt``)

        u_t = a·(C_t − l1 − Σ_{j≠t} G_tj h_j),   h_t ← max(0, u_t)

    (``h_t``'s own term cancels), so with ``λ`` the adjoint of the row's output and
    ``Γ_t = a·λ_t ⊙ [u_t > 0]``: ``∂C_t += Γ_t``, ``∂l1 −= ΣΓ_t``, ``∂G_tj −= ⟨Γ_t, h_j⟩`` for
    the codes ``h_j`` the row saw (``∂G_tt −= ⟨Γ_t, u_t⟩``), and the row passes ``−G_tj Γ_t``
    to the adjoint of every other row's codes; its own input codes get none. Rows with
    ``G_tt = 0`` pass their codes through.
    """

    @staticmethod
    def forward(ctx, C, G, l1, H0, n_iter):  # type: ignore[override]
        Gd = G.detach().contiguous()
        X = H0.detach().clone().contiguous()
        snaps = []
        for _ in range(int(n_iter)):
            snaps.append(X.clone())
            for j in range(0, X.shape[1], CHUNK):
                Xj = X[:, j : j + CHUNK].contiguous()
                hals_rows(Xj, Gd, C.detach()[:, j : j + CHUNK].contiguous(), l1=float(l1))
                X[:, j : j + CHUNK] = Xj
        ctx.save_for_backward(G, X, *snaps)
        return X

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        G, X_end, *snaps = ctx.saved_tensors
        G = G.detach()
        inv = _inverse_diagonal(G).tolist()
        dC = torch.zeros_like(X_end)
        dG = torch.zeros_like(G)
        dl1 = torch.zeros((), dtype=torch.float64, device=G.device)
        dH = torch.empty_like(X_end)
        for j in range(0, X_end.shape[1], CHUNK):
            cols = slice(j, j + CHUNK)
            lam = grad[:, cols].contiguous()
            after = X_end[:, cols]
            for before_all in reversed(snaps):
                before = before_all[:, cols].contiguous()
                lam = _sweep_adjoint(lam, before, after, G, inv, (dC[:, cols], dG, dl1))
                after = before
            dH[:, cols] = lam
        return dC, dG, dl1.to(G.dtype), dH, None


def hals_sweeps(
    V: torch.Tensor,
    D: torch.Tensor,
    l1: torch.Tensor | float,
    n_iter: int,
    H: torch.Tensor | None = None,
) -> torch.Tensor:
    """``n_iter`` HALS sweeps on ``min_{H≥0} ½‖V − D H‖² + l1·ΣH`` from ``H`` (default 0),
    differentiable in ``V``, ``D``, ``l1`` and ``H``: each row ``t`` in order becomes

        h_t ← max(0, h_t + (C_t − l1 − (G H)_t) / G_tt),   C = DᵀV, G = DᵀD

    (`dnmf._solvers.hals_kernels.hals_rows`; rows without curvature are left as they are).
    ``D`` may be signed.
    """
    C, G = D.T @ V, D.T @ D
    H0 = torch.zeros_like(C) if H is None else H
    l1t = torch.as_tensor(l1, dtype=C.dtype, device=C.device)
    return cast(torch.Tensor, _HALSSweeps.apply(C, G, l1t, H0, int(n_iter)))


def _l1(sparsity: float, power: float, sigma: torch.Tensor) -> torch.Tensor:
    """The z-step's L1 weight at noise level ``sigma``, as `NMFPatchPrior.code` sets it."""
    return sparsity * sigma * (sigma / SIGMA_REF) ** (power - 1.0)


class _Coder:
    """The patch prior of one forward pass: ``coder(P, sigma)`` for `PatchDenoiser`, coding
    with the dictionary of the current stage and warm-starting from the previous codes."""

    def __init__(self, net: UnfoldedPrior) -> None:
        self.net, self.stage, self.codes = net, 0, cast("torch.Tensor | None", None)

    def __call__(self, P: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        D = self.net.signed_dictionary(self.stage)
        k = self.net.init_kwargs
        l1 = _l1(k["sparsity"], k["sparsity_power"], sigma)
        start = self.codes if self.codes is not None and self.codes.shape[1] == P.shape[1] else None
        self.codes = hals_sweeps(P, D, l1, k["code_iter"], start)
        return D @ self.codes


class UnfoldedPrior(nn.Module):
    """`DeepNMFPrior`'s half-quadratic splitting unfolded (module docstring).

    Parameters (keyword-only, stored in ``init_kwargs``)
    ----------
    in_channels : 1 or 3.
    size, stride, colour : patch side, grid step, ``"opponent"`` or ``"rgb"`` patches.
    ranks : ``(r1, …, rk)`` of the Deep NMF dictionary (used as the product ``W1 … Wk``).
    n_stages, code_iter : HQS stages; HALS sweeps per stage.
    sparsity, sparsity_power : the L1 weight ``sparsity·σ·(σ/0.02)^(power−1)``.
    sigma_max, sigma_min, weight : the starting noise levels (geometric) and ``μ_s = weight/σ_s²``.
    untie : ``"stages"`` (a dictionary per stage) or ``"none"``.
    nonneg : ``"exp"``, ``"softplus"`` or ``"multiplicative"`` (`dnmf.deblur.nonneg`).
    init : ``"nmf"`` (the caller starts it from a fitted `DeepNMFPrior`) or ``"random"``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        size: int = 6,
        stride: int = 2,
        colour: str = "opponent",
        ranks: Sequence[int] = (128, 64),
        n_stages: int = 8,
        code_iter: int = 2,
        sparsity: float = 1.0,
        sparsity_power: float = 1.5,
        sigma_max: float = 0.1,
        sigma_min: float = 0.005,
        weight: float = 2e-7,
        untie: str = "stages",
        nonneg: str = "exp",
        init: str = "nmf",
    ) -> None:
        super().__init__()
        self.init_atoms: torch.Tensor
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (gray) or 3 (RGB), got {in_channels!r}")
        for name, v in (("size", size), ("stride", stride), ("n_stages", n_stages)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if isinstance(code_iter, bool) or not isinstance(code_iter, int) or code_iter < 1:
            raise ValueError(f"code_iter must be an int >= 1, got {code_iter!r}")
        if stride > size:
            raise ValueError(f"stride ({stride}) must not exceed size ({size})")
        if colour not in ("opponent", "rgb"):
            raise ValueError(f"colour must be 'opponent' or 'rgb', got {colour!r}")
        ranks = [int(r) for r in ranks]
        if not ranks or min(ranks) < 1:
            raise ValueError(f"ranks must be one or more positive ints, got {ranks!r}")
        if untie not in UNTIE_PRIOR:
            raise ValueError(f"untie must be one of {UNTIE_PRIOR}, got {untie!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        check_nonneg(nonneg)
        if not (sparsity >= 0 and weight > 0):
            raise ValueError(f"sparsity must be >= 0 and weight > 0, got {sparsity}, {weight}")
        sigmas = annealing_schedule(sigma_max, sigma_min, n_stages)
        self.in_channels = in_channels
        self.init_kwargs: dict[str, Any] = dict(
            in_channels=in_channels, size=size, stride=stride, colour=colour, ranks=ranks,
            n_stages=n_stages, code_iter=code_iter, sparsity=float(sparsity),
            sparsity_power=float(sparsity_power), sigma_max=float(sigma_max),
            sigma_min=float(sigma_min), weight=float(weight), untie=untie, nonneg=nonneg,
            init=init,
        )  # fmt: skip
        d = size * size * (1 if colour == "opponent" else in_channels)
        dims = [2 * d, *ranks]
        n_dict = n_stages if untie == "stages" else 1
        self.dictionaries = nn.ModuleList(
            nn.ModuleList(NonnegMatrix((dims[i], dims[i + 1]), nonneg) for i in range(len(ranks)))
            for _ in range(n_dict)
        )
        self.log_sigma = nn.Parameter(torch.log(torch.tensor(sigmas)))
        self.log_mu = nn.Parameter(torch.log(torch.tensor([weight / s**2 for s in sigmas])))
        # the first stage's factors as they started, for the before/after figures (not learned)
        self.register_buffer("init_atoms", torch.zeros(d, ranks[-1]))
        self.operator: LinearOperator | None = None
        self.reset_random()

    # ------------------------------------------------------------------ dictionaries
    def factors(self, stage: int) -> list[NonnegMatrix]:
        """``[W1, …, Wk]`` of ``stage`` (the shared ones when ``untie="none"``)."""
        group = cast(nn.ModuleList, self.dictionaries[min(stage, len(self.dictionaries) - 1)])
        return [cast(NonnegMatrix, f) for f in group]

    def signed_dictionary(self, stage: int) -> torch.Tensor:
        """The signed atoms ``(d, r_k)`` the z-step codes with at ``stage``: the unit-norm
        columns of ``W1 … Wk``, ON half minus OFF half (`NMFPatchPrior`'s own code)."""
        return NMFPatchPrior([f() for f in self.factors(stage)], depth="product").signed

    @torch.no_grad()
    def set_factors(self, Ws: Sequence[torch.Tensor]) -> None:
        """Every stage's dictionary ``[W1, …, Wk]``; remembered as the starting atoms."""
        for s in range(len(self.dictionaries)):
            for f, W in zip(self.factors(s), Ws):
                f.set_(W)
        self.init_atoms.copy_(self.signed_dictionary(0))

    @torch.no_grad()
    def reset_random(self, generator: torch.Generator | None = None) -> None:
        """Random nonnegative factors (uniform on [0.5, 1.5])."""
        self.set_factors(
            [0.5 + torch.rand(f.raw.shape, generator=generator) for f in self.factors(0)]
        )

    def prior_params(self) -> dict[str, Any]:
        """The `DeepNMFPrior` settings whose fitted model starts this network (`load_prior`);
        the fit settings (patches, iterations) are the caller's."""
        k = self.init_kwargs
        keys = ("size", "stride", "colour", "n_stages", "code_iter", "sparsity",
                "sparsity_power", "sigma_max", "sigma_min", "weight")  # fmt: skip
        return {**{key: k[key] for key in keys}, "ranks": list(k["ranks"]),
                "coding": "semi", "depth": "product", "remove_mean": True}  # fmt: skip

    @torch.no_grad()
    def load_prior(self, model: DeepNMFPrior) -> UnfoldedPrior:
        """Start every stage from a fitted `DeepNMFPrior`: its dictionary, noise levels and
        x-step weights. Its settings must be this network's (`prior_params`) except the last
        noise level and the weight, which a run tunes on validation: they are taken from the
        model into the parameters (the constructor's values only set the random start)."""
        have = model.get_params()
        free = ("sigma_min", "weight")  # set by the validation tuning of dnmf-prior
        diff = [
            f"{k}={have.get(k)!r} (the network's: {v!r})"
            for k, v in self.prior_params().items()
            if k not in free and have.get(k) != v
        ]
        for k, v in (("warm_start", True), ("mirror", False), ("debias", False), ("x_step", "fft")):
            if have.get(k) != v:
                diff.append(f"{k}={have.get(k)!r} (the network needs {v!r})")
        if diff:
            raise ValueError("the DeepNMFPrior does not match this network: " + "; ".join(diff))
        if model.channels_ != self.in_channels:
            raise ValueError(
                f"the DeepNMFPrior was fitted on {model.channels_}-channel images, "
                f"the network has in_channels={self.in_channels}"
            )
        self.set_factors(model.fitted_layers())
        sig = torch.tensor(model.sigmas(), dtype=self.log_sigma.dtype)
        self.log_sigma.copy_(sig.log())
        self.log_mu.copy_((model.weight / sig.square()).log())
        return self

    @classmethod
    def from_prior(
        cls, model: DeepNMFPrior, *, untie: str = "stages", nonneg: str = "exp"
    ) -> UnfoldedPrior:
        """The network that starts as ``model`` (a fitted `DeepNMFPrior`)."""
        p = model.get_params()
        keys = ("size", "stride", "colour", "ranks", "n_stages", "code_iter", "sparsity",
                "sparsity_power", "sigma_max", "sigma_min", "weight")  # fmt: skip
        net = cls(
            in_channels=int(model.channels_ or 3), untie=untie, nonneg=nonneg,
            **{k: p[k] for k in keys},
        )  # fmt: skip
        return net.to(model.device).load_prior(model)

    # ------------------------------------------------------------------ training hooks
    def set_operator(self, op: LinearOperator | None) -> UnfoldedPrior:
        """The degradation (``A``, ``A_adjoint``) the x-steps use; not saved with the weights."""
        if op is not None and not isinstance(op, LinearOperator):
            raise TypeError("the operator must have A(x) and A_adjoint(y) methods")
        self.operator = op
        return self

    def make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """Adam (``nonneg="exp"``/``"softplus"``), or the multiplicative step on the factors
        with Adam on the noise levels and weights (``"multiplicative"``)."""
        if self.init_kwargs["nonneg"] == "multiplicative":
            return MultiplicativeStep(nonneg_param_groups(self), lr=lr)
        return torch.optim.Adam(self.parameters(), lr=lr)

    def sigmas(self) -> torch.Tensor:
        return self.log_sigma.exp()

    def mus(self) -> torch.Tensor:
        return self.log_mu.exp()

    # ------------------------------------------------------------------ forward
    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Restore ``y`` (N, C, H, W) with the operator set by `set_operator`; the output (the
        last z-step's image) is not clamped."""
        op = self.operator
        if op is None:
            raise RuntimeError("UnfoldedPrior needs the blur operator: call set_operator(op) first")
        if y.ndim != 4 or y.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W), got {tuple(y.shape)}")
        k = self.init_kwargs
        coder = _Coder(self)
        # σ reaches the coder as a tensor (it is learned): PatchDenoiser passes it through
        den = PatchDenoiser(
            coder,  # type: ignore[arg-type]
            size=k["size"],
            stride=k["stride"],
            colour=k["colour"],
            batch=_ALL,
        )
        with torch.no_grad():  # the operator's probe and Aᵀy do not depend on the parameters
            fft = _SymmetricFFTStep(op, y)
            aty = None if fft.symmetric else op.A_adjoint(y)
        z, x = y, None
        for s, (sigma, mu) in enumerate(zip(self.sigmas(), self.mus())):
            if aty is None:
                x = fft(z, mu)
            else:  # as hqs_deblur: CG on the operator, from the previous stage's solution
                start = fft(z, mu) if x is None else x
                x, _ = solve_data_step(op, aty + mu * z, mu, start)  # type: ignore[arg-type]
            coder.stage = s
            z = den(x, sigma)  # type: ignore[arg-type]
        return z

    def atoms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(before, after)`` training: the first stage's signed atoms."""
        return self.init_atoms.detach(), self.signed_dictionary(0).detach()

    def extra_repr(self) -> str:
        return f"stages={self.init_kwargs['n_stages']}, untie={self.init_kwargs['untie']!r}"
