"""Layer-wise cross-validation of deep candidates: each layer's rank by its own held-out error.

The joint model ``W1 W2 … Wk H`` with ``r1 ≥ … ≥ rk`` can represent exactly the nonnegative
matrices of nonnegative rank ``≤ rk`` (any ``W ≥ 0`` is ``[W, 0] · [I; 0]``), so the held-out
error of the product tells ``rk`` apart but not ``r1 … r(k-1)``: candidates that differ only
there fit the same class of matrices and differ only by how the optimisation went. What tells
them apart is the layer-wise structure deep NMF is built from: layer 1 factorizes ``V ≈ W1 H1``
(its held-out error on ``V`` is a one-layer search over ``r1``), layer 2 factorizes the codes
``H1 ≈ W2 H2`` (its held-out error on entries of ``H1``), and so on. This module scores layers
``2 … k``: for every fit, the codes its layer-wise pretraining fitted
(`dnmf._rank_selection.cv_fits`) are held out i.i.d. (fold ``f`` of the fit's own fold),
refitted with the mask, and scored in the model's β-divergence per held-out entry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._init import init_layer, make_generator
from .._solvers import FitSettings, run_solver
from .._solvers.loss import beta_divergence
from .holdout import entry_folds


def code_masks(
    r: int, n: int, holdout: float, folds: int, seed: int, layer: int
) -> list[torch.Tensor]:
    """Held-out entries of an ``r × n`` code matrix for every fold (i.i.d., disjoint folds);
    one seed per (layer, shape), so every candidate with that prefix sees the same folds."""
    rng = np.random.default_rng([seed, layer, r, n])
    return [torch.as_tensor(E) for E in entry_folds(r, n, holdout, folds, rng)]


def layer_scores(
    X: torch.Tensor,
    r: int,
    layer: int,
    *,
    heldout: Sequence[torch.Tensor],
    restarts: int,
    seeds: np.ndarray,
    fit: FitSettings,
) -> np.ndarray:
    """Held-out β-divergence per entry of masked fits ``X ≈ W H`` (rank ``r``) of a batch of
    code matrices ``X`` (F·S, r_prev, n), fit ``g`` holding out ``heldout[g // S]``; ``fit``:
    the layer's pretraining settings (`FitSettings.pretraining`)."""
    B = X.shape[0]
    E = torch.stack([heldout[g // restarts] for g in range(B)]).to(X.device)
    M = (~E).to(X.dtype)
    # Codes carry the scale NMF leaves free (W D, D⁻¹ H): put every row on one scale (the RMS
    # of its observed entries), so that no row's scale decides the per-entry loss.
    rms = ((X.square() * M).sum(dim=-1, keepdim=True) / M.sum(dim=-1, keepdim=True)).sqrt()
    X = X / torch.where(rms > 0, rms, torch.ones_like(rms))
    Ws, Hs = [], []
    for g in range(B):
        gen = make_generator(int(seeds.flat[g]) + layer)
        W, H = init_layer(X[g] * M[g], r, fit.init, gen)
        Ws.append(W)
        Hs.append(H)
    W3, H3 = torch.stack(Ws), torch.stack(Hs)
    run_solver(X, [W3], H3, fit, mask=M)
    err = beta_divergence(X, W3 @ H3, fit.beta, E.to(X.dtype), fit.eps)
    return (err / E.sum(dim=(-2, -1))).cpu().numpy()


def choose_layerwise(
    ranks: Sequence[tuple[int, ...]],
    scores: Sequence[np.ndarray],
    rule: str,
    choose,
) -> int:
    """Index of the tuple chosen layer by layer: ``r1`` by the layer-1 scores, then ``r2``
    among the tuples starting with the chosen ``r1`` by the layer-2 scores, and so on.

    ``scores[l]`` is (C, N): every fit's held-out loss of layer ``l + 1`` (equal for tuples that
    share the first ``l + 1`` ranks); ``choose(mean, se, complexity, rule)`` applies the rule.
    """
    prefix: tuple[int, ...] = ()
    k = len(ranks[0])
    for l in range(k):
        options: dict[int, int] = {}  # r_l -> first tuple index with prefix + (r_l,)
        for c, r in enumerate(ranks):
            if r[:l] == prefix and r[l] not in options:
                options[r[l]] = c
        values = sorted(options)
        rows = np.stack([scores[l][options[v]] for v in values])
        n = rows.shape[1]
        se = rows.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(len(values))
        pick = choose(rows.mean(axis=1), se, np.asarray(values), rule)
        prefix = (*prefix, values[pick])
    return list(ranks).index(prefix)
