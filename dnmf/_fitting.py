"""Steps every fit shares (`dnmf.factorize`, `dnmf.solve_h`, ``dnmf.distributed``).

The starting factors of a deep fit (a layer-wise initialisation, or layer-wise pretraining),
and the ``ConvergenceWarning`` when the iteration budget ends first. Each takes the fit's
checked `dnmf._solvers.FitSettings`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch

from ._solvers import FitSettings, run_solver
from ._solvers.loop import SolverOutcome
from ._solvers.sparse import Data

try:  # the one piece of scikit-learn dnmf uses: its warning class, so filters written for it work
    from sklearn.exceptions import ConvergenceWarning
except ImportError:  # pragma: no cover

    class ConvergenceWarning(UserWarning):  # type: ignore[no-redef]
        """Raised when the iteration budget ends before the convergence test passes."""


#: The data of a fit: a dense tensor, or (`dnmf.factorize`) possibly a sparse matrix.
D = TypeVar("D", torch.Tensor, Data)
#: ``init_fn(l, X, r)``: initial ``(W, H)`` of layer ``l`` with ``X ≈ W H`` and inner rank ``r``
#: (``X`` is ``V`` itself for the first layer, the previous layer's codes after it).
InitFn = Callable[[int, D, int], tuple[torch.Tensor, torch.Tensor]]
Reduce = Callable[[torch.Tensor], torch.Tensor]


def warn_unconverged(out: SolverOutcome, fit: FitSettings, what: str) -> None:
    """``ConvergenceWarning`` when a run with ``tol > 0`` used its whole budget (matrices the
    callback stopped are not counted: they stopped where the caller asked)."""
    unconverged = ~np.asarray(out.converged) & ~np.asarray(out.stopped_by_callback)
    if fit.tol <= 0 or not unconverged.any():
        return
    n_bad = int(np.sum(unconverged))
    extra = (
        f" for {n_bad} of {np.asarray(out.converged).size} matrices"
        if np.ndim(out.converged)
        else ""
    )
    warnings.warn(
        f"{what}: maximum number of iterations {fit.max_iter} reached{extra} before the "
        f"relative loss decrease fell below tol={fit.tol:g}. Increase max_iter to improve "
        "convergence.",
        ConvergenceWarning,
        stacklevel=3,
    )


def initial_factors(
    V: D,
    ranks: Sequence[int],
    init_fn: InitFn[D],
    fit: FitSettings,
    *,
    mask: torch.Tensor | None = None,
    reduce: Reduce | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor, list[np.ndarray]]:
    """Starting ``(Ws, H, pretraining loss histories)`` of a joint fit.

    With ``fit.pretrain`` and more than one layer, `pretrain_layers`; otherwise every layer is
    initialised from the previous one's initial codes, without fitting (no histories).
    """
    if fit.pretrain is not False and len(ranks) > 1:
        return pretrain_layers(V, ranks, init_fn, fit, mask=mask, reduce=reduce)
    Ws: list[torch.Tensor] = []
    X = V
    for l, r in enumerate(ranks):
        W_l, H_l = init_fn(l, X, r)
        Ws.append(W_l)
        X = H_l
    return Ws, H_l, []


def pretrain_layers(
    V: D,
    ranks: Sequence[int],
    init_fn: InitFn[D],
    fit: FitSettings,
    *,
    mask: torch.Tensor | None = None,
    reduce: Reduce | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor, list[np.ndarray]]:
    """Layer-wise pretraining ``V ≈ W1 H1``, ``H1 ≈ W2 H2``, …: returns ``(Ws, H, histories)``.

    ``init_fn(l, X, r)`` initialises layer ``l`` on its input ``X``; layer ``l`` is fitted with
    `FitSettings.pretraining` (``fit.pretrain_iter`` iterations, the penalties of ``Wl`` and of
    ``H``) by ``fit.solver``. ``mask`` applies to the first layer only, and ``reduce`` (column
    shards, see `dnmf._solvers.mu.run_mu`) to every layer.
    """
    Ws: list[torch.Tensor] = []
    hist: list[np.ndarray] = []
    X, Mk = V, mask
    for l, r in enumerate(ranks):
        W_l, H_l = init_fn(l, X, r)
        out = run_solver(X, [W_l], H_l, fit.pretraining(l), mask=Mk, reduce=reduce)
        hist.append(out.loss_history)
        Ws.append(W_l)
        # β ≤ 0 cannot fit zeros: the next layer sees the codes floored at eps.
        X, Mk = (H_l.clamp_min(fit.eps) if fit.beta <= 0 else H_l), None
    return Ws, H_l, hist


__all__ = ["ConvergenceWarning", "initial_factors", "pretrain_layers", "warn_unconverged"]
