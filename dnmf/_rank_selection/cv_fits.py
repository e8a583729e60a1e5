"""Every fit of a rank search: starting factors, pretraining, the batched fits and their scores.

Fit ``(candidate, fold f, restart s)`` is exactly ``dnmf.factorize(V * M_f, ranks, mask=M_f,
seed=seeds[f, s], …)`` with ``M_f`` the observed entries of fold ``f``: the same starting
factors (drawn in the same order from the same generator), the same layer-wise pretraining
and the same masked updates. Only the engine that runs the updates differs:

* ``"gram"`` (β = 2, block pattern): `dnmf._rank_selection.cv.BlockCVSolver`, all
  candidates × folds × restarts in one batched solver;
* ``"masked"`` (any β, any pattern): the registry's ``'mu'`` (`dnmf._solvers.run_solver`)
  with a 3-D masked batch per candidate (its folds × restarts), the general masked solver.

The held-out entries never reach a fit: starting factors come from ``V * M_f``, and both
engines multiply ``V`` by the mask before using it. With the user's own missing entries
(``observed``, weights in [0, 1]), ``M_f`` is ``observed`` times the fold's mask: a missing
entry is neither fitted nor scored (masked engine only).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .._init import init_layer, make_generator
from .._solvers import FitSettings, run_solver
from .._solvers.linalg import _chain
from .._solvers.loss import beta_divergence
from .cv import BlockCVSolver, run_block_cv
from .cv_layers import code_masks, layer_scores
from .holdout import BlockDesign

#: Per candidate: the k factors and H of its F·S fits, stacked (F·S, ·, ·), in fit order f·S + s.
Stack = tuple[list[torch.Tensor], torch.Tensor]


@dataclass
class SearchPlan:
    """What every fit of one search shares."""

    V: torch.Tensor  # (m, n)
    heldout: list[torch.Tensor]  # per fold, bool (m, n): True where held out
    design: BlockDesign | None  # the block pattern (None for i.i.d. entries)
    restarts: int
    seeds: np.ndarray  # (F, S) generator seed of every fold × restart
    fit: FitSettings  # every fit's settings (solver 'mu': the masked updates)
    holdout: float = 0.1  # share of held-out entries (layer-wise code folds use it too)
    code_seed: int = 0  # seeds the code folds of the layer-wise scores
    observed: torch.Tensor | None = None  # the user's mask (m, n): weights, 0 = missing

    def train_mask(self, fold: int) -> torch.Tensor:
        """Weights of the entries fold ``fold`` fits: observed and not held out."""
        M = (~self.heldout[fold]).to(self.V.dtype)
        return M if self.observed is None else M * self.observed

    def scored_mask(self, fold: int) -> torch.Tensor:
        """Weights of the entries fold ``fold`` scores: held out and observed."""
        E = self.heldout[fold].to(self.V.dtype)
        return E if self.observed is None else E * self.observed


@dataclass
class SearchFits:
    """Scores of every fit, per candidate: arrays (C, F·S), fit order f·S + s."""

    heldout: np.ndarray  # β-divergence per held-out entry
    train: np.ndarray  # β-divergence per training (observed) entry
    n_iter: np.ndarray
    converged: np.ndarray
    layers: list[np.ndarray] | None = None  # layer-wise held-out scores, (C, F·S) per layer
    seconds: dict[str, float] = field(default_factory=dict)  # time of each stage


#: Rough costs for `_pad_together`: multiply-adds per second of a dense product, and the
#: fixed cost of one candidate's small operations per sweep (≈ 40 tensor ops).
_MACS_PER_S = 5e9
_SECONDS_PER_CANDIDATE = 4e-4


def _pad_together(ranks: Sequence[tuple[int, ...]], m: int, n: int, fits: int, flops: int) -> bool:
    """Fit every candidate as one batch padded to the largest ranks?

    Zero columns of ``W1…Wk`` (and zero rows of the next factor) stay zero under the updates,
    so a padded fit is the same fit. Padding costs dense products (``flops`` products of
    ``m × n × rank`` per fit and sweep) and saves each extra candidate's fixed cost: worth it on
    small matrices, not on large ones.
    """
    if len(ranks) < 2:
        return False
    top = [max(r[l] for r in ranks) for l in range(len(ranks[0]))]
    extra = sum((top[0] - r[0]) + (top[-1] - r[-1]) for r in ranks)
    extra_s = flops * m * n * fits * extra / _MACS_PER_S
    return extra_s < (len(ranks) - 1) * _SECONDS_PER_CANDIDATE


def _pack(starts: Sequence[Stack], ranks: Sequence[tuple[int, ...]]) -> tuple[Stack, tuple]:
    """All candidates' fits as one batch (fit g, candidate q) → g·C + q, padded with zeros."""
    k = len(ranks[0])
    top = tuple(max(r[l] for r in ranks) for l in range(k))
    dims = [None, *top]  # W1 keeps V's rows

    def padded(t: torch.Tensor, rows: int | None, cols: int) -> torch.Tensor:
        out = t.new_zeros((*t.shape[:-2], rows or t.shape[-2], cols))
        out[..., : t.shape[-2], : t.shape[-1]] = t
        return out

    Ws = [
        torch.stack([padded(st[0][l], dims[l], top[l]) for st in starts], dim=1).flatten(0, 1)
        for l in range(k)
    ]
    H = torch.stack([padded(st[1], top[-1], st[1].shape[-1]) for st in starts], dim=1)
    return (Ws, H.flatten(0, 1)), top


