"""``dnmf.select_ranks``: choose the rank(s) of an NMF or Deep NMF by masked cross-validation.

Each fold hides some entries of ``V`` (mask weight 0, so they never touch the fit), every
candidate is fitted to the rest, and the fitted model predicts the hidden entries; the
candidate with the smallest held-out error (or the simplest one within one standard error of
it) wins. This is Wold's (1978) entry-wise cross-validation, as in RcppML's ``crossValidate``;
for deep models a candidate is a rank tuple ``(r1, …, rk)`` and the held-out error is that of
``W1 … Wk H``.
"""

from __future__ import annotations

import itertools
import numbers
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from . import _validation as val
from ._fitting import ConvergenceWarning
from ._rank_selection.cv_fits import SearchPlan, fit_candidates
from ._rank_selection.cv_layers import choose_layerwise
from ._rank_selection.holdout import PATTERNS, heldout_masks, n_groups
from ._rank_selection.result import Candidate, RankSelection
from ._rank_selection.rule import RULES, choose
from ._solvers import FitSettings
from ._solvers.loss import EPSILON

CRITERIA = ("product", "layerwise")
#: The engines of ``solver=`` (which runs the search's masked fits; not `dnmf._solvers.SOLVERS`).
CV_ENGINES = ("auto", "gram", "masked")
#: The update of every β = 2 fit of a search: plain masked HALS (`dnmf._solvers.masked`), the
#: same in both engines. Not the extrapolated variant that ``'auto'`` runs for one layer: with
#: held-out entries it can move a component onto them, where the masked loss
#: does not see it (held-out losses orders of magnitude above the others' in some test fits).
CV_SOLVER = "hals"
#: ``solver='auto'`` takes the batched Gram solver from this many entries of ``V`` on: below,
#: its fixed cost per sweep (a few dozen small tensor ops per candidate) exceeds the masked
#: solver's passes over ``m × n`` (same fits either way).
GRAM_MIN_ENTRIES = 20_000


def rank_grid(*layers: Sequence[int]) -> list[tuple[int, ...]]:
    """Rank tuples ``(r1, r2, …)`` with ``r1`` from ``layers[0]``, ``r2`` from ``layers[1]``, …,
    keeping only strictly decreasing ones (``r1 > r2 > …``, as deep NMF's layers shrink).

    >>> rank_grid([8, 12], [4, 8])
    [(8, 4), (12, 4), (12, 8)]
    """
    if not layers:
        raise ValueError("rank_grid needs the candidate ranks of at least one layer")
    lists = [val.parse_ranks(list(r)) for r in layers]
    grid = [t for t in itertools.product(*lists) if all(a > b for a, b in zip(t, t[1:]))]
    if not grid:
        raise ValueError(f"rank_grid: no strictly decreasing tuple in {lists}")
    return sorted(set(grid))


