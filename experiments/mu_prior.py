"""The first Deep NMF prior, kept as an ablation: multiplicative updates through the blur.

It lives with the experiments, outside the installed package: `experiments.deblur_ablation`
runs it as one row of the prior ablation (``--match "multiplicative"``), with the settings and
selection grids below (``MU_SETTINGS``, ``MU_START_FACTORS``, ``MU_ITER_GRID``). The benchmark's
``dnmf-prior`` is `dnmf.deblur.prior.DeepNMFPrior` only.

A dictionary ``W = W1 W2 … Wk`` of sharp, contrast-normalised patches (plus one constant
atom per channel) is learned from sharp images only (with `dnmf.factorize`). A blurred
batch ``y`` is restored by solving

    min_{H ≥ 0}  ½‖y − A(assemble(W H))‖² + l1·ΣH

with multiplicative updates, where ``assemble`` averages overlapping patches
(`dnmf.deblur.patches.PatchGrid`) and ``A`` is any linear operator with a nonnegative
kernel (`dnmf.deblur.hqs.LinearOperator`). With ``M = A ∘ assemble ∘ W``
(nonnegative, linear) the update is

    H ← H ⊙ Mᵀy / (MᵀM H + l1)

which keeps ``H ≥ 0`` and never increases the objective. `deblur_mu` also has a
safeguarded extrapolated variant (``accelerate=True``): the update is applied at
``Y = max(0, H + β (H − H_prev))`` and accepted only if the objective does not increase;
otherwise the step is discarded, β shrinks and the next step is a plain one from ``H``. The
accepted objectives therefore never increase either. All images of a batch are solved
together (one β and one accept/reject decision per image). It only tied Wiener on the face
benchmark; `dnmf.deblur.prior.DeepNMFPrior` (half-quadratic splitting) replaces it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import dnmf
from dnmf.deblur.codes import EPS, nonneg_codes
from dnmf.deblur.dictionary import FittedDictionary
from dnmf.deblur.hqs import LinearOperator
from dnmf.deblur.patches import PatchGrid

__all__ = [
    "DeepNMFPriorMU",
    "deblur_mu",
    "MUResult",
    "sample_patches",
    "contrast_normalise",
    "learn_dictionary",
    "MU_SETTINGS",
    "MU_START_FACTORS",
    "MU_ITER_GRID",
]

#: the settings the ablation runs it with (chosen on the validation people when it was the
#: benchmark's ``dnmf-prior``)
MU_SETTINGS: dict[str, Any] = dict(
    size=6, stride=2, ranks=(128, 96), n_patches=12000, fit_iter=50, normalise=True,
    dc_atoms=True, init="x0", coder="hals", code_iter=10, accelerate=True,
)  # fmt: skip
#: the start ``x0`` is a Wiener estimate at these multiples of the best Wiener balance ...
MU_START_FACTORS = [0.3, 0.56, 1.0]
#: ... followed by this many MU iterations; the pair best on validation is kept
MU_ITER_GRID = [5, 10, 20]


# ---------------------------------------------------------------------------- helpers
def sample_patches(
    images: torch.Tensor,
    grid_size: int,
    stride: int,
    n_patches: int | None,
    *,
    seed: int = 0,
    context: int = 0,
) -> torch.Tensor:
    """``(m, n)`` matrix of patches (one per column) drawn without replacement from ``images``."""
    n, c, h, w = images.shape
    grid = PatchGrid(h, w, grid_size, stride)
    P = grid.extract(images, context=context, mode="reflect")  # (N, m, L)
    P = P.permute(1, 0, 2).reshape(P.shape[1], -1)
    if n_patches is not None and n_patches < P.shape[1]:
        g = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(P.shape[1], generator=g)[:n_patches].to(P.device)
        P = P[:, idx]
    return P.contiguous()


def contrast_normalise(P: torch.Tensor, eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide each column (patch) by its mean; returns the scaled patches and the means."""
    mu = P.mean(dim=-2, keepdim=True).clamp_min(eps)
    return P / mu, mu


# ---------------------------------------------------------------------------- the solver
@dataclass
class MUResult:
    """Codes and the objective per image after every iteration (``history[i]`` is (N,))."""

    H: torch.Tensor
    x: torch.Tensor
    history: list[np.ndarray] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)


class _Map:
    """``M = A ∘ assemble ∘ W`` and its adjoint for a batch of images."""

    def __init__(self, op: LinearOperator, grid: PatchGrid, W: torch.Tensor, channels: int):
        self.op, self.grid, self.W, self.c = op, grid, W, channels

    def image(self, H: torch.Tensor) -> torch.Tensor:
        return self.grid.assemble(self.W @ H)

    def forward(self, H: torch.Tensor) -> torch.Tensor:
        return self.op.A(self.image(H))

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        return self.W.transpose(-1, -2) @ self.grid.assemble_adjoint(self.op.A_adjoint(r))