def _unpack(fit: Stack, ranks: Sequence[tuple[int, ...]]) -> list[Stack]:
    Ws, H = fit
    C = len(ranks)
    out = []
    for q, r in enumerate(ranks):
        dims = [Ws[0].shape[-2], *r]
        Wq = [W.unflatten(0, (-1, C))[:, q, : dims[l], : r[l]] for l, W in enumerate(Ws)]
        out.append((Wq, H.unflatten(0, (-1, C))[:, q, : r[-1], :]))
    return out


class _Engine:
    """Runs masked fits of some candidates from given starts; returns the fitted stacks."""

    def __init__(self, plan: SearchPlan, kind: str):
        self.plan, self.kind = plan, kind
        V = plan.V
        if kind == "gram":
            assert plan.design is not None and plan.observed is None
            Vp = plan.design.pad(V)
            self.Vm = torch.stack(
                [Vp * (~plan.design.pad(E.to(V.dtype)).bool()).to(V.dtype) for E in plan.heldout]
            )
        else:
            S = plan.restarts
            M = torch.stack([plan.train_mask(f) for f in range(len(plan.heldout))])
            self.M3 = M.repeat_interleave(S, dim=0) if S > 1 else M

    def fit(
        self, ranks: Sequence[tuple[int, ...]], starts: Sequence[Stack], fit: FitSettings
    ) -> tuple[list[Stack], np.ndarray, np.ndarray]:
        """Fit the candidates from ``starts`` with ``fit``'s settings: (fitted stacks, n_iter
        (C, F·S), converged)."""
        p = self.plan
        m, n = p.V.shape
        fits = starts[0][1].shape[0]
        gram = self.kind == "gram"
        C = len(ranks)
        memory_ok = gram or fits * C * m * n * p.V.element_size() * 3 < (1 << 30)
        if memory_ok and _pad_together(ranks, m, n, fits, 2 if gram else 6):
            packed, top = _pack(starts, ranks)
            fitted, n_iter, conv = self._run([top], [packed], fit, copies=C)
            return (
                _unpack(fitted[0], ranks),
                n_iter.reshape(fits, C).T.copy(),
                conv.reshape(fits, C).T.copy(),
            )
        return self._run(ranks, starts, fit, copies=1)

    def _run(
        self,
        ranks: Sequence[tuple[int, ...]],
        starts: Sequence[Stack],
        fit: FitSettings,
        copies: int,
    ) -> tuple[list[Stack], np.ndarray, np.ndarray]:
        """``copies`` fits per fold × restart (packed candidates) follow each other."""
        p = self.plan
        if self.kind == "gram":
            assert p.design is not None
            solver = BlockCVSolver(
                self.Vm,
                p.design,
                list(range(len(p.heldout))),
                p.restarts * copies,
                ranks,
                [s[0] for s in starts],
                [s[1] for s in starts],
                fit.penalties,
                fit.eps,
            )
            out = run_block_cv(
                solver, max_iter=fit.max_iter, tol=fit.tol, check_every=fit.check_every
            )
            return list(zip(out.Ws, out.H)), out.n_iter, out.converged
        M3 = self.M3.repeat_interleave(copies, dim=0) if copies > 1 else self.M3
        fitted, n_iter, conv = [], [], []
        for Ws, H in starts:
            Ws, H = [W.clone() for W in Ws], H.clone()
            V3 = p.V.expand(H.shape[0], *p.V.shape)
            res = run_solver(V3, Ws, H, fit, mask=M3)
            fitted.append((Ws, H))
            n_iter.append(res.n_iter)
            conv.append(res.converged)
        return fitted, np.stack(n_iter), np.stack(conv)


