"""Multiplicative updates for ``V ≈ W1 W2 … Wk H`` (pure tensor code, no autograd).

Notation: ``V`` is ``(…, m, n)`` (a leading batch dimension is optional), ``W1`` is
``(…, m, r1)``, ``Wl`` is ``(…, r(l-1), rl)`` and ``H`` is ``(…, rk, n)``. Factors are updated
in the order W1, …, Wk, H by the update of `dnmf._solvers.update` (so one layer is exactly
scikit-learn's ``_fit_multiplicative_update``). `mu_solver` picks one of two solvers, and
`run_mu` runs it through the shared loop (`dnmf._solvers.loop.iterate`):

* `dnmf._solvers.frobenius.FrobeniusSolver` (β = 2, no mask): ``V`` only through ``V Hᵀ`` and
  ``Pᵀ V`` (fused into one pass over blocks of rows on the CPU), the loss from carried Gram
  matrices; no ``m × n`` temporary exists.
* `dnmf._solvers.general.GeneralSolver` (any β, optional mask): forms ``Λ`` and one elementwise
  ``m × n`` work buffer, reused across layers and iterations.

Both update the factors in place and freeze converged matrices of a batch (their ratio is
set to 1), so a converged matrix stops changing while the others go on. The loss functions
live in `dnmf._solvers.loss`, the small tensor helpers in `dnmf._solvers.linalg`.

Column shards (``dnmf.distributed``): with ``reduce`` set, ``V`` and ``H`` hold only some of
the columns and ``reduce(t)`` sums ``t`` over all shards (an ``all_reduce``). Every quantity
that sums over columns goes through it: ``‖V‖²``, ``V Hᵀ`` and ``H Hᵀ`` (β = 2), the W-layer
numerators and denominators (other β), and the loss's data term and ``H`` penalty. The
``W`` factors are then replicated and updated identically everywhere; ``H`` stays local.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .frobenius import FUSED_BLOCK_BYTES, FrobeniusSolver
from .general import GeneralSolver
from .loop import SolverOutcome, iterate
from .loss import EPSILON, Penalties
from .sparse import Data, SparseKLSolver, SparseMatrix


def mu_solver(
    V: Data,
    Ws: list[torch.Tensor],
    H: torch.Tensor,
    *,
    beta: float = 2.0,
    mask: torch.Tensor | None = None,
    penalties: Penalties | None = None,
    eps: float = EPSILON,
    update: Sequence[bool] | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    fused_block_bytes: int = FUSED_BLOCK_BYTES,
) -> FrobeniusSolver | GeneralSolver | SparseKLSolver:
    """The multiplicative-update solver of a fit: `FrobeniusSolver` for β = 2 without a mask,
    `dnmf._solvers.sparse.SparseKLSolver` for β = 1 on a sparse ``V``, else `GeneralSolver`
    (arguments as `run_mu`)."""
    k = len(Ws)
    pen = penalties or Penalties.none(k + 1)
    flags = [True] * (k + 1) if update is None else list(update)
    if beta == 2 and mask is None:
        return FrobeniusSolver(V, Ws, H, pen, flags, eps, reduce, fused_block_bytes)
    if isinstance(V, SparseMatrix):
        if beta != 1 or mask is not None:
            raise ValueError(
                f"a sparse V is fitted with beta=2 or 1 and no mask, got beta={beta:g}"
                f"{' and a mask' if mask is not None else ''}"
            )
        return SparseKLSolver(V, Ws, H, pen, flags, eps, reduce)
    return GeneralSolver(V, Ws, H, beta, mask, pen, flags, eps, reduce)


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
) -> SolverOutcome:
    """Run multiplicative updates on checked tensors, updating ``Ws`` and ``H`` in place.

    ``update`` has one flag per factor (W1..Wk, H); frozen factors are kept (e.g. ``H`` alone
    is solved with all ``Ws`` fixed). Every ``check_every`` iterations, a matrix whose loss fell
    by less than ``tol`` relative to the previous check is declared converged (``tol = 0``
    never checks). The loss is recorded every ``loss_every`` iterations (default: every
    iteration for β = 2 without a mask, where it is free; every check otherwise) and always at
    the start and the end. ``callback(n_iter, loss)`` is called whenever a loss is recorded
    (``loss`` a float, or an array with one entry per matrix for a batch); a truthy answer stops
    the run, and for a batch an array of one truth value per matrix stops those matrices
    (`dnmf._solvers.loop.callback_stops`).

    ``reduce`` (2-D ``V`` only) makes ``V`` and ``H`` one column shard of a larger problem:
    ``reduce(t)`` must sum ``t`` over all shards in place and return it (``all_reduce``), be
    called collectively, and give every shard the same sum, so that the replicated ``Ws``, the
    loss and therefore every convergence decision agree everywhere. ``fused_block_bytes`` sizes
    the row blocks of the β = 2 CPU pass that fuses ``V Hᵀ``, the ``W1`` update and ``W1ᵀ V``
    (default `FUSED_BLOCK_BYTES`; a value larger than ``V`` turns the pass off).
    """
    solver = mu_solver(
        V,
        Ws,
        H,
        beta=beta,
        mask=mask,
        penalties=penalties,
        eps=eps,
        update=update,
        reduce=reduce,
        fused_block_bytes=fused_block_bytes,
    )
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


__all__ = ["FUSED_BLOCK_BYTES", "mu_solver", "run_mu"]