def _objective(y, AH, H, l1):
    f = 0.5 * (y - AH).square().sum(dim=(1, 2, 3), dtype=torch.float64)
    if l1:
        f = f + l1 * H.sum(dim=(1, 2), dtype=torch.float64)
    return f


def deblur_mu(
    y: torch.Tensor,
    op: LinearOperator,
    W: torch.Tensor,
    grid: PatchGrid,
    H0: torch.Tensor,
    *,
    n_iter: int = 100,
    l1: float = 0.0,
    accelerate: bool = True,
    beta0: float = 0.5,
    beta_max: float = 1.0,
    grow: float = 1.1,
    shrink: float = 2.0,
    record: bool = True,
    snapshots: Sequence[int] = (),
) -> MUResult:
    """Multiplicative updates on ``H`` (N, r, L) for ½‖y − A(assemble(W H))‖² + l1·ΣH.

    ``accelerate=False`` is plain MU. With ``accelerate=True`` every step is taken from an
    extrapolated point and kept only where it lowers the objective (per image), see the
    module docstring. Returns the final codes, the restored images and the objective history;
    ``snapshots`` lists iteration counts at which the current image is also kept
    (``result.snapshots[it]``), so one run can score several iteration budgets.
    """
    if (H0 < 0).any() or (W < 0).any():
        raise ValueError("W and the initial H must be nonnegative")
    n = y.shape[0]
    M = _Map(op, grid, W, y.shape[1])
    num = M.adjoint(y).clamp_min(0)  # Mᵀy (nonnegative for a nonnegative A)
    H = H0.clone().clamp_min(EPS)
    AH = M.forward(H)
    f = _objective(y, AH, H, l1)
    hist = [f.cpu().numpy()] if record else []
    beta = torch.full((n, 1, 1), float(beta0), dtype=H.dtype, device=H.device)
    H_prev = H
    Y, AY = H, AH
    acc = rej = 0
    snaps: dict[int, torch.Tensor] = {}
    want = {int(s) for s in snapshots}
    if 0 in want:
        snaps[0] = M.image(H)
    for it in range(1, int(n_iter) + 1):
        G = Y * num / (M.adjoint(AY) + l1 + EPS)
        AG = M.forward(G)
        fG = _objective(y, AG, G, l1)
        if not accelerate:
            H, AH, f = G, AG, fG
            Y, AY = H, AH
        else:
            ok = fG <= f
            acc += int(ok.sum())
            rej += int((~ok).sum())
            okb = ok.view(n, 1, 1)
            H_prev = torch.where(okb, H, H_prev)
            H = torch.where(okb, G, H)
            AH = torch.where(ok.view(n, 1, 1, 1), AG, AH)
            f = torch.where(ok, fG, f)
            beta = torch.where(okb, (beta * grow).clamp_max(beta_max), beta / shrink)
            # extrapolate from accepted images; a rejected image restarts plainly from H
            b = torch.where(okb, beta, torch.zeros_like(beta))
            Y = (H + b * (H - H_prev)).clamp_min(EPS)
            AY = M.forward(Y) if bool(ok.any()) else AH
        if record:
            hist.append(f.cpu().numpy())
        if it in want:
            snaps[it] = M.image(H)
    return MUResult(H=H, x=M.image(H), history=hist, accepted=acc, rejected=rej, snapshots=snaps)


# ---------------------------------------------------------------------------- learning
def learn_dictionary(
    sharp: torch.Tensor,
    *,
    size: int,
    ranks: Sequence[int],
    n_patches: int,
    stride: int = 2,
    normalise: bool = True,
    max_iter: int = 100,
    l1: float = 0.0,
    seed: int = 0,
    device=None,
) -> Any:
    """Deep NMF of sharp patches (``dnmf.factorize``); returns the factorization result."""
    V = sample_patches(
        sharp.to(device=device, dtype=torch.float32), size, stride, n_patches, seed=seed
    )
    if normalise:
        V, _ = contrast_normalise(V)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dnmf.ConvergenceWarning)
        init = "nndsvda" if ranks[0] <= min(V.shape) else "random"
        return dnmf.factorize(
            V,
            list(ranks),
            beta=2,
            max_iter=max_iter,
            tol=1e-5,
            init=init,
            l1=[0.0] * len(ranks) + [float(l1)],
            seed=seed,
            solver="mu",  # the solver its settings were chosen with (validation)
        )


