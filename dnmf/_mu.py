"""Multiplicative-update driver for ``V ≈ W1 W2 … Wk H`` (pure tensor code, no autograd).

Notation: ``V`` is ``(…, m, n)`` (a leading batch dimension is optional), ``W1`` is
``(…, m, r1)``, ``Wl`` is ``(…, r(l-1), rl)`` and ``H`` is ``(…, rk, n)``. Factors are updated
in the order W1, …, Wk, H by the update of ``dnmf._update`` (so one layer is exactly
scikit-learn's ``_fit_multiplicative_update``). `run_mu` picks one of two solvers:

* ``dnmf._frobenius.FrobeniusSolver`` (β = 2, no mask): ``V`` only through ``V Hᵀ`` and
  ``Pᵀ V`` (fused into one pass over blocks of rows on the CPU), the loss from carried Gram
  matrices; no ``m × n`` temporary exists.
* ``dnmf._general.GeneralSolver`` (any β, optional mask): forms ``Λ`` and one elementwise
  ``m × n`` work buffer, reused across layers and iterations.

Both update the factors in place and freeze converged matrices of a batch (their ratio is
set to 1), so a converged matrix stops changing while the others go on. The loss functions
live in ``dnmf._loss``, the small tensor helpers in ``dnmf._linalg``; this module re-exports
them (``from dnmf._mu import beta_divergence`` keeps working).

Column shards (``dnmf.distributed``): with ``reduce`` set, ``V`` and ``H`` hold only some of
the columns and ``reduce(t)`` sums ``t`` over all shards (an ``all_reduce``). Every quantity
that sums over columns goes through it: ``‖V‖²``, ``V Hᵀ`` and ``H Hᵀ`` (β = 2), the W-layer
numerators and denominators (other β), and the loss's data term and ``H`` penalty. The
``W`` factors are then replicated and updated identically everywhere; ``H`` stays local.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from . import _validation as val
from ._frobenius import FUSED_BLOCK_BYTES, FrobeniusSolver
from ._general import GeneralSolver
from ._linalg import _chain as _chain  # re-exported
from ._linalg import _mm as _mm  # re-exported
from ._linalg import _mT as _mT  # re-exported
from ._loss import EPSILON, Penalties, beta_divergence, squared_norm
from ._update import MUSolverBase, mu_exponent

# The solvers under their earlier names (tests and experiments reach for them here).
_FrobeniusSolver = FrobeniusSolver
_GeneralSolver = GeneralSolver


@dataclass
class MUOutcome:
    """What a run of multiplicative updates reports (factors are updated in place)."""

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


def run_mu(
    V: torch.Tensor,
    Ws: list[torch.Tensor],
    H: torch.Tensor,
    *,
    beta: float = 2.0,
    mask: torch.Tensor | None = None,
    max_iter: int = 200,
    tol: float = 1e-4,
    penalties: Penalties | None = None,
    eps: float = EPSILON,
    update: Sequence[bool] | None = None,
    check_every: int = 10,
    loss_every: int | None = None,
    callback: Callable[[int, object], object] | None = None,
    verbose: bool = False,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    fused_block_bytes: int = FUSED_BLOCK_BYTES,
) -> MUOutcome:
    """Run multiplicative updates on checked tensors, updating ``Ws`` and ``H`` in place.

    ``update`` has one flag per factor (W1..Wk, H); frozen factors are kept (e.g. ``H`` alone
    is solved with all ``Ws`` fixed). Every ``check_every`` iterations, a matrix whose loss fell
    by less than ``tol`` relative to the previous check is declared converged (``tol = 0``
    never checks). The loss is recorded every ``loss_every`` iterations (default: every
    iteration for β = 2 without a mask, where it is free; every check otherwise) and always at
    the start and the end. ``callback(n_iter, loss)`` is called whenever a loss is recorded
    (``loss`` a float, or an array with one entry per matrix for a batch); a truthy answer stops
    the run, and for a batch an array of one truth value per matrix stops those matrices
    (`dnmf._validation.callback_stops`).

    ``reduce`` (2-D ``V`` only) makes ``V`` and ``H`` one column shard of a larger problem:
    ``reduce(t)`` must sum ``t`` over all shards in place and return it (``all_reduce``), be
    called collectively, and give every shard the same sum, so that the replicated ``Ws``, the
    loss and therefore every convergence decision agree everywhere. ``fused_block_bytes`` sizes
    the row blocks of the β = 2 CPU pass that fuses ``V Hᵀ``, the ``W1`` update and ``W1ᵀ V``
    (default `FUSED_BLOCK_BYTES`; a value larger than ``V`` turns the pass off).
    """
    k = len(Ws)
    pen = penalties or Penalties.none(k + 1)
    update = [True] * (k + 1) if update is None else list(update)
    solver: MUSolverBase
    if beta == 2 and mask is None:
        solver = FrobeniusSolver(V, Ws, H, pen, update, eps, reduce, fused_block_bytes)
        # The loss is free here, but an H-only solve is so cheap that recording it would dominate.
        loss_every = (1 if any(update[:k]) else check_every) if loss_every is None else loss_every
    else:
        solver = GeneralSolver(V, Ws, H, beta, mask, pen, update, eps, reduce)
        loss_every = check_every if loss_every is None else loss_every

    return iterate(
        solver,
        V,
        Ws,
        H,
        max_iter=max_iter,
        tol=tol,
        check_every=check_every,
        loss_every=loss_every,
        callback=callback,
        verbose=verbose,
    )


class Sweeper(Protocol):
    """What `iterate` needs of a solver: one sweep over the factors, and the loss."""

    def sweep(
        self, Ws: list[torch.Tensor], H: torch.Tensor, active: torch.Tensor | None, need_loss: bool
    ) -> torch.Tensor | None: ...

    def loss(self, Ws: list[torch.Tensor], H: torch.Tensor) -> torch.Tensor: ...


def iterate(
    solver: Sweeper,
    V: torch.Tensor,
    Ws: list[torch.Tensor],
    H: torch.Tensor,
    *,
    max_iter: int,
    tol: float,
    check_every: int,
    loss_every: int,
    callback: Callable[[int, object], object] | None,
    verbose: bool,
) -> MUOutcome:
    """The iteration loop every solver shares: ``solver.sweep`` once per iteration, the loss
    recorded every ``loss_every`` iterations and at the ends, per-matrix convergence every
    ``check_every`` (converged matrices of a batch drop out of later sweeps), ``callback``
    (matrices it stops drop out the same way; the run ends when none is left)."""
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
                says = val.callback_stops(callback(it, _to_host(loss)), n_mat)
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
) -> MUOutcome:
    """Pack a run's records: scalars for one matrix, one entry per matrix for a batch."""
    hist = torch.stack([h.reshape(-1) for h in history]).cpu().numpy()
    if not batched:
        return MUOutcome(
            hist[:, 0],
            np.asarray(iters),
            np.asarray(int(n_iter[0])),
            np.asarray(bool(converged[0])),
            bool(stopped[0]),
        )
    return MUOutcome(
        hist, np.asarray(iters), n_iter.numpy(), converged.numpy(), stopped.numpy().copy()
    )