def _clone_gen(state: torch.Tensor) -> torch.Generator:
    gen = torch.Generator()
    gen.set_state(state)
    return gen


def _first_layer_starts(plan: SearchPlan, r1s: Sequence[int]) -> dict[int, list]:
    """``(W1, H1, generator state after)`` of every fit, for each first rank ``r1``: the
    initialisation ``factorize`` draws first, from ``V * M_f`` and a fresh generator."""
    F, S = plan.seeds.shape
    out: dict[int, list] = {r: [] for r in r1s}
    for f in range(F):
        Vm = plan.V * plan.train_mask(f)
        for s in range(S):
            for r in r1s:
                gen = make_generator(int(plan.seeds[f, s]))
                W, H = init_layer(Vm, r, plan.fit.init, gen)
                out[r].append((W, H, gen.get_state()))
    return out


def _stack(fits: Sequence[tuple[list[torch.Tensor], torch.Tensor]]) -> Stack:
    k = len(fits[0][0])
    return [torch.stack([f[0][l] for f in fits]) for l in range(k)], torch.stack(
        [f[1] for f in fits]
    )


def _deeper_layers(
    plan: SearchPlan,
    ranks: tuple[int, ...],
    W1: torch.Tensor,
    H1: torch.Tensor,
    state,
    pretrain: bool,
) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
    """Layers 2…k of one fit from its first layer, as ``factorize`` builds them: initialised
    from the previous layer's codes and, when pretraining, fitted to them (no mask). Returns
    the factors, the codes, and the codes each layer was fitted to (``X1 = H1``, …)."""
    fit = plan.fit
    gen = _clone_gen(state)
    Ws, X, inputs = [W1], H1, []
    for l in range(1, len(ranks)):
        if pretrain and fit.beta <= 0:  # as factorize: β ≤ 0 cannot fit zeros
            X = X.clamp_min(fit.eps)
        inputs.append(X)
        W, H = init_layer(X, ranks[l], fit.init, gen)
        if pretrain:
            run_solver(X, [W], H, fit.pretraining(l))
        Ws.append(W)
        X = H
    return Ws, X, inputs


