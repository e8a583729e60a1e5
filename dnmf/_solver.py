"""The ``solver=`` of every fit: its names, what ``'auto'`` picks, and one entry point.

* ``'mu'``: multiplicative updates (``dnmf._mu``), the reference: every β, masks, penalties.
* ``'mu-acc'``: the same β = 2 update with each block repeated per product with ``V``
  (Gillis & Glineur 2012, ``α = 2``, ``δ = 0.01`` as in the authors' code).
* ``'hals'``: exact block-coordinate descent for β = 2 (``dnmf._hals``): HALS for ``W1`` and
  ``H``, coordinate descent on the entries of the middle layers; one layer is scikit-learn's
  ``solver='cd'`` (same order, no shuffling).
* ``'hals-acc'``: HALS with the inner repetitions of Gillis & Glineur (``α = 0.5``,
  ``δ = 0.1``).
* ``'hals-acc-e'``: ``'hals-acc'`` with Ang & Gillis's extrapolation (2019) where a fit is one
  layer with both factors free (one-layer fits, and each layer's pretraining of a deep one);
  elsewhere (the joint fine-tuning of deep models, ``solve_h``) it is ``'hals-acc'``.
* ``'auto'`` (the default): for β = 2 without a mask ``'hals-acc-e'`` for one layer and
  ``'hals'`` for deep models (measured the fastest to an accurate answer at each depth:
  ``docs/results/nmf-speed.md``); else ``'mu'``. The
  coordinate-descent solvers need the data only through ``V Hᵀ`` and ``Pᵀ V``; a mask would
  need a Gram matrix per row of ``V`` (weighted HALS), which is not implemented, so masked
  fits (and β ≠ 2) use multiplicative updates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._hals import Acceleration, Extrapolation, run_hals
from ._loss import Penalties
from ._mu import MUOutcome, run_mu

SOLVERS = ("auto", "mu", "mu-acc", "hals", "hals-acc", "hals-acc-e")
_HALS_ACC = Acceleration(alpha=0.5, delta=0.1)
_BLOCK = {  # solver name -> (rule of dnmf._hals, inner repetitions, extrapolation)
    "mu-acc": ("mu", Acceleration(alpha=2.0, delta=0.01), None),
    "hals": ("hals", None, None),
    "hals-acc": ("hals", _HALS_ACC, None),
    "hals-acc-e": ("hals", _HALS_ACC, Extrapolation()),
}


def resolve_solver(solver: Any, beta: float, mask: torch.Tensor | None, layers: int = 1) -> str:
    """The solver a fit of ``layers`` layers runs: ``solver`` checked against ``beta`` and
    ``mask``, and ``'auto'`` resolved (for β = 2 without a mask ``'hals-acc-e'`` for one layer,
    ``'hals'`` for more; else ``'mu'``). A deep fit's pretraining runs the same solver."""
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "auto":
        if beta != 2 or mask is not None:
            return "mu"
        # Deep fits: plain HALS reached the deep targets sooner than the accelerated and
        # extrapolated variants in every run (their inner passes over the middle layers cost
        # more than the iterations they save).
        return "hals-acc-e" if layers == 1 else "hals"
    if solver != "mu" and (beta != 2 or mask is not None):
        why = "a mask" if mask is not None else f"beta={beta:g}"
        raise ValueError(
            f"solver={solver!r} solves beta=2 without a mask, got {why}; "
            "use solver='mu' (or 'auto', which picks it there)"
        )
    return solver


def run_solver(
    solver: str,
    V: torch.Tensor,
    Ws: list[torch.Tensor],
    H: torch.Tensor,
    *,
    beta: float,
    mask: torch.Tensor | None,
    max_iter: int,
    tol: float,
    penalties: Penalties,
    eps: float,
    check_every: int,
    update: Sequence[bool] | None = None,
    loss_every: int | None = None,
    callback: Callable[[int, object], object] | None = None,
    verbose: bool = False,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> MUOutcome:
    """Run a resolved solver (see `resolve_solver`) on checked tensors; factors are
    updated in place, as `dnmf._mu.run_mu` does."""
    if solver == "mu":
        return run_mu(
            V,
            Ws,
            H,
            beta=beta,
            mask=mask,
            max_iter=max_iter,
            tol=tol,
            penalties=penalties,
            eps=eps,
            update=update,
            check_every=check_every,
            loss_every=loss_every,
            callback=callback,
            verbose=verbose,
            reduce=reduce,
        )
    rule, accel, extrapolation = _BLOCK[solver]
    return run_hals(
        V,
        Ws,
        H,
        rule=rule,
        accel=accel,
        extrapolation=extrapolation,
        max_iter=max_iter,
        tol=tol,
        penalties=penalties,
        update=update,
        check_every=check_every,
        loss_every=loss_every,
        callback=callback,
        verbose=verbose,
        reduce=reduce,
    )


__all__ = ["SOLVERS", "resolve_solver", "run_solver"]
