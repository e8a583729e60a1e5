"""Steps every fit shares (`dnmf.factorize`, `dnmf.solve_h`, ``dnmf.distributed``).

The starting factors of a deep fit (custom factors, a layer-wise initialisation, or layer-wise
pretraining), and the ``ConvergenceWarning`` when the iteration budget ends first.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ._solvers import run_solver
from ._solvers.loop import SolverOutcome
from ._solvers.loss import Penalties

try:  # the one piece of scikit-learn dnmf uses: its warning class, so filters written for it work
    from sklearn.exceptions import ConvergenceWarning
except ImportError:  # pragma: no cover

    class ConvergenceWarning(UserWarning):  # type: ignore[no-redef]
        """Raised when the iteration budget ends before the convergence test passes."""


#: ``init_fn(l, X, r)``: initial ``(W, H)`` of layer ``l`` with ``X ≈ W H`` and inner rank ``r``.
InitFn = Callable[[int, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
Reduce = Callable[[torch.Tensor], torch.Tensor]


def warn_unconverged(out: SolverOutcome, max_iter: int, tol: float, what: str) -> None:
    """``ConvergenceWarning`` when a run with ``tol > 0`` used its whole budget (matrices the
    callback stopped are not counted: they stopped where the caller asked)."""
    unconverged = ~np.asarray(out.converged) & ~np.asarray(out.stopped_by_callback)
    if tol <= 0 or not unconverged.any():
        return
    n_bad = int(np.sum(unconverged))
    extra = (
        f" for {n_bad} of {np.asarray(out.converged).size} matrices"
        if np.ndim(out.converged)
        else ""
    )
    warnings.warn(
        f"{what}: maximum number of iterations {max_iter} reached{extra} before the relative "
        f"loss decrease fell below tol={tol:g}. Increase max_iter to improve convergence.",
        ConvergenceWarning,
        stacklevel=3,
    )


def initial_factors(
    V: torch.Tensor,
    ranks: Sequence[int],
    init_fn: InitFn,
    *,
    pretrain: bool | int,
    beta: float,
    max_iter: int,
    tol: float,
    penalties: Penalties,
    eps: float,
    check_every: int,
    mask: torch.Tensor | None = None,
    reduce: Reduce | None = None,
    solver: str = "mu",
) -> tuple[list[torch.Tensor], torch.Tensor, list[np.ndarray]]:
    """Starting ``(Ws, H, pretraining loss histories)`` of a joint fit.

    With ``pretrain`` (``True``: ``max_iter`` iterations per layer; an int: that many) and more
    than one layer, `pretrain_layers`; otherwise every layer is initialised from the
    previous one's initial codes, without fitting (no histories).
    """
    if pretrain is not False and len(ranks) > 1:
        return pretrain_layers(
            V,
            ranks,
            init_fn,
            beta=beta,
            mask=mask,
            max_iter=max_iter if pretrain is True else int(pretrain),
            tol=tol,
            penalties=penalties,
            eps=eps,
            check_every=check_every,
            reduce=reduce,
            solver=solver,
        )
    Ws, X = [], V
    for l, r in enumerate(ranks):
        W_l, X = init_fn(l, X, r)
        Ws.append(W_l)
    return Ws, X, []


def pretrain_layers(
    V: torch.Tensor,
    ranks: Sequence[int],
    init_fn: InitFn,
    *,
    beta: float,
    max_iter: int,
    tol: float,
    penalties: Penalties,
    eps: float,
    check_every: int,
    mask: torch.Tensor | None = None,
    reduce: Reduce | None = None,
    solver: str = "mu",
) -> tuple[list[torch.Tensor], torch.Tensor, list[np.ndarray]]:
    """Layer-wise pretraining ``V ≈ W1 H1``, ``H1 ≈ W2 H2``, …: returns ``(Ws, H, histories)``.

    ``init_fn(l, X, r)`` initialises layer ``l`` on its input ``X``; layer ``l`` gets the
    penalties of ``Wl`` and of ``H``. ``mask`` applies to the first layer only, and ``reduce``
    (column shards, see `dnmf._solvers.mu.run_mu`) to every layer; every layer is fitted by
    ``solver`` (resolved, see `dnmf._solvers.resolve_solver`).
    """
    k = len(ranks)
    Ws: list[torch.Tensor] = []
    hist: list[np.ndarray] = []
    X, Mk = V, mask
    for l, r in enumerate(ranks):
        W_l, H_l = init_fn(l, X, r)
        out = run_solver(
            solver,
            X,
            [W_l],
            H_l,
            beta=beta,
            mask=Mk,
            max_iter=max_iter,
            tol=tol,
            penalties=Penalties(
                [penalties.l1[l], penalties.l1[k]], [penalties.l2[l], penalties.l2[k]]
            ),
            eps=eps,
            check_every=check_every,
            reduce=reduce,
        )
        hist.append(out.loss_history)
        Ws.append(W_l)
        # β ≤ 0 cannot fit zeros: the next layer sees the codes floored at eps.
        X, Mk = (H_l.clamp_min(eps) if beta <= 0 else H_l), None
    return Ws, H_l, hist


__all__ = ["ConvergenceWarning", "initial_factors", "pretrain_layers", "warn_unconverged"]
