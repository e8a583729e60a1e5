"""Arguments of a column-split run: checked on each process, then agreed on by all of them.

Each process checks its own arguments with the checks `dnmf.factorize` uses
(``dnmf._validation``), then every process sends the others what it found (`meta`), so
that they all fail together or all go on: same rows, same settings, columns that tile
``[0, n)``, ranks that the initialisation can produce and, for ``init='custom'``, the same
``Ws``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import _validation as val
from .._solvers import resolve_solver
from .._solvers.loss import Penalties
from ._comm import error_text
from ._init import Layout


@dataclass
class ShardArgs:
    """One process's checked arguments (``V`` is its columns, as a tensor)."""

    V: torch.Tensor
    kind: str
    ranks: list[int]
    beta: float
    max_iter: int
    tol: float
    eps: float
    check_every: int
    loss_every: int | None
    init: str
    pretrain: bool | int
    init_sample: int
    seed: int | None
    pen: Penalties
    custom: tuple[list[torch.Tensor], torch.Tensor] | None
    solver: str = "mu"  # resolved (dnmf._solver.resolve_solver)

    def settings(self) -> dict[str, Any]:
        """What must be the same on every process."""
        return dict(
            ranks=tuple(self.ranks),
            beta=self.beta,
            max_iter=self.max_iter,
            tol=self.tol,
            init=self.init,
            pretrain=(
                bool(self.pretrain)
                if isinstance(self.pretrain, (bool, np.bool_))
                else int(self.pretrain)
            ),
            l1=tuple(self.pen.l1),
            l2=tuple(self.pen.l2),
            eps=self.eps,
            check_every=self.check_every,
            loss_every=self.loss_every,
            init_sample=self.init_sample,
            dtype=str(self.V.dtype),
            seed=self.seed,
            solver=self.solver,
        )


def check_shard_args(
    V_local: Any,
    ranks: Any,
    *,
    col_offset: Any,
    n_cols: Any,
    beta: Any,
    max_iter: Any,
    tol: Any,
    init: Any,
    pretrain: Any,
    l1: Any,
    l2: Any,
    eps: Any,
    seed: Any,
    device: Any,
    dtype: Any,
    Ws: Any,
    H: Any,
    check_every: Any,
    loss_every: Any,
    init_sample: Any,
    solver: Any = "auto",
) -> ShardArgs:
    """This process's arguments of `dnmf.distributed.factorize_columns`, checked."""
    if isinstance(V_local, np.ma.MaskedArray):
        raise ValueError("V_local is a numpy masked array; factorize_columns takes no mask")
    Vt, _ = val.check_data(
        V_local,
        None,
        dtype=val.parse_dtype(dtype),
        device=val.parse_device(device),
        name="V_local",
        allow_batch=False,
    )
    for name, v in (("col_offset", col_offset), ("n_cols", n_cols)):
        if v is not None:
            val.check_positive_int(v, name, allow_zero=name == "col_offset")
    ranks_ = val.parse_ranks(ranks)
    beta_, max_iter, tol, eps, check_every = val.check_solver_args(
        beta, max_iter, tol, eps, check_every
    )
    if loss_every is not None:
        loss_every = val.check_positive_int(loss_every, "loss_every")
    val.check_init_name(init)
    pretrain = val.check_pretrain(pretrain)
    init_sample = val.check_positive_int(init_sample, "init_sample")
    seed = val.check_seed(seed)
    val.check_beta_zeros(Vt, beta_, None, "V_local")
    pen = val.parse_penalties(l1, l2, len(ranks_) + 1)
    custom = None
    if init == "custom":
        custom = val.check_custom_factors(Ws, H, Vt, ranks_)
    elif Ws is not None or H is not None:
        raise ValueError("Ws and H are only used with init='custom'")
    return ShardArgs(
        Vt,
        val.as_kind(V_local),
        ranks_,
        beta_,
        max_iter,
        tol,
        eps,
        check_every,
        loss_every,
        init,
        pretrain,
        init_sample,
        seed,
        pen,
        custom,
        resolve_solver(solver, beta_, None, len(ranks_)),
    )


def meta(
    args: ShardArgs | None,
    err: BaseException | None,
    col_offset: Any,
    n_cols: Any,
    seed_draw: int | None,
) -> dict[str, Any]:
    """What this process tells the others (plain Python objects)."""
    out: dict[str, Any] = {
        "n_local": None if args is None else int(args.V.shape[1]),
        "m": None if args is None else int(args.V.shape[0]),
        "col_offset": col_offset,
        "n_cols": n_cols,
        "settings": repr(sorted(({} if args is None else args.settings()).items())),
        "err": error_text(err),
        "seed_draw": seed_draw,
    }
    if args is not None and args.custom is not None:
        out["ws_sums"] = [float(W.double().sum()) for W in args.custom[0]]
    return out


def agreed_layout(args: ShardArgs, metas: list[dict[str, Any]]) -> Layout:
    """Check what every process sent (the same on all of them, so all raise alike) and return
    where the columns are."""
    ms = [m["m"] for m in metas]
    if len(set(ms)) != 1:
        raise ValueError(f"every rank must hold the same rows of V; row counts by rank: {ms}")
    keys = [m["settings"] for m in metas]
    if len(set(keys)) != 1:
        diff = [r for r, kk in enumerate(keys) if kk != keys[0]]
        raise ValueError(
            f"ranks {diff} were called with other settings than rank 0 "
            f"(ranks, beta, max_iter, tol, init, pretrain, l1, l2, eps, "
            f"check_every, loss_every, init_sample, dtype and seed must agree)"
        )
    lay = _layout(metas, [m["n_cols"] for m in metas])
    val.check_init(args.init, args.ranks, (ms[0], lay.n), n_sampled=args.init_sample)
    if args.init == "custom":
        sums = np.array([m["ws_sums"] for m in metas])
        if not np.allclose(sums, sums[0], rtol=1e-10, atol=0):
            raise ValueError("init='custom' needs the same Ws on every rank; they differ")
    return lay


def _layout(metas: list[dict[str, Any]], n_cols_arg: Sequence[Any]) -> Layout:
    counts = [int(m["n_local"]) for m in metas]
    given = [m["col_offset"] for m in metas]
    if all(g is None for g in given):
        offsets = [int(sum(counts[:r])) for r in range(len(counts))]
    elif any(g is None for g in given):
        raise ValueError("col_offset must be given on every rank or on none")
    else:
        offsets = [int(g) for g in given]
    n = int(sum(counts))
    spans = sorted(zip(offsets, counts, range(len(counts))))
    pos = 0
    for o, k, r in spans:
        if o != pos:
            raise ValueError(
                f"column blocks must tile [0, n) without gaps or overlaps: rank {r} starts at "
                f"column {o} but the blocks before it end at {pos} "
                f"(offsets {offsets}, column counts {counts})"
            )
        pos += k
    ns = {x for x in n_cols_arg if x is not None}
    if ns and ns != {n}:
        raise ValueError(
            f"n_cols={sorted(ns)} does not match the {n} columns the ranks hold {counts}"
        )
    return Layout(offsets, counts, n)