def fit_candidates(
    plan: SearchPlan, ranks: Sequence[tuple[int, ...]], engine: str, layerwise: bool = False
) -> SearchFits:
    """Fit every candidate × fold × restart and score it on its held-out and training entries;
    with ``layerwise`` (deep candidates, pretraining) also every layer on its own input."""
    k = len(ranks[0])
    t0 = time.perf_counter()
    eng = _Engine(plan, engine)
    r1s = sorted({r[0] for r in ranks})
    first = _first_layer_starts(plan, r1s)
    t_init = time.perf_counter() - t0
    if k > 1 and plan.fit.pretrain is not False:
        # Layer-1 pretraining is the same for every candidate with that r1: run it once.
        starts1 = [_stack([([W], H) for W, H, _ in first[r]]) for r in r1s]
        pre, _, _ = eng.fit([(r,) for r in r1s], starts1, plan.fit.pretraining(0))
        if layerwise:  # layer 1's own held-out error is that of its pretraining fit on V
            held1 = score(plan, pre)[0]
            layers = [np.stack([held1[r1s.index(r[0])] for r in ranks])]
        first = {
            r: [(pre[i][0][0][g], pre[i][1][g], st) for g, (_, _, st) in enumerate(first[r])]
            for i, r in enumerate(r1s)
        }
    starts, inputs = [], []
    for cand in ranks:
        fits = [
            _deeper_layers(plan, cand, W1, H1, st, pretrain=plan.fit.pretrain is not False)
            for W1, H1, st in first[cand[0]]
        ]
        starts.append(_stack([(Ws, H) for Ws, H, _ in fits]))
        inputs.append([torch.stack([f[2][l] for f in fits]) for l in range(k - 1)])
    if layerwise:
        layers += _code_layer_scores(plan, ranks, inputs)
    t1 = time.perf_counter()
    fitted, n_iter, conv = eng.fit(ranks, starts, plan.fit)
    t2 = time.perf_counter()
    heldout, train = score(plan, fitted)
    seconds = {
        "initialization": t_init,
        "pretraining": t1 - t0 - t_init,
        "fits": t2 - t1,
        "scores": time.perf_counter() - t2,
    }
    return SearchFits(heldout, train, n_iter, conv, layers if layerwise else None, seconds)


def _code_layer_scores(
    plan: SearchPlan, ranks: Sequence[tuple[int, ...]], inputs: Sequence[Sequence[torch.Tensor]]
) -> list[np.ndarray]:
    """Held-out scores of layers 2…k on their input codes, (C, F·S) per layer; computed once
    per distinct prefix ``(r1, …, rl)`` (the input codes depend on the ranks before it)."""
    k = len(ranks[0])
    out = []
    for l in range(1, k):
        done: dict[tuple[int, ...], np.ndarray] = {}
        rows = []
        for c, r in enumerate(ranks):
            if r[: l + 1] not in done:
                X = inputs[c][l - 1]
                done[r[: l + 1]] = layer_scores(
                    X,
                    r[l],
                    l,
                    heldout=code_masks(
                        X.shape[-2], X.shape[-1], plan.holdout, len(plan.heldout), plan.code_seed, l
                    ),
                    restarts=plan.restarts,
                    seeds=plan.seeds,
                    fit=plan.fit.pretraining(l),
                )
            rows.append(done[r[: l + 1]])
        out.append(np.stack(rows))
    return out


def score(plan: SearchPlan, fitted: Sequence[Stack]) -> tuple[np.ndarray, np.ndarray]:
    """β-divergence per held-out entry and per training entry of every fit: (C, F·S) each.

    For β = 2 the entrywise divergence of a fit is formed once (one ``m × n`` buffer) and
    summed in float64 over the held-out and over the training entries. With missing entries
    (``plan.observed``) both sums are weighted by it and divided by the weights' sums."""
    V, S = plan.V, plan.restarts
    held = np.zeros((len(fitted), len(plan.heldout) * S))
    train = np.zeros_like(held)
    for f in range(len(plan.heldout)):
        Ef = plan.scored_mask(f)
        Mf = plan.train_mask(f)  # × 0 drops a held-out term exactly: the training sum never sees it
        n_held = float(Ef.sum(dtype=torch.float64))
        n_train = float(Mf.sum(dtype=torch.float64))
        for c, (Ws, H) in enumerate(fitted):
            for s in range(S):
                g = f * S + s
                P = _chain([W[g] for W in Ws])
                assert P is not None
                L = P @ H[g]
                # Held-out and training sums apart (not one as the total minus the other), so
                # the training score never depends on the held-out values, not even by rounding.
                if plan.fit.beta == 2:  # ½ (L − V)², formed in place, summed in float64
                    D = L.sub_(V).square_()
                    part = 0.5 * float(torch.mul(D, Ef).sum(dtype=torch.float64))
                    rest = 0.5 * float(D.mul_(Mf).sum(dtype=torch.float64))
                else:
                    part = float(beta_divergence(V, L, plan.fit.beta, Ef, plan.fit.eps))
                    rest = float(beta_divergence(V, L, plan.fit.beta, Mf, plan.fit.eps))
                held[c, g] = part / n_held
                train[c, g] = rest / n_train
    return held, train
