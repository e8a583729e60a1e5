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
from .._solvers import FitSettings, resolve_solver
from ._comm import error_text
from ._init import Layout


@dataclass
class ShardArgs:
    """One process's checked arguments: its columns ``V`` (a tensor), the settings of the fit
    (`FitSettings`, as `dnmf.factorize` builds them) and what only a column-split run has."""

    V: torch.Tensor
    kind: str
    ranks: list[int]
    fit: FitSettings
    init_sample: int
    seed: int | None
    custom: tuple[list[torch.Tensor], torch.Tensor] | None

    def settings(self) -> dict[str, Any]:
        """What must be the same on every process."""
        f = self.fit
        return dict(
            ranks=tuple(self.ranks),
            beta=f.beta,
            max_iter=f.max_iter,
            tol=f.tol,
            init=f.init,
            pretrain=f.pretrain,
            l1=tuple(f.penalties.l1),
            l2=tuple(f.penalties.l2),
            eps=f.eps,
            check_every=f.check_every,
            loss_every=f.loss_every,
            init_sample=self.init_sample,
            dtype=str(self.V.dtype),
            seed=self.seed,
            solver=f.solver,
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
    fit = FitSettings(
        beta=beta_,
        max_iter=max_iter,
        tol=tol,
        eps=eps,
        check_every=check_every,
        loss_every=loss_every,
        penalties=pen,
        solver=resolve_solver(solver, beta_, None, len(ranks_)),
        init=init,
        pretrain=pretrain,
    )
    return ShardArgs(Vt, val.as_kind(V_local), ranks_, fit, init_sample, seed, custom)


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
    val.check_init(args.fit.init, args.ranks, (ms[0], lay.n), n_sampled=args.init_sample)
    if args.fit.init == "custom":
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
