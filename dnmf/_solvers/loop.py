"""The iteration loop every solver shares, what it needs of a solver, and what it reports.

A solver (`dnmf._solvers.frobenius`, `general`, `hals`, `extrapolation`) is an object with one
sweep over the factors and a loss (the `Sweeper` protocol); `iterate` runs it: the loss recorded
every ``loss_every`` iterations and at both ends, per-matrix convergence every ``check_every``
(a converged matrix of a batch drops out of later sweeps), the callback, and the `SolverOutcome`
with the records. Factors are updated in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

if TYPE_CHECKING:  # the annotation only: the loop sits below the sparse module
    from .sparse import Data


@dataclass
class SolverOutcome:
    """What a run of any solver reports (factors are updated in place)."""

    loss_history: np.ndarray  # (T,) or (T, B), float64
    loss_iters: np.ndarray  # (T,) iteration of each recorded loss (0 = initial factors)
    n_iter: np.ndarray  # () or (B,): iterations run per matrix
    converged: np.ndarray  # () or (B,)
    #: Whether the callback stopped it: a bool, or () / (B,) like ``converged`` (per matrix).
    stopped_by_callback: bool | np.ndarray = False
    extra: dict = field(default_factory=dict)

    @property
    def loss(self) -> float | np.ndarray:
        """The last recorded objective (one value per matrix for a batch)."""
        return self.loss_history[-1]


class Sweeper(Protocol):
    """What `iterate` needs of a solver: one sweep over the factors, the loss, how often the
    loss is worth recording, and a last step once the loop ends."""

    def sweep(
        self, Ws: list[torch.Tensor], H: torch.Tensor, active: torch.Tensor | None, need_loss: bool
    ) -> torch.Tensor | None: ...

    def loss(self, Ws: list[torch.Tensor], H: torch.Tensor) -> torch.Tensor: ...

    def default_loss_every(self, check_every: int) -> int: ...

    def finish(self, Ws: list[torch.Tensor], H: torch.Tensor) -> None: ...


def iterate(
    solver: Sweeper,
    V: Data,
    Ws: list[torch.Tensor],
    H: torch.Tensor,
    *,
    max_iter: int,
    tol: float,
    check_every: int = 10,
    loss_every: int | None = None,
    callback: Callable[[int, object], object] | None = None,
    verbose: bool = False,
) -> SolverOutcome:
    """Run ``solver`` on ``V ≈ W1 … Wk H``: ``solver.sweep`` once per iteration, the loss
    recorded every ``loss_every`` iterations (default: the solver's `Sweeper.default_loss_every`)
    and at the ends, per-matrix convergence every ``check_every`` (a matrix whose loss fell by
    less than ``tol`` relative to the previous check; ``tol = 0`` never checks; converged
    matrices of a batch drop out of later sweeps), ``callback(n_iter, loss)`` whenever a loss
    is recorded (a truthy answer stops the run; for a batch, an array of one truth value per
    matrix stops those matrices, which drop out the same way: `callback_stops`); the run ends
    when no matrix is left. ``solver.finish`` runs however the loop ends (also when the
    callback raises), so the caller's factors are the solver's last ones."""
    if loss_every is None:
        loss_every = solver.default_loss_every(check_every)
    try:
        return _loop(solver, V, Ws, H, max_iter, tol, check_every, loss_every, callback, verbose)
    finally:
        solver.finish(Ws, H)


def _loop(
    solver: Sweeper,
    V: Data,
    Ws: list[torch.Tensor],
    H: torch.Tensor,
    max_iter: int,
    tol: float,
    check_every: int,
    loss_every: int,
    callback: Callable[[int, object], object] | None,
    verbose: bool,
) -> SolverOutcome:
    batched = V.ndim == 3
    n_mat = V.shape[0] if batched else 1
    history: list[torch.Tensor] = []
    iters: list[int] = []
    converged = torch.zeros(n_mat, dtype=torch.bool)
    stopped = torch.zeros(n_mat, dtype=torch.bool)  # by the callback
    n_iter = torch.full((n_mat,), max_iter, dtype=torch.int64)
    active: torch.Tensor | None = None
    it = 0
    with torch.no_grad():
        loss = solver.loss(Ws, H)
        history.append(loss)
        iters.append(0)
        prev = loss.reshape(-1).cpu()
        if verbose:
            _report(0, loss)
        for it in range(1, max_iter + 1):
            check = tol > 0 and it % check_every == 0
            need = check or it % loss_every == 0 or it == max_iter
            swept = solver.sweep(Ws, H, active, need)
            if swept is None:
                continue
            loss = swept
            history.append(loss)
            iters.append(it)
            if verbose and (check or it == max_iter):
                _report(it, loss)
            if check:
                prev = _mark_converged(loss, prev, tol, converged, n_iter, it)
                if bool((converged | stopped).all()):
                    break
            if callback is not None:
                says = callback_stops(callback(it, _to_host(loss)), n_mat)
                newly = says & ~converged & ~stopped
                n_iter[newly] = it
                stopped |= newly
            done = converged | stopped
            if bool(done.all()):
                break
            if batched and bool(done.any()):
                active = (~done).to(V.device)
    n_iter[~(converged | stopped)] = it
    return _outcome(history, iters, n_iter, converged, batched, stopped)


def callback_stops(answer: Any, n_mat: int) -> torch.Tensor:
    """Which of ``n_mat`` matrices a callback's return value stops: a bool tensor ``(n_mat,)``.

    Any single value stops every matrix when it is truthy (``True``, ``np.True_``,
    ``torch.tensor(True)``, ``1``; ``None`` and falsy values go on), as ``if answer:`` reads it.
    An array, tensor, list or tuple of ``n_mat`` entries (a batch's callback answering per
    matrix, e.g. ``loss < target``) stops the matrices whose entry is true; one of any other
    size is refused with a ``ValueError``, as it says nothing clear about which matrices stop.
    (That the callback is callable at all is checked before any work:
    `dnmf._validation.check_callback`.)
    """
    if answer is None:
        return torch.zeros(n_mat, dtype=torch.bool)
    if isinstance(answer, torch.Tensor):
        answer = answer.detach().cpu().numpy()
    if isinstance(answer, (np.ndarray, list, tuple)):
        flags = np.asarray(answer)
        if flags.size == 1:
            return torch.full((n_mat,), bool(flags.reshape(())), dtype=torch.bool)
        if flags.dtype.hasobject or flags.shape != (n_mat,):
            want = f"one value or {n_mat} (one per matrix)" if n_mat > 1 else "one value"
            raise ValueError(
                "callback must return one truth value (true stops the fit) or, for a batch, "
                f"one per matrix; got an array of shape {flags.shape} where {want} was expected"
            )
        return torch.from_numpy(flags.astype(bool))
    return torch.full((n_mat,), bool(answer), dtype=torch.bool)


def _mark_converged(
    loss: torch.Tensor,
    prev: torch.Tensor,
    tol: float,
    converged: torch.Tensor,
    n_iter: torch.Tensor,
    it: int,
) -> torch.Tensor:
    """Flag (in place) the matrices whose loss fell by less than ``tol`` (relative) since
    ``prev``; returns the new reference loss."""
    cur = loss.reshape(-1).cpu()
    rel = (prev - cur) / prev.clamp_min(np.finfo(np.float64).tiny)
    newly = (rel < tol) & ~converged
    n_iter[newly] = it
    converged |= newly
    return cur


def _outcome(
    history: list[torch.Tensor],
    iters: list[int],
    n_iter: torch.Tensor,
    converged: torch.Tensor,
    batched: bool,
    stopped: torch.Tensor,
) -> SolverOutcome:
    """Pack a run's records: scalars for one matrix, one entry per matrix for a batch."""
    hist = torch.stack([h.reshape(-1) for h in history]).cpu().numpy()
    if not batched:
        return SolverOutcome(
            hist[:, 0],
            np.asarray(iters),
            np.asarray(int(n_iter[0])),
            np.asarray(bool(converged[0])),
            bool(stopped[0]),
        )
    return SolverOutcome(
        hist, np.asarray(iters), n_iter.numpy(), converged.numpy(), stopped.numpy().copy()
    )


def _to_host(loss: torch.Tensor):
    arr = loss.detach().cpu().numpy()
    return float(arr) if arr.ndim == 0 else arr


def _report(it: int, loss: torch.Tensor) -> None:
    vals = loss.reshape(-1).cpu().numpy()
    text = f"{vals[0]:.6e}" if vals.size == 1 else f"mean {vals.mean():.6e} max {vals.max():.6e}"
    print(f"iter {it:6d}  loss {text}")


__all__ = ["SolverOutcome", "Sweeper", "callback_stops", "iterate"]