def default_candidates(shape: tuple[int, int]) -> list[int]:
    """One-layer ranks tried when none are given: 1, 2, 3, 4, 6, 8, 12, … up to 64 and at
    most half the smaller side of ``V``."""
    top = max(1, min(shape) // 2)
    grid = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    return [r for r in grid if r <= top] or [1]


def parse_candidates(candidates: Any) -> tuple[list[Candidate], list[tuple[int, ...]]]:
    """Candidates as given (ints stay ints, tuples stay tuples) and as rank tuples.

    Accepted: ints >= 1 (one layer each), or tuples of ints >= 1 that all have the same length
    (one rank per layer; any order, though deep NMF usually shrinks, see `rank_grid`).
    """
    if isinstance(candidates, (str, bytes)) or not isinstance(
        candidates, (Sequence, np.ndarray, range)
    ):
        raise TypeError(
            "candidates must be a sequence of ranks (ints) or rank tuples, got "
            f"{type(candidates).__name__}"
        )
    items = list(candidates)
    if not items:
        raise ValueError("candidates must hold at least one rank, got an empty sequence")
    given: list[Candidate] = []
    tuples: list[tuple[int, ...]] = []
    for c in items:
        if isinstance(c, numbers.Integral) and not isinstance(c, bool):
            if int(c) < 1:
                raise ValueError(f"candidates must be ranks >= 1, got {c!r}")
            given.append(int(c))
            tuples.append((int(c),))
            continue
        try:
            ranks = tuple(val.parse_ranks(c))
        except (TypeError, ValueError):
            raise ValueError(
                f"candidates must be ints >= 1 or tuples of ints >= 1, got {c!r}"
            ) from None
        given.append(ranks if len(ranks) > 1 else ranks[0])
        tuples.append(ranks)
    depths = {len(t) for t in tuples}
    if len(depths) > 1:
        raise ValueError(
            f"candidates must all have the same number of layers, got depths {sorted(depths)}"
        )
    if len(set(tuples)) < len(tuples):
        raise ValueError(f"candidates must be distinct, got {items!r}")
    return given, tuples


def _check_criterion(criterion: Any, k: int, pretrain: Any) -> bool:
    """Whether deep candidates are scored layer by layer."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if criterion == "layerwise" and (k == 1 or pretrain is False):
        raise ValueError(
            "criterion='layerwise' scores the layers of deep candidates through their "
            "layer-wise pretraining: it needs rank tuples and pretrain != False"
        )
    return criterion == "layerwise"


def _check_args(
    holdout: Any,
    folds: Any,
    restarts: Any,
    rule: Any,
    pattern: Any,
    solver: Any,
    beta: float,
    size: int,
    masked: bool = False,
) -> tuple[float, int, int, str]:
    """Validate the search's own arguments; returns (held-out share, folds, restarts, engine).
    ``masked``: ``V`` has missing entries, which only the masked engine honours."""
    if isinstance(holdout, bool) or not isinstance(holdout, numbers.Real):
        raise ValueError(f"holdout must be a fraction in (0, 0.5], got {holdout!r}")
    holdout = float(holdout)
    if not 0 < holdout <= 0.5:
        raise ValueError(f"holdout must be a fraction in (0, 0.5], got {holdout!r}")
    folds = val.check_positive_int(folds, "folds")
    restarts = val.check_positive_int(restarts, "restarts")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if pattern not in PATTERNS:
        raise ValueError(f"holdout_pattern must be one of {PATTERNS}, got {pattern!r}")
    if solver not in CV_ENGINES:
        raise ValueError(f"solver must be one of {CV_ENGINES}, got {solver!r}")
    frac = 1.0 / n_groups(holdout) if pattern == "blocks" else float(holdout)
    if folds * frac > 1 + 1e-9:
        raise ValueError(
            f"folds={folds} disjoint folds of holdout={frac:g} each need folds * holdout <= 1; "
            "lower folds or holdout"
        )
    if solver == "gram" and (beta != 2 or pattern != "blocks"):
        raise ValueError(
            "solver='gram' needs beta=2 and holdout_pattern='blocks'; use solver='masked' "
            "(or 'auto')"
        )
    if solver == "gram" and masked:
        raise ValueError(
            "solver='gram' cannot honour missing entries (mask= or a masked array): it needs "
            "every entry outside the held-out blocks; use solver='masked' (or 'auto')"
        )
    engine = solver
    if solver == "auto":
        gram = beta == 2 and pattern == "blocks" and size >= GRAM_MIN_ENTRIES and not masked
        engine = "gram" if gram else "masked"
    return float(frac), folds, restarts, engine


def select_ranks(
    V: Any,
    candidates: Any = None,
    *,
    beta: float | str = 2,
    holdout: float = 0.1,
    folds: int = 5,
    restarts: int = 1,
    holdout_pattern: str = "blocks",
    rule: str = "min",
    criterion: str = "product",
    init: str = "nndsvda",
    pretrain: bool | int = True,
    max_iter: int = 200,
    tol: float = 1e-4,
    l1: float | Sequence[float] = 0.0,
    l2: float | Sequence[float] = 0.0,
    eps: float = EPSILON,
    check_every: int = 10,
    solver: str = "auto",
    seed: int | None = None,
    device: Any = None,
    dtype: Any = None,
    mask: Any = None,
) -> RankSelection:
    """Choose the rank(s) of ``V ≈ W1 … Wk H`` by masked (entry-wise) cross-validation.

    Parameters
    ----------
    V : array (m, n)
        Nonnegative data, samples as columns (as `dnmf.factorize`). A numpy masked array
        brings its own missing entries (as ``mask``).
    candidates : sequence of int, or of rank tuples, optional
        Ranks to compare: ints for one layer, tuples ``(r1, …, rk)`` of one length for deep
        models (e.g. from `rank_grid`). Default: `default_candidates`.
    beta : float or str
        β-divergence of the fits, and of the held-out score.
    holdout : float
        Share of the entries each fold hides. With ``holdout_pattern='blocks'`` it is rounded
        to ``1/G`` for an integer ``G`` (0.1 → 10 groups).
    folds, restarts : int
        Disjoint folds (``folds * holdout <= 1``), and fits per fold with different seeds (for
        ``init='random'``; NNDSVD starts differ little between seeds).
    holdout_pattern : {'blocks', 'entries'}
        'blocks' (default): rows and columns are shuffled into ``G`` groups each and fold ``f``
        hides the blocks ``(a, (a + f) mod G)``, so every row and column loses the same share;
        for β = 2 this makes all fits one batched solver whose sweep costs two products with
        ``V``. 'entries': i.i.d. speckle (each fold hides a random set of entries), fitted by
        the general masked solver.
    criterion : {'product', 'layerwise'}
        What a deep candidate is scored by. 'product' (default): the held-out loss of
        ``W1 … Wk H`` on ``V``. It tells ``rk`` apart but not the inner ranks: ``(r1, …, rk)``
        with ``r1 ≥ … ≥ rk`` represents exactly the matrices of nonnegative rank ``≤ rk`` (any
        ``W ≥ 0`` is ``[W, 0] · [I; 0]``), so tuples that differ only in inner ranks differ
        only by how their optimisation went; ``rule='1se'`` then takes the fewest parameters.
        'layerwise' (experimental): ``r1`` by the held-out loss of layer 1 (its pretraining
        fit ``V ≈ W1 H1``), then ``r2`` among the tuples with that ``r1`` by the held-out loss
        of layer 2 on i.i.d. held-out entries of the codes ``H1`` (rows put on one scale), and
        so on; needs pretraining. The table then also lists every layer's loss.
    rule : {'min', '1se'}
        The smallest mean held-out loss, or the candidate with the fewest parameters within
        one standard error (over folds × restarts) of it.
    init, pretrain, max_iter, tol, l1, l2, eps, check_every
        As in `dnmf.factorize`; every fit is ``factorize(V * M_f, candidate, mask=M_f,
        seed=fit_seeds[f, s], …)``. Starting factors come from ``V * M_f``, so held-out
        values never reach a fit. A fit stops on its own when converged.
    solver : {'auto', 'gram', 'masked'}
        'gram' is the batched block solver (β = 2 with 'blocks' only), 'masked' runs the
        general masked solver on a 3-D batch per candidate; both make the same fits. 'auto'
        picks 'gram' where it applies and ``V`` has at least ``GRAM_MIN_ENTRIES`` entries.
    seed : int, optional
        Draws the folds and the fits' seeds: an int from 0 to 2**64 - 1 (numpy integers too)
        or a numpy ``Generator``.
    device, dtype : optional
        Where and in which precision to compute (default: the input's).
    mask : array of V's shape, optional
        Weights in [0, 1] (0: missing), as in `dnmf.factorize`; a numpy masked array ``V``
        brings its own (giving both is an error). Missing entries are never fitted nor scored:
        fold ``f``'s fits use the weights ``mask · (1 − E_f)`` and its held-out loss is the
        mean over the entries it holds out that are observed (weighted by ``mask``). Needs the
        masked solver ('auto' picks it; 'gram' is refused).

    Returns
    -------
    RankSelection
        ``.table`` (pandas DataFrame), ``.best`` (an int or a tuple, as the candidates were
        given), ``.cv_results()`` (dict of arrays) and the per-fit scores.
    """
    t0 = time.perf_counter()
    Vt, M = val.check_data(
        V, mask, dtype=val.parse_dtype(dtype), device=val.parse_device(device), allow_batch=False
    )
    if not isinstance(seed, np.random.Generator):
        val.check_seed(seed)
    m, n = (int(s) for s in Vt.shape)
    given, ranks = parse_candidates(
        default_candidates((m, n)) if candidates is None else candidates
    )
    beta_, max_iter, tol, eps, check_every = val.check_solver_args(
        beta, max_iter, tol, eps, check_every
    )
    frac, folds, restarts, engine = _check_args(
        holdout, folds, restarts, rule, holdout_pattern, solver, beta_, m * n, M is not None
    )
    if init == "custom":
        raise ValueError("init='custom' cannot be used by select_ranks: every fit starts afresh")
    for r in ranks:
        val.check_init(init, list(r), (m, n))
    pretrain = val.check_pretrain(pretrain)  # np.True_ -> True: later tests use `is`
    if M is not None:
        val.check_beta_zeros(Vt, beta_, M)
    elif beta_ <= 0 and float(Vt.min()) <= 0:
        raise ValueError(f"beta={beta_:g} needs V > 0 everywhere (found zeros)")
    # The largest ranks, for the fits held at once: every candidate's (gram), or one's (masked).
    top = [max(r[l] for r in ranks) for l in range(len(ranks[0]))]
    at_once = folds * restarts * (len(ranks) if engine == "gram" else 1)
    val.check_factors_fit(Vt, top, gram=engine == "gram", batch=at_once)
    k = len(ranks[0])
    pen = val.parse_penalties(l1, l2, k + 1)
    layerwise = _check_criterion(criterion, k, pretrain)
    rng = np.random.default_rng(seed)
    design_seed = int(rng.integers(2**62))
    fit_seeds = rng.integers(2**62, size=(folds, restarts))
    design, masks_np = heldout_masks((m, n), holdout_pattern, holdout, folds, design_seed)
    if M is not None:
        _check_folds_observe(M, masks_np)
    plan = SearchPlan(
        V=Vt,
        heldout=[torch.as_tensor(E, device=Vt.device) for E in masks_np],
        design=design if engine == "gram" else None,
        restarts=restarts,
        seeds=fit_seeds,
        fit=FitSettings(  # every fit: masked HALS for β = 2, else multiplicative updates
            beta=beta_,
            max_iter=max_iter,
            tol=tol,
            eps=eps,
            check_every=check_every,
            penalties=pen,
            solver=CV_SOLVER if beta_ == 2 else "mu",
            init=init,
            pretrain=pretrain,
        ),
        holdout=frac,
        code_seed=design_seed,
        observed=M,
    )
    with torch.no_grad():
        fits = fit_candidates(plan, ranks, engine, layerwise=layerwise)
    shape3 = (len(ranks), folds, restarts)
    n_params = np.array(
        [m * r[0] + sum(a * b for a, b in zip(r, r[1:])) + r[-1] * n for r in ranks]
    )
    held = fits.heldout.reshape(shape3)
    N = folds * restarts
    flat = held.reshape(len(ranks), N)
    se = flat.std(axis=1, ddof=1) / np.sqrt(N) if N > 1 else np.zeros(len(ranks))
    if fits.layers is not None:
        best = choose_layerwise(ranks, fits.layers, rule, choose)
    else:
        best = choose(flat.mean(axis=1), se, n_params, rule)
    converged = fits.converged.reshape(shape3)
    if tol > 0 and not converged.all():
        warnings.warn(
            f"dnmf.select_ranks: {int((~converged).sum())} of {converged.size} fits reached "
            f"max_iter={max_iter} before the relative loss decrease fell below tol={tol:g}; "
            "unconverged fits predict differently, which can move the choice. Increase max_iter.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return RankSelection(
        candidates=given,
        heldout=held,
        train=fits.train.reshape(shape3),
        n_iter=fits.n_iter.reshape(shape3),
        converged=converged,
        n_params=n_params,
        best=given[best],
        rule=rule,
        beta=beta_,
        holdout=frac,
        pattern=holdout_pattern,
        solver=engine,
        seconds=time.perf_counter() - t0,
        fit_seeds=fit_seeds,
        shape=(m, n),
        design_seed=design_seed,
        criterion="layerwise" if layerwise else "product",
        layer_heldout=None if fits.layers is None else [x.reshape(shape3) for x in fits.layers],
        stage_seconds=fits.seconds,
    )


def _check_folds_observe(M: torch.Tensor, heldout: list[np.ndarray]) -> None:
    """Every fold must hold out some observed entry (else it has nothing to score)."""
    for f, E in enumerate(heldout):
        if float((M * torch.as_tensor(E, device=M.device)).sum()) == 0:
            raise ValueError(
                f"fold {f} holds out only missing entries (mask weight 0), so it has nothing to "
                "score; raise holdout or fill in more of V"
            )


def auto_ranks(
    V: Any, ranks: str, candidates: Any, *, mask: Any = None, init: str = "nndsvda", **search: Any
) -> tuple[Candidate, RankSelection]:
    """``ranks='auto'`` of `dnmf.factorize` and `dnmf.DeepNMF`: the candidate
    `select_ranks` chooses, and its `RankSelection`. ``search`` holds the fit's
    own settings (beta, max_iter, tol, pretrain, l1, l2, eps, seed, device, dtype, …)."""
    if ranks != "auto":  # any other string is a type mistake, as for factorize's ranks
        raise val.InvalidParameterError(
            f"ranks must be a positive int or a sequence of positive ints, or 'auto'; got {ranks!r}"
        )
    if init == "custom":
        raise ValueError("ranks='auto' cannot be combined with init='custom'")
    # Missing entries (mask= or a masked array) stay missing in the search.
    sel = select_ranks(V, candidates, init=init, mask=mask, **search)
    return sel.best, sel


__all__ = ["RankSelection", "auto_ranks", "default_candidates", "rank_grid", "select_ranks"]
