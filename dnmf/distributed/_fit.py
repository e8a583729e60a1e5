"""The column-split solver `factorize_columns` and `gather_result`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import _validation as val
from .._fitting import initial_factors, warn_unconverged
from .._init import make_generator
from .._result import FactorizationResult
from .._solvers import run_solver
from .._solvers.loop import SolverOutcome, callback_stops
from .._solvers.loss import EPSILON
from ._check import ShardArgs, agreed_layout, check_shard_args, meta
from ._comm import Comm, fail_together, mark_collective
from ._init import Layout, init_layer


@dataclass
class ShardedFactorizationResult(FactorizationResult):
    """A `dnmf.FactorizationResult` of one process of a column-split run.

    ``Ws`` are the full factors (identical on every process); ``H`` is **this process's block**
    of codes, ``rk × n_local``, for global columns ``col_offset … col_offset + n_local - 1`` of
    the ``n_cols`` columns. ``loss_history``, ``n_iter`` and ``converged`` are global (the same
    on every process). ``reconstruct()`` gives this process's columns of ``V``; ``save()``
    writes the local ``H`` only: use `gather_result` for the whole ``H``.
    ``seconds`` is this process's wall time in `factorize_columns`.
    """

    col_offset: int = 0
    n_cols: int = 0
    rank: int = 0
    world_size: int = 1
    seconds: float = float("nan")


def factorize_columns(
    V_local: Any,
    ranks: int | Sequence[int],
    *,
    col_offset: int | None = None,
    n_cols: int | None = None,
    beta: float | str = 2,
    max_iter: int = 200,
    tol: float = 1e-4,
    init: str = "nndsvda",
    pretrain: bool | int = True,
    solver: str = "auto",
    l1: float | Sequence[float] = 0.0,
    l2: float | Sequence[float] = 0.0,
    eps: float = EPSILON,
    seed: int | None = None,
    device: Any = None,
    dtype: Any = None,
    verbose: bool = False,
    callback: Callable[[int, Any], Any] | None = None,
    Ws: Sequence[Any] | None = None,
    H: Any = None,
    check_every: int = 10,
    loss_every: int | None = None,
    init_sample: int = 2048,
    group: Any = None,
) -> ShardedFactorizationResult:
    """Deep NMF ``V ≈ W1 … Wk H`` of a matrix whose columns are split across processes.

    Call it on every process of ``group`` (default: the default ``torch.distributed`` group;
    a single process when ``torch.distributed`` is not initialised) with that process's
    columns. Everything else must be the same on every process. All collectives use ``V``'s
    device: CPU tensors for ``gloo``, CUDA tensors (``device='cuda:<local rank>'``) for
    ``nccl``.

    Parameters
    ----------
    V_local : array (m, n_local)
        This process's columns of the nonnegative ``m × n`` data (one sample per column); numpy
        or torch, as `dnmf.factorize` (float32/float64 kept, integers become float64).
        Every process needs at least one column and the same ``m``.
    ranks : int or sequence of int
        Inner ranks ``[r1, …, rk]``, as `dnmf.factorize`.
    col_offset, n_cols : int, optional
        Global index of the first local column, and the total column count. By default the
        blocks are taken to be consecutive in rank order (as `dnmf.shards.column_range`
        gives them); when given, they are checked (blocks must tile ``[0, n)``).
    beta, max_iter, tol, pretrain, solver, l1, l2, eps, check_every, loss_every
        As `dnmf.factorize` (no mask, no batch). ``tol`` is tested on the global loss;
        the HALS solvers sum ``H``'s change over the shards for their inner-repetition rule,
        so any split takes the same steps.
    init : {'nndsvda', 'nndsvd', 'nndsvdar', 'random', 'custom'}
        'random': keyed by the seed and each column's global index (any split gives the same
        factors; not the same draws as `dnmf.factorize`). 'nndsvd*': NNDSVD whose
        singular vectors come from ``init_sample`` columns gathered on rank 0 (all columns,
        and then exactly `dnmf.factorize`'s init, when ``n <= init_sample``).
        'custom': ``Ws`` (full factors, the same on every process) and ``H`` (this process's
        ``rk × n_local`` block); no pretraining.
    seed : int, optional
        Seeds the initialisation (rank 0 draws one when ``None``). Must agree across ranks.
    device, dtype : optional
        As `dnmf.factorize` (a device this machine lacks is a ``ValueError``).
    verbose : bool
        Rank 0 prints the loss at every check.
    callback : callable, optional
        ``callback(n_iter, loss)`` on every process after each recorded loss (the global loss,
        a float); the run stops when it returns a truthy value (``True``, ``np.True_``,
        ``loss < target``, …) on any process. A value that is not callable is refused before
        any work.
    init_sample : int
        Columns sampled for the NNDSVD initialisation (they are gathered on rank 0).
    group : ProcessGroup, optional
        The process group (default: the whole world).

    Returns
    -------
    ShardedFactorizationResult
        Full ``Ws`` (replicated), this process's ``H`` block, global loss history, ``n_iter``
        and ``converged`` (the same on every process). numpy for numpy input, tensors for
        tensor input.

    Raises
    ------
    ValueError, TypeError
        For bad input on any process, raised on **every** process (collectively, so no
        process is left waiting): NaN/Inf or negative entries, different row counts or
        settings across ranks, blocks that do not tile the columns, ranks that do not fit.
    """
    t_start = time.perf_counter()
    comm = Comm(group)
    args: ShardArgs | None = None
    err: BaseException | None = None
    try:
        val.check_callback(callback)
        args = check_shard_args(
            V_local,
            ranks,
            col_offset=col_offset,
            n_cols=n_cols,
            beta=beta,
            max_iter=max_iter,
            tol=tol,
            init=init,
            pretrain=pretrain,
            l1=l1,
            l2=l2,
            eps=eps,
            seed=seed,
            device=device,
            dtype=dtype,
            Ws=Ws,
            H=H,
            check_every=check_every,
            loss_every=loss_every,
            init_sample=init_sample,
            solver=solver,
        )
    except (ValueError, TypeError) as exc:
        err = exc
    # rank 0 draws the seed that every process then uses (after the checks, as it always did)
    draw = int(torch.randint(0, 2**62, (1,))) if comm.rank == 0 and seed is None else None
    metas = comm.objects(meta(args, err, col_offset, n_cols, draw))
    # every process now knows every other's state: fail together, or go on together
    fail_together(err, [m["err"] for m in metas], "input")
    assert args is not None
    try:
        lay = agreed_layout(args, metas)
    except ValueError as exc:
        raise mark_collective(exc) from None
    seed_ = args.seed if args.seed is not None else int(metas[0]["seed_draw"])
    out, Ws_, H_, pre_hist = _fit_shard(comm, args, lay, seed_, callback, verbose)
    if comm.rank == 0:
        warn_unconverged(out, args.fit, "dnmf.distributed.factorize_columns")
    return ShardedFactorizationResult.from_outcome(
        out,
        Ws_,
        H_,
        kind=args.kind,
        beta=args.fit.beta,
        pretrain_loss_histories=pre_hist,
        col_offset=lay.offsets[comm.rank],
        n_cols=lay.n,
        rank=comm.rank,
        world_size=comm.world,
        seconds=time.perf_counter() - t_start,
    )


def _fit_shard(
    comm: Comm,
    a: ShardArgs,
    lay: Layout,
    seed: int,
    callback: Callable[[int, Any], Any] | None,
    verbose: bool,
) -> tuple[SolverOutcome, list[torch.Tensor], torch.Tensor, list[np.ndarray]]:
    """Initialise (or pretrain) and fit this process's shard, in step with the others."""
    fit = a.fit
    gen = make_generator(seed) if comm.rank == 0 else None  # rank 0's SVDs, as factorize's gen
    pre_hist: list[np.ndarray] = []
    with torch.no_grad():
        if a.custom is not None:
            Ws_, H_ = a.custom
        else:
            Ws_, H_, pre_hist = initial_factors(
                a.V,
                a.ranks,
                lambda l, X, r: init_layer(comm, X, r, fit.init, lay, seed, l, a.init_sample, gen),
                fit,
                reduce=comm.sum_,
            )
        out = run_solver(
            a.V,
            Ws_,
            H_,
            fit,
            callback=_any_rank_stops(comm, callback, a.V.device),
            verbose=verbose and comm.rank == 0,
            reduce=comm.sum_,
        )
        for W in Ws_:  # replicas are identical already; make it exact
            comm.broadcast_(W)
    return out, Ws_, H_, pre_hist


def _any_rank_stops(
    comm: Comm, callback: Callable[[int, Any], Any] | None, device: torch.device
) -> Callable[[int, Any], bool] | None:
    """The user's callback on every process; the run stops when it says so on any of them."""
    if callback is None:
        return None

    def cb(it: int, loss: Any) -> bool:
        says = bool(callback_stops(callback(it, loss), 1)[0])  # truthy answers stop it
        stop = torch.tensor([1.0 if says else 0.0], device=device)
        return bool(comm.max_(stop)[0] > 0)

    return cb


def gather_result(
    result: ShardedFactorizationResult, *, group: Any = None, device: Any = None
) -> FactorizationResult | None:
    """Collective: the whole ``H`` (columns in global order) on rank 0, ``None`` elsewhere.

    Rank 0 gets an ordinary `dnmf.FactorizationResult` (``save()`` it, or
    ``dnmf.load`` it back); its ``H`` is ``rk × n``. ``device`` is where the blocks travel
    (default: where ``H`` is; ``nccl`` needs CUDA tensors).
    """
    comm = Comm(group)
    H = result.H
    kind = val.as_kind(H)
    Ht = H if isinstance(H, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(H))
    if device is not None:
        Ht = Ht.to(device)
    info = comm.objects((int(result.col_offset), int(Ht.shape[1])))
    blocks = comm.gather_cols(Ht, [c for _, c in info])
    if blocks is None:
        return None
    order = np.argsort([o for o, _ in info], kind="stable")
    full = torch.cat([blocks[i] for i in order], dim=1)
    if kind == "torch":
        full = full.to(H.device) if isinstance(H, torch.Tensor) else full
    return FactorizationResult(
        Ws=list(result.Ws),
        H=full if kind == "torch" else full.cpu().numpy(),
        loss_history=result.loss_history,
        loss_iters=result.loss_iters,
        n_iter=result.n_iter,
        converged=result.converged,
        beta=result.beta,
        ranks=result.ranks,
        pretrain_loss_histories=list(result.pretrain_loss_histories),
    )
