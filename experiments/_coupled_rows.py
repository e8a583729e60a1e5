"""The coupled-dictionary rows of the deblurring ablation (``--only coupled``), validation only.

Moved unchanged from the first ablation script: the coupled (blind) variants, each changing
one thing from the row before, and the ridge ceiling. :mod:`experiments.deblur_ablation` runs
them.
"""

from __future__ import annotations

from typing import Any

import torch

from dnmf.deblur.patches import PatchGrid

SIX = dict(size=6, context=3, stride=3, coder="hals", code_iter=10)
BIG = dict(n_patches=16000, fit_iter=60)

# (label, settings) — each row changes one thing from the row it follows where possible.
COUPLED: list[tuple[str, dict[str, Any]]] = [
    (
        "k=1 r128, sharp target, no context, no normalisation (textbook)",
        dict(target="sharp", context=0, normalise="none", refit=False),
    ),
    ("k=1 r128, residual split", dict(context=0, normalise="none", refit=False)),
    ("+ 16px blurred context (8px predicted)", dict(context=4, normalise="none", refit=False)),
    ("+ mean normalisation", dict(context=4, normalise="mean", refit=False)),
    (
        "+ contrast normalisation (mean/std, ± split)",
        dict(context=4, normalise="contrast", refit=False),
    ),
    (
        "+ output block refit on test-time codes [nmf-coupled]",
        dict(context=4, normalise="contrast"),
    ),
    ("  blurred block weight 2", dict(context=4, normalise="contrast", blur_weight=2.0)),
    ("  patch 6px (context 3)", dict(size=6, context=3, stride=3, normalise="contrast")),
    ("k=2 r(128,64) ≈ same parameters [dnmf-coupled]", dict(ranks=(128, 64))),
    ("k=3 r(128,64,32)", dict(ranks=(128, 64, 32))),
    ("k=1 r256 (2x parameters)", dict(ranks=(256,))),
    # second round (6 px patches, HALS coding; see docs/notes.md)
    ("6px k=1 r128, MU coding 60 it", dict(SIX, ranks=(128,), coder="mu", code_iter=60)),
    ("6px k=1 r128, HALS coding 10 sweeps", dict(SIX, ranks=(128,))),
    ("6px k=1 r128, HALS 10, restore stride 2", dict(SIX, ranks=(128,), restore_stride=2)),
    ("6px k=1 r256, 16k patches, HALS 10 [nmf-coupled]", dict(SIX, **BIG, ranks=(256,))),
    ("6px k=2 r(256,128), 16k patches, HALS 10, one stage", dict(SIX, **BIG, ranks=(256, 128))),
    ("6px k=3 r(256,128,64), 16k patches, HALS 10", dict(SIX, **BIG, ranks=(256, 128, 64))),
    ("6px k=1 r256, two stages", dict(SIX, **BIG, ranks=(256,), stages=2)),
    (
        "6px k=2 r(256,128), two stages (stage 2 trained on stage-1 outputs) [dnmf-coupled]",
        dict(SIX, **BIG, ranks=(256, 128), stages=2),
    ),
]
RIDGE = [
    (
        "ridge ceiling: linear map from the 12px normalised context to the residual "
        "(signed, not NMF), 50k patches",
        dict(size=6, context=3, stride=3, n_patches=50000, lam=1.0),
    )
]
COUPLED_BASE = dict(
    size=8,
    context=4,
    stride=4,
    ranks=(128,),
    target="residual",
    normalise="contrast",
    refit=True,
    n_patches=12000,
    fit_iter=80,
    code_iter=60,
)


def ridge_ceiling(
    b_tr: torch.Tensor,
    s_tr: torch.Tensor,
    y: torch.Tensor,
    *,
    size: int,
    context: int,
    stride: int,
    n_patches: int,
    lam: float,
    seed: int = 0,
    floor: float = 0.02,
) -> torch.Tensor:
    """A linear (signed) ridge regression from the contrast-normalised blurred context to the
    normalised residual — the same features and target as the coupled NMF, without the
    nonnegative coding: an upper reference for what the NMF coding loses (not a method)."""

    def feats(b):
        grid = PatchGrid(b.shape[-2], b.shape[-1], size, stride)
        B = grid.extract(b, context=context, mode="reflect")
        Bc = grid.extract(b, mode="reflect")
        mu = B.std(dim=-2, keepdim=True) + floor
        Z = (B - B.mean(dim=-2, keepdim=True)) / mu
        return grid, torch.cat([Z, torch.ones_like(Z[:, :1])], dim=1), Bc, mu

    _, Z, Bc, mu = feats(b_tr)
    S = PatchGrid(b_tr.shape[-2], b_tr.shape[-1], size, stride).extract(s_tr, mode="reflect")
    T = (S - Bc) / mu
    Z = Z.permute(1, 0, 2).reshape(Z.shape[1], -1).double()
    T = T.permute(1, 0, 2).reshape(T.shape[1], -1).double()
    g = torch.Generator().manual_seed(int(seed))
    sel = torch.randperm(Z.shape[1], generator=g)[:n_patches]
    Z, T = Z[:, sel], T[:, sel]
    R = torch.linalg.solve(Z @ Z.T + lam * torch.eye(Z.shape[0], dtype=Z.dtype), Z @ T.T).T.float()
    grid, Zy, Bcy, muy = feats(y)
    return grid.assemble(Bcy + (R @ Zy) * muy).clamp(0, 1)