class DeepNMFPriorMU(FittedDictionary):
    """Deep NMF patch prior for non-blind deblurring (dictionary from sharp images only).

    Parameters are keyword-only and stored as given; `fit` learns ``Ws`` (``W1…Wk``),
    `restore` runs `deblur_mu`. ``dc_atoms`` appends one constant atom per
    channel to the dictionary (the patch mean, handled by a nonnegative DC atom).
    ``stride`` is the patch grid of restoration (dictionary patches are sampled every 2 px);
    ``coder`` computes the starting codes of ``x0`` (``"hals"``: exact coordinate descent,
    ``"mu"``: multiplicative updates, ``code_iter`` sweeps/iterations); the restoration
    itself is always `deblur_mu`.
    """

    def __init__(
        self,
        *,
        size: int = 8,
        stride: int = 4,
        ranks: Sequence[int] = (128,),
        n_patches: int = 20000,
        fit_iter: int = 100,
        normalise: bool = True,
        dc_atoms: bool = True,
        l1: float = 0.0,
        n_iter: int = 60,
        accelerate: bool = True,
        init: str = "x0",
        code_iter: int = 30,
        coder: str = "mu",
        seed: int = 0,
        device=None,
    ) -> None:
        self.size, self.stride, self.ranks = int(size), int(stride), tuple(int(r) for r in ranks)
        self.n_patches, self.fit_iter, self.normalise = (
            int(n_patches),
            int(fit_iter),
            bool(normalise),
        )
        self.dc_atoms, self.l1, self.n_iter, self.accelerate = (
            bool(dc_atoms),
            float(l1),
            int(n_iter),
            bool(accelerate),
        )
        if init not in ("x0", "y", "const"):
            raise ValueError(f"init must be 'x0', 'y' or 'const', got {init!r}")
        if coder not in ("mu", "hals"):
            raise ValueError(f"coder must be 'mu' or 'hals', got {coder!r}")
        self.init, self.code_iter, self.coder, self.seed = init, int(code_iter), coder, int(seed)
        self._init_fitted(device)

    # --------------------------------------------------------------- dictionary
    def fit(self, sharp: torch.Tensor) -> DeepNMFPriorMU:
        t0 = time.perf_counter()
        res = learn_dictionary(
            sharp,
            size=self.size,
            ranks=self.ranks,
            n_patches=self.n_patches,
            normalise=self.normalise,
            max_iter=self.fit_iter,
            seed=self.seed,
            device=self.device,
        )
        self._record_fit([W.float() for W in res.Ws], res, sharp.shape[1], t0)
        return self

    def dictionary(self) -> torch.Tensor:
        """The effective dictionary ``W1…Wk`` (plus DC atoms), columns normalised to unit max."""
        Ws = self.fitted_layers()
        W = Ws[-1]
        for Wl in reversed(Ws[:-1]):
            W = Wl @ W
        W = W / W.amax(dim=0, keepdim=True).clamp_min(EPS)
        if self.dc_atoms:
            c, s2 = int(self.channels_ or 1), self.size**2
            dc = torch.zeros(c * s2, c, dtype=W.dtype, device=W.device)
            for k in range(c):
                dc[k * s2 : (k + 1) * s2, k] = 1.0
            W = torch.cat([W, dc], dim=1)
        return W

    # --------------------------------------------------------------- restoration
    def restore(
        self,
        y: torch.Tensor,
        op: LinearOperator,
        *,
        x0: torch.Tensor | None = None,
        n_iter: int | None = None,
        l1: float | None = None,
        accelerate: bool | None = None,
        init: str | None = None,
        record: bool = False,
        snapshots: Sequence[int] = (),
    ) -> MUResult:
        """Restore ``y`` (N, C, H, W); ``x0`` (a Wiener estimate, say) seeds codes (init='x0')."""
        n_iter = self.n_iter if n_iter is None else int(n_iter)
        l1 = self.l1 if l1 is None else float(l1)
        accelerate = self.accelerate if accelerate is None else bool(accelerate)
        init = self.init if init is None else init
        dev = self.device
        y = y.to(dev, torch.float32)
        W = self.dictionary().to(dev)
        grid = PatchGrid(y.shape[-2], y.shape[-1], self.size, self.stride)
        start = {"x0": x0 if x0 is not None else y, "y": y, "const": None}[init]
        if start is None:
            r = W.shape[1]
            H0 = torch.full(
                (y.shape[0], r, grid.n_patches),
                float(y.mean()) / float(W.sum(0).mean()),
                device=dev,
                dtype=torch.float32,
            )
        else:
            V = grid.extract(start.to(dev, torch.float32).clamp(0, 1), mode="reflect")
            H0 = nonneg_codes(V, W, n_iter=self.code_iter, coder=self.coder)
        return deblur_mu(
            y,
            op,
            W,
            grid,
            H0,
            n_iter=n_iter,
            l1=l1,
            accelerate=accelerate,
            record=record,
            snapshots=snapshots,
        )

    # --------------------------------------------------------------- persistence
    def get_params(self) -> dict[str, Any]:
        return dict(
            size=self.size,
            stride=self.stride,
            ranks=list(self.ranks),
            n_patches=self.n_patches,
            fit_iter=self.fit_iter,
            normalise=self.normalise,
            dc_atoms=self.dc_atoms,
            l1=self.l1,
            n_iter=self.n_iter,
            accelerate=self.accelerate,
            init=self.init,
            code_iter=self.code_iter,
            coder=self.coder,
            seed=self.seed,
        )
