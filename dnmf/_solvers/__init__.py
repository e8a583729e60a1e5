"""The solvers of every fit, and the registry of ``solver=``: its names, what ``'auto'`` picks,
and the one place that builds a solver and runs it (`make_solver`, `run_solver`).

* ``'mu'``: multiplicative updates (`dnmf._solvers.mu`: the β = 2 solver of `frobenius` or the
  general one of `general`), the reference: every β, masks, penalties.
* ``'mu-acc'``: the same β = 2 update with each block repeated per product with ``V``
  (Gillis & Glineur 2012, ``α = 2``, ``δ = 0.01`` as in the authors' code).
* ``'hals'``: exact block-coordinate descent for β = 2 (`dnmf._solvers.hals`): HALS for ``W1``
  and ``H``, coordinate descent on the entries of the middle layers; one layer is
  scikit-learn's ``solver='cd'`` (same order, no shuffling).
* ``'hals-acc'``: HALS with the inner repetitions of Gillis & Glineur (``α = 0.5``,
  ``δ = 0.1``).
* ``'hals-acc-e'``: ``'hals-acc'`` with Ang & Gillis's extrapolation (2019,
  `dnmf._solvers.extrapolation`) where a fit is one layer with both factors free and no
  penalties (one-layer fits, and each layer's pretraining of a deep one); elsewhere (the joint
  fine-tuning of deep models, ``solve_h``) it is ``'hals-acc'``.
* ``'auto'`` (the default): for β = 2 ``'hals-acc-e'`` for one layer and ``'hals'`` for deep
  models (measured the fastest to an accurate answer at each depth:
  ``docs/results/nmf-speed.md``), with a mask too; else ``'mu'``. The coordinate-descent
  solvers need the data only through ``V Hᵀ`` and ``Pᵀ V``; with a mask each block is updated
  against the data filled in from the current model (`dnmf._solvers.masked`), and every
  β = 2 name takes one.

A sparse ``V`` (`dnmf._solvers.sparse.SparseMatrix`, CSR of ``V`` and of ``Vᵀ``) runs every
β = 2 name through the same two products, as sparse @ dense products, and β = 1 with
``'mu'`` through `dnmf._solvers.sparse.SparseKLSolver`; it takes no mask.

Inside the subpackage imports run one way: `linalg`, `loss`, `fpstate` at the bottom; then
`update` (the multiplicative step and `SolverBase`) and `loop` (`iterate`, `SolverOutcome`);
then `sparse` (the sparse data and its KL solver); then the solvers (`frobenius`, `general`,
`mu`; `hals_kernels`, `hals`, `extrapolation`, `masked`; `online`, the minibatch statistics'
dictionary updates) and `settings` (`FitSettings`, what `run_solver` takes); then this
registry. No module of the subpackage imports the registry, nor anything else of `dnmf`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .extrapolation import ExtrapolatedSolver, Extrapolation
from .hals import Acceleration, BlockSolver
from .loop import SolverOutcome, Sweeper, iterate
from .loss import Penalties
from .masked import MaskedBlockSolver, MaskedExtrapolatedSolver
from .mu import mu_solver
from .settings import FitSettings
from .sparse import Data, SparseMatrix

SOLVERS = ("auto", "mu", "mu-acc", "hals", "hals-acc", "hals-acc-e")
_HALS_ACC = Acceleration(alpha=0.5, delta=0.1)
_BLOCK = {  # solver name -> (block rule, inner repetitions, extrapolation)
    "mu-acc": ("mu", Acceleration(alpha=2.0, delta=0.01), None),
    "hals": ("hals", None, None),
    "hals-acc": ("hals", _HALS_ACC, None),
    "hals-acc-e": ("hals", _HALS_ACC, Extrapolation()),
}


def resolve_solver(solver: Any, beta: float, mask: torch.Tensor | None, layers: int = 1) -> str:
    """The solver a fit of ``layers`` layers runs: ``solver`` checked against ``beta``, and
    ``'auto'`` resolved (for β = 2, with or without a mask, ``'hals-acc-e'`` for one layer and
    ``'hals'`` for more; ``'mu'`` for any other β). A deep fit's pretraining runs the same
    solver."""
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "auto":
        if beta != 2:
            return "mu"
        # Deep fits: plain HALS reached the deep targets sooner than the accelerated and
        # extrapolated variants in every run (their inner passes over the middle layers cost
        # more than the iterations they save). With a mask the same choice: masked HALS
        # (dnmf._solvers.masked) against the masked multiplicative updates is measured in
        # docs/notes.md, "Masked HALS".
        return "hals-acc-e" if layers == 1 else "hals"
    if solver != "mu" and beta != 2:
        raise ValueError(
            f"solver={solver!r} solves beta=2, got beta={beta:g}; "
            "use solver='mu' (or 'auto', which picks it there)"
        )
    return solver


def make_solver(
    solver: str,
    V: Data,
    Ws: list[torch.Tensor],
    H: torch.Tensor,
    *,
    beta: float,
    mask: torch.Tensor | None,
    penalties: Penalties | None,
    eps: float,
    update: Sequence[bool] | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Sweeper:
    """The solver object a resolved name (see `resolve_solver`) runs on checked tensors:
    `dnmf._solvers.mu.mu_solver`'s for ``'mu'``; for the block names an `ExtrapolatedSolver`
    where their extrapolation applies (`ExtrapolatedSolver.applies`), else a `BlockSolver`,
    and their masked forms (`dnmf._solvers.masked`) with a mask."""
    if solver == "mu":
        return mu_solver(
            V,
            Ws,
            H,
            beta=beta,
            mask=mask,
            penalties=penalties,
            eps=eps,
            update=update,
            reduce=reduce,
        )
    rule, accel, extrapolation = _BLOCK[solver]
    k = len(Ws)
    pen = penalties or Penalties.none(k + 1)
    flags = [True] * (k + 1) if update is None else list(update)
    extrapolated = extrapolation is not None and ExtrapolatedSolver.applies(k, flags, pen)
    if mask is not None:  # HALS on the filled-in data (dnmf._solvers.masked)
        if isinstance(V, SparseMatrix):
            raise ValueError("a sparse V takes no mask (the entry points refuse it first)")
        if extrapolation is not None and extrapolated:
            return MaskedExtrapolatedSolver(
                V, Ws, H, pen, flags, rule, accel, reduce, extrapolation, mask=mask
            )
        return MaskedBlockSolver(V, Ws, H, pen, flags, mask=mask, rule=rule, accel=accel)
    if extrapolation is not None and extrapolated:
        return ExtrapolatedSolver(V, Ws, H, pen, flags, rule, accel, reduce, extrapolation)
    return BlockSolver(V, Ws, H, pen, flags, rule=rule, accel=accel, reduce=reduce)


def run_solver(
    V: Data,
    Ws: list[torch.Tensor],
    H: torch.Tensor,
    fit: FitSettings,
    *,
    mask: torch.Tensor | None = None,
    update: Sequence[bool] | None = None,
    callback: Callable[[int, object], object] | None = None,
    verbose: bool = False,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> SolverOutcome:
    """Build ``fit.solver`` (a resolved name, see `resolve_solver`; `make_solver`) and run it
    with ``fit``'s settings through the shared loop (`dnmf._solvers.loop.iterate`); factors
    are updated in place. ``update`` has one flag per factor (W1..Wk, H; default all)."""
    built = make_solver(
        fit.solver,
        V,
        Ws,
        H,
        beta=fit.beta,
        mask=mask,
        penalties=fit.penalties,
        eps=fit.eps,
        update=update,
        reduce=reduce,
    )
    return iterate(
        built,
        V,
        Ws,
        H,
        max_iter=fit.max_iter,
        tol=fit.tol,
        check_every=fit.check_every,
        loss_every=fit.loss_every,
        callback=callback,
        verbose=verbose,
    )


__all__ = ["SOLVERS", "FitSettings", "make_solver", "resolve_solver", "run_solver"]