def _to_host(loss: torch.Tensor):
    arr = loss.detach().cpu().numpy()
    return float(arr) if arr.ndim == 0 else arr


def _report(it: int, loss: torch.Tensor) -> None:
    vals = loss.reshape(-1).cpu().numpy()
    text = f"{vals[0]:.6e}" if vals.size == 1 else f"mean {vals.mean():.6e} max {vals.max():.6e}"
    print(f"iter {it:6d}  loss {text}")


def run_hals_codes(
    V: torch.Tensor,
    Ws: list[torch.Tensor],
    H: torch.Tensor,
    *,
    max_iter: int = 200,
    tol: float = 1e-4,
    l1: float = 0.0,
    l2: float = 0.0,
    check_every: int = 10,
    verbose: bool = False,
) -> MUOutcome:
    """Codes ``H ≥ 0`` for β = 2 with the factors fixed, by HALS (exact row-wise descent).

    The subproblem ``min_H ½‖V − P H‖² + l1·ΣH + ½·l2·‖H‖²`` (``P = W1…Wk``) is convex; each
    sweep minimizes it exactly over one row of ``H`` at a time from the constant ``PᵀV`` and
    ``PᵀP``, which converges linearly where multiplicative updates crawl on ill-conditioned
    ``P``. Same bookkeeping as `run_mu` (``H`` updated in place, per-matrix convergence).
    It is the ``H`` block of `dnmf._hals.run_hals` run alone.
    """
    from ._hals import run_hals  # lazy: dnmf._hals builds on this module

    k = len(Ws)
    return run_hals(
        V,
        Ws,
        H,
        max_iter=max_iter,
        tol=tol,
        penalties=Penalties([0.0] * k + [l1], [0.0] * k + [l2]),
        update=[False] * k + [True],
        check_every=check_every,
        verbose=verbose,
    )


__all__ = [
    "EPSILON",
    "FUSED_BLOCK_BYTES",
    "MUOutcome",
    "Penalties",
    "beta_divergence",
    "mu_exponent",
    "run_hals_codes",
    "run_mu",
    "squared_norm",
]
