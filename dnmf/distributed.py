"""``dnmf.distributed``: Deep NMF ``V ≈ W1 … Wk H``, the columns of ``V`` split across processes.

Each process holds a contiguous block of columns of ``V`` (its samples) and the same columns of
``H``; the factors ``W1 … Wk`` are replicated. ``H`` updates are local. A ``W``-layer update
needs sums over all columns, which are small matrices (for β = 2: ``V Hᵀ`` (``m × rk``) and
``H Hᵀ`` (``rk × rk``); for other β the layer's numerator and denominator), so they are summed
with ``all_reduce`` and every process applies the same update. The loss is summed the same
way, so convergence is decided on the global value and every process stops at the same
iteration. The updates are those of :func:`dnmf.factorize` (shared code in ``dnmf._mu``).

* :func:`factorize_columns` is the solver; it runs unchanged in a single process when
  ``torch.distributed`` is not initialised (or the group has one process) and then gives the
  same answer as any number of processes on the same columns (to rounding).
* :func:`gather_result` collects ``H`` on rank 0 (``H`` is ``rk × n``, small next to ``V``).
* :func:`run_local` runs it on ``N`` local processes without ``torchrun`` (``gloo`` on
  127.0.0.1), e.g. from a notebook or a test.
* ``python -m dnmf.distributed`` is the ``torchrun`` entry point (see :func:`main`).

Initialisation never needs all of ``V`` in one process: ``init='random'`` draws ``W`` from the
seed and each block of 256 columns of ``H`` from the seed and the block's global index, so any
split of the columns gives the same factors; ``init='nndsvd'|'nndsvda'|'nndsvdar'`` computes
the leading singular vectors ``U`` of a sample of ``init_sample`` columns (chosen from the
seed) gathered on rank 0, broadcasts ``U``, and completes NNDSVD from ``Uᵀ V`` on each shard
with global norms. With ``init_sample >= n`` the sample is all of ``V`` and NNDSVD is exactly
:func:`dnmf.factorize`'s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import numbers
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from . import _validation as val
from ._init import top_svd
from ._mu import EPSILON, Penalties, run_mu
from .factorize import (
    FactorizationResult,
    _check_common,
    _out,
    _warn_unconverged,
    load,
    make_generator,
    pretrain_layers,
)
from .shards import ColumnShard, column_range, load_image_columns, load_npy_columns

#: Columns per block of the keyed random generator: block ``b`` (global columns
#: ``[256 b, 256 b + 256)``) draws from a generator seeded by ``(seed, layer, b)``.
RANDOM_BLOCK = 256
_TAG_W, _TAG_H, _TAG_SAMPLE = 1, 2, 3
INITS = ("random", "nndsvd", "nndsvda", "nndsvdar", "custom")
Array = Any


# --------------------------------------------------------------------------- communication


class _Comm:
    """The collectives the solver needs, as no-ops for a single process."""

    def __init__(self, group: Any = None):
        self.on = dist.is_available() and dist.is_initialized()
        if group is not None and not self.on:
            raise ValueError("group was given but torch.distributed is not initialised")
        self.group = group
        self.rank = dist.get_rank(group) if self.on else 0
        if self.rank < 0:
            raise ValueError("this process is not a member of the given group")
        self.world = dist.get_world_size(group) if self.on else 1
        self.root = dist.get_global_rank(group, 0) if (self.on and group is not None) else 0

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """In-place sum over the processes (``all_reduce``); returns ``t``."""
        if self.world > 1:
            if not t.is_contiguous():
                t = t.contiguous()
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return t

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return t

    def objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (``all_gather_object``)."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def broadcast_(self, t: torch.Tensor) -> torch.Tensor:
        """Rank 0's ``t`` everywhere (in place)."""
        if self.world > 1:
            dist.broadcast(t, src=self.root, group=self.group)
        return t

    def gather_cols(self, t: torch.Tensor, counts: Sequence[int]) -> list[torch.Tensor] | None:
        """Every process's ``p × counts[rank]`` block on rank 0 (rank order); ``None`` elsewhere."""
        if self.world == 1:
            return [t]
        cmax = max(max(counts), 1)
        buf = t.new_zeros((t.shape[0], cmax))
        buf[:, : t.shape[1]] = t
        bufs = [torch.empty_like(buf) for _ in range(self.world)] if self.rank == 0 else None
        dist.gather(buf, bufs, dst=self.root, group=self.group)
        if bufs is None:
            return None
        return [b[:, :c] for b, c in zip(bufs, counts)]


def _agree(comm: _Comm, err: BaseException | None, what: str = "input") -> None:
    """Collective: raise on every process if any process hit an error (no one is left waiting).

    The process that failed re-raises its own exception; the others raise ``ValueError`` naming
    the failing rank. Every exception raised here has ``collective = True``.
    """
    msg = None if err is None else f"{type(err).__name__}: {err}"
    msgs = comm.objects(msg)
    if err is not None:
        err.collective = True  # type: ignore[attr-defined]
        raise err
    bad = [(r, m) for r, m in enumerate(msgs) if m is not None]
    if bad:
        exc = ValueError("; ".join(f"rank {r} refused its {what}: {m}" for r, m in bad))
        exc.collective = True  # type: ignore[attr-defined]
        raise exc


# --------------------------------------------------------------------------- results


@dataclass
class ShardedFactorizationResult(FactorizationResult):
    """A :class:`dnmf.FactorizationResult` of one process of a column-split run.

    ``Ws`` are the full factors (identical on every process); ``H`` is **this process's block**
    of codes, ``rk × n_local``, for global columns ``col_offset … col_offset + n_local - 1`` of
    the ``n_cols`` columns. ``loss_history``, ``n_iter`` and ``converged`` are global (the same
    on every process). ``reconstruct()`` gives this process's columns of ``V``; ``save()``
    writes the local ``H`` only: use :func:`gather_result` for the whole ``H``.
    ``seconds`` is this process's wall time in :func:`factorize_columns`.
    """

    col_offset: int = 0
    n_cols: int = 0
    rank: int = 0
    world_size: int = 1
    seconds: float = float("nan")


# --------------------------------------------------------------------------- initialisation


def _derive_seed(*keys: int) -> int:
    """A 64-bit generator seed from integer keys (numpy's ``SeedSequence`` hash)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0])


def _keyed_normal(seed: int, tag: int, layer: int, rows: int, cols: int) -> torch.Tensor:
    """``rows × cols`` standard normals (float64, CPU) from the keys alone."""
    gen = torch.Generator().manual_seed(_derive_seed(seed, tag, layer))
    return torch.randn((rows, cols), generator=gen, dtype=torch.float64)


def keyed_column_normal(
    seed: int, layer: int, rows: int, start: int, stop: int, tag: int = _TAG_H
) -> torch.Tensor:
    """Standard normals for global columns ``start … stop - 1`` (``rows × (stop - start)``).

    Column ``j`` depends only on ``(seed, tag, layer, j)``: it comes from block
    ``j // RANDOM_BLOCK``, drawn by a generator seeded from ``(seed, tag, layer, block)``. So
    any split of the columns over processes draws the same matrix.
    """
    out = torch.empty((rows, stop - start), dtype=torch.float64)
    if stop <= start:
        return out
    B = RANDOM_BLOCK
    for b in range(start // B, (stop - 1) // B + 1):
        gen = torch.Generator().manual_seed(_derive_seed(seed, tag, layer, b))
        blk = torch.randn((rows, B), generator=gen, dtype=torch.float64)
        lo, hi = max(start, b * B), min(stop, (b + 1) * B)
        out[:, lo - start : hi - start] = blk[:, lo - b * B : hi - b * B]
    return out


def sample_columns(n_cols: int, n_sample: int, seed: int, layer: int = 0) -> np.ndarray:
    """Sorted global indices of the columns the NNDSVD init samples (all when ``n_sample >= n``)."""
    if n_sample >= n_cols:
        return np.arange(n_cols, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _TAG_SAMPLE, int(layer)]))
    return np.sort(rng.choice(n_cols, size=n_sample, replace=False)).astype(np.int64)


@dataclass
class _Layout:
    """Where every process's columns are: ``offsets[r]``, ``counts[r]``, ``n`` in all."""

    offsets: list[int]
    counts: list[int]
    n: int


def _global_mean(comm: _Comm, X: torch.Tensor, n: int) -> torch.Tensor:
    total = comm.sum_(X.sum(dtype=torch.float64).reshape(1))
    return (total / (X.shape[0] * n))[0]


def _random_layer(comm: _Comm, X: torch.Tensor, r: int, lay: _Layout, seed: int, layer: int):
    """|N(0, 1)| · sqrt(mean(X) / r), as ``dnmf._init.random_init``, with keyed draws."""
    avg = float((_global_mean(comm, X, lay.n) / r).sqrt())  # a float: the draws are on the CPU
    p, off = X.shape[0], lay.offsets[comm.rank]
    W = (avg * _keyed_normal(seed, _TAG_W, layer, p, r).abs()).to(X.device, X.dtype)
    H = avg * keyed_column_normal(seed, layer, r, off, off + X.shape[1]).abs()
    return W.contiguous(), H.to(X.device, X.dtype).contiguous()


def _nndsvd_layer(
    comm: _Comm,
    X: torch.Tensor,
    r: int,
    variant: str,
    lay: _Layout,
    seed: int,
    layer: int,
    n_sample: int,
    gen: torch.Generator | None,
    eps: float = 1e-6,
):
    """NNDSVD of the sharded ``X`` (``p × n``) from the top-``r`` left singular vectors of a
    column sample; mirrors ``dnmf._init.nndsvd`` (identical when the sample is every column)."""
    p, off, c = X.shape[0], lay.offsets[comm.rank], X.shape[1]
    idx = sample_columns(lay.n, n_sample, seed, layer)
    counts = [int(((idx >= o) & (idx < o + k)).sum()) for o, k in zip(lay.offsets, lay.counts)]
    mine = torch.as_tensor(idx[(idx >= off) & (idx < off + c)] - off, device=X.device)
    blocks = comm.gather_cols(X.index_select(1, mine), counts)
    U = torch.empty((p, r), dtype=X.dtype, device=X.device)
    if comm.rank == 0:
        assert blocks is not None and gen is not None
        order = np.argsort(lay.offsets, kind="stable")  # global column order
        C = torch.cat([blocks[i] for i in order], dim=1)
        U.copy_(top_svd(C, r, gen)[0])
        del C, blocks
    comm.broadcast_(U)
    Y = U.T @ X  # (r, c): S Vh restricted to this shard (exact when the sample is all of X)
    S = comm.sum_(Y.double().square().sum(dim=1)).sqrt().to(X.dtype)
    tiny = torch.finfo(X.dtype).tiny
    Vh = Y / S.clamp_min(tiny).unsqueeze(1)
    W = torch.zeros((p, r), dtype=X.dtype, device=X.device)
    H = torch.zeros((r, c), dtype=X.dtype, device=X.device)
    s0 = S[:1].sqrt()
    W[:, 0] = s0 * U[:, 0].abs()
    H[0, :] = s0 * Vh[0, :].abs()
    if r > 1:
        x, y = U[:, 1:], Vh[1:, :]
        xp, xn = x.clamp_min(0), (-x).clamp_min(0)
        yp, yn = y.clamp_min(0), (-y).clamp_min(0)
        xpn, xnn = xp.norm(dim=0), xn.norm(dim=0)
        y2 = comm.sum_(
            torch.stack([yp.double().square().sum(dim=1), yn.double().square().sum(dim=1)])
        )
        ypn, ynn = y2[0].sqrt().to(X.dtype), y2[1].sqrt().to(X.dtype)
        mp, mn = xpn * ypn, xnn * ynn
        pos = mp > mn  # keep the part (positive or negative) with the larger energy
        u = torch.where(
            pos.unsqueeze(0),
            xp / xpn.clamp_min(tiny).unsqueeze(0),
            xn / xnn.clamp_min(tiny).unsqueeze(0),
        )
        v = torch.where(
            pos.unsqueeze(1),
            yp / ypn.clamp_min(tiny).unsqueeze(1),
            yn / ynn.clamp_min(tiny).unsqueeze(1),
        )
        lbd = (S[1:] * torch.where(pos, mp, mn)).sqrt()
        W[:, 1:] = lbd.unsqueeze(0) * u
        H[1:, :] = lbd.unsqueeze(1) * v
    W[W < eps] = 0
    H[H < eps] = 0
    if variant == "nndsvd":
        return W, H
    avg = _global_mean(comm, X, lay.n).to(X.dtype)
    if variant == "nndsvda":
        W = torch.where(W == 0, avg, W)
        H = torch.where(H == 0, avg, H)
    else:  # nndsvdar: small |noise| with keyed draws
        nw = _keyed_normal(seed, _TAG_W + 10, layer, p, r).to(X.device, X.dtype)
        nh = keyed_column_normal(seed, layer, r, off, off + c, tag=_TAG_H + 10).to(
            X.device, X.dtype
        )
        W = torch.where(W == 0, (avg * nw / 100).abs(), W)
        H = torch.where(H == 0, (avg * nh / 100).abs(), H)
    return W.contiguous(), H.contiguous()


def _init_layer(comm, X, r, init, lay, seed, layer, n_sample, gen):
    if init == "random":
        return _random_layer(comm, X, r, lay, seed, layer)
    return _nndsvd_layer(comm, X, r, init, lay, seed, layer, n_sample, gen)


# --------------------------------------------------------------------------- the solver


def _layout(metas: list[dict], n_cols_arg: list[Any]) -> _Layout:
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
    return _Layout(offsets, counts, n)


def _settings_key(d: dict) -> str:
    return repr(sorted(d.items()))


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
        or torch, as :func:`dnmf.factorize` (float32/float64 kept, integers become float64).
        Every process needs at least one column and the same ``m``.
    ranks : int or sequence of int
        Inner ranks ``[r1, …, rk]``, as :func:`dnmf.factorize`.
    col_offset, n_cols : int, optional
        Global index of the first local column, and the total column count. By default the
        blocks are taken to be consecutive in rank order (as :func:`dnmf.shards.column_range`
        gives them); when given, they are checked (blocks must tile ``[0, n)``).
    beta, max_iter, tol, pretrain, l1, l2, eps, check_every, loss_every
        As :func:`dnmf.factorize` (no mask, no batch). ``tol`` is tested on the global loss.
    init : {'nndsvda', 'nndsvd', 'nndsvdar', 'random', 'custom'}
        'random': keyed by the seed and each column's global index (any split gives the same
        factors; not the same draws as :func:`dnmf.factorize`). 'nndsvd*': NNDSVD whose
        singular vectors come from ``init_sample`` columns gathered on rank 0 (all columns,
        and then exactly :func:`dnmf.factorize`'s init, when ``n <= init_sample``).
        'custom': ``Ws`` (full factors, the same on every process) and ``H`` (this process's
        ``rk × n_local`` block); no pretraining.
    seed : int, optional
        Seeds the initialisation (rank 0 draws one when ``None``). Must agree across ranks.
    device, dtype : optional
        As :func:`dnmf.factorize`.
    verbose : bool
        Rank 0 prints the loss at every check.
    callback : callable, optional
        ``callback(n_iter, loss)`` on every process after each recorded loss (the global loss);
        the run stops when it returns ``True`` on any process.
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
    comm = _Comm(group)
    err: BaseException | None = None
    meta: dict[str, Any] = {"n_local": None, "m": None, "col_offset": col_offset, "n_cols": n_cols}
    settings: dict[str, Any] = {}
    Vt = None
    try:
        dt = val.parse_dtype(dtype)
        dev = val.parse_device(device)
        kind = val.as_kind(V_local)
        Vt = val.to_tensor(V_local, "V_local", dtype=dt, device=dev)
        val.check_matrix(Vt, "V_local", allow_batch=False)
        meta.update(m=int(Vt.shape[0]), n_local=int(Vt.shape[1]))
        for name, v in (("col_offset", col_offset), ("n_cols", n_cols)):
            if v is not None:
                val.check_positive_int(v, name, allow_zero=name == "col_offset")
        ranks_ = val.parse_ranks(ranks)
        beta_, max_iter, tol, eps, check_every = _check_common(
            beta, max_iter, tol, eps, check_every
        )
        if loss_every is not None:
            loss_every = val.check_positive_int(loss_every, "loss_every")
        if not isinstance(init, str) or init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        val.check_pretrain(pretrain)
        init_sample = val.check_positive_int(init_sample, "init_sample")
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0
        ):
            raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
        val.check_beta_zeros(Vt, beta_, None, "V_local")
        k = len(ranks_)
        pen = Penalties(val.parse_penalty(l1, "l1", k + 1), val.parse_penalty(l2, "l2", k + 1))
        custom = None
        if init == "custom":
            custom = val.check_custom_factors(Ws, H, Vt, ranks_)
            meta["ws_sums"] = [float(W.double().sum()) for W in custom[0]]
        elif Ws is not None or H is not None:
            raise ValueError("Ws and H are only used with init='custom'")
        settings = dict(
            ranks=tuple(ranks_),
            beta=beta_,
            max_iter=max_iter,
            tol=tol,
            init=init,
            pretrain=int(pretrain)
            if not isinstance(pretrain, (bool, np.bool_))
            else bool(pretrain),
            l1=tuple(pen.l1),
            l2=tuple(pen.l2),
            eps=eps,
            check_every=check_every,
            loss_every=loss_every,
            init_sample=init_sample,
            dtype=str(Vt.dtype),
            seed=None if seed is None else int(seed),
        )
    except (ValueError, TypeError) as exc:
        err = exc
    meta["settings"] = _settings_key(settings)
    meta["err"] = None if err is None else f"{type(err).__name__}: {err}"
    meta["seed_draw"] = (
        int(torch.randint(0, 2**62, (1,))) if comm.rank == 0 and seed is None else None
    )
    metas = comm.objects(meta)
    # every process now knows every other's state: fail together, or go on together
    if err is None and not any(m["err"] for m in metas):
        try:
            ms = [m["m"] for m in metas]
            if len(set(ms)) != 1:
                raise ValueError(
                    f"every rank must hold the same rows of V; row counts by rank: {ms}"
                )
            keys = [m["settings"] for m in metas]
            if len(set(keys)) != 1:
                diff = [r for r, kk in enumerate(keys) if kk != keys[0]]
                raise ValueError(
                    f"ranks {diff} were called with other settings than rank 0 "
                    f"(ranks, beta, max_iter, tol, init, pretrain, l1, l2, eps, "
                    f"check_every, loss_every, init_sample, dtype and seed must agree)"
                )
            lay = _layout(metas, [m["n_cols"] for m in metas])
            if init.startswith("nndsvd"):
                s = min(init_sample, lay.n)
                dims = [ms[0], *ranks_]
                for l, r in enumerate(ranks_):
                    if r > min(dims[l], s):
                        raise ValueError(
                            f"init={init!r} needs ranks[{l}] <= min({dims[l]}, sampled columns "
                            f"{s}) = {min(dims[l], s)}, got {r}; lower the rank, raise "
                            "init_sample, or use init='random'"
                        )
            if init == "custom":
                sums = np.array([m["ws_sums"] for m in metas])
                if not np.allclose(sums, sums[0], rtol=1e-10, atol=0):
                    raise ValueError("init='custom' needs the same Ws on every rank; they differ")
        except ValueError as exc:
            err = exc
        err_all = err
    else:
        err_all = err
        if err is None:
            bad = [(r, m["err"]) for r, m in enumerate(metas) if m["err"]]
            err_all = ValueError("; ".join(f"rank {r} refused its input: {m}" for r, m in bad))
    if err_all is not None:
        err_all.collective = True  # type: ignore[attr-defined]
        raise err_all
    assert Vt is not None
    seed_ = settings["seed"] if settings["seed"] is not None else int(metas[0]["seed_draw"])
    k = len(ranks_)
    gen = make_generator(seed_) if comm.rank == 0 else None  # rank 0's SVDs, as factorize's gen
    reduce = comm.sum_

    cb = None
    if callback is not None:

        def cb(it: int, loss: Any) -> bool:
            stop = torch.tensor([1.0 if callback(it, loss) is True else 0.0], device=Vt.device)
            return bool(comm.max_(stop)[0] > 0)

    pre_hist: list[np.ndarray] = []
    with torch.no_grad():
        if custom is not None:
            Ws_, H_ = custom
        elif pretrain is not False and k > 1:
            Ws_, H_, pre_hist = pretrain_layers(
                Vt,
                ranks_,
                lambda l, X, r: _init_layer(comm, X, r, init, lay, seed_, l, init_sample, gen),
                beta=beta_,
                max_iter=max_iter if pretrain is True else int(pretrain),
                tol=tol,
                penalties=pen,
                eps=eps,
                check_every=check_every,
                reduce=reduce,
            )
        else:
            Ws_, X = [], Vt
            for l, r in enumerate(ranks_):
                W_l, X = _init_layer(comm, X, r, init, lay, seed_, l, init_sample, gen)
                Ws_.append(W_l)
            H_ = X
        out = run_mu(
            Vt,
            Ws_,
            H_,
            beta=beta_,
            max_iter=max_iter,
            tol=tol,
            penalties=pen,
            eps=eps,
            check_every=check_every,
            loss_every=loss_every,
            callback=cb,
            verbose=verbose and comm.rank == 0,
            reduce=reduce,
        )
        for W in Ws_:  # replicas are identical already; make it exact
            comm.broadcast_(W)
    if comm.rank == 0:
        _warn_unconverged(out, max_iter, tol, "dnmf.distributed.factorize_columns")
    return ShardedFactorizationResult(
        Ws=[_out(W, kind) for W in Ws_],
        H=_out(H_, kind),
        loss_history=out.loss_history,
        loss_iters=out.loss_iters,
        n_iter=int(out.n_iter),
        converged=bool(out.converged),
        beta=beta_,
        ranks=tuple(ranks_),
        pretrain_loss_histories=pre_hist,
        col_offset=lay.offsets[comm.rank],
        n_cols=lay.n,
        rank=comm.rank,
        world_size=comm.world,
        seconds=time.perf_counter() - t_start,
    )


def gather_result(
    result: ShardedFactorizationResult, *, group: Any = None, device: Any = None
) -> FactorizationResult | None:
    """Collective: the whole ``H`` (columns in global order) on rank 0, ``None`` elsewhere.

    Rank 0 gets an ordinary :class:`dnmf.FactorizationResult` (``save()`` it, or
    ``dnmf.load`` it back); its ``H`` is ``rk × n``. ``device`` is where the blocks travel
    (default: where ``H`` is; ``nccl`` needs CUDA tensors).
    """
    comm = _Comm(group)
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


# --------------------------------------------------------------------------- local processes


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for a local rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _job_shard(job: dict, rank: int, world: int) -> ColumnShard:
    if "shards" in job:
        blocks = job["shards"]
        if len(blocks) != world:
            raise ValueError(f"job has {len(blocks)} shards for {world} processes")
        n = sum(int(np.shape(b)[1]) for b in blocks)
        return ColumnShard(blocks[rank], sum(int(np.shape(b)[1]) for b in blocks[:rank]), n)
    if "npy" in job:
        return load_npy_columns(job["npy"], rank, world)
    V = job["V"]
    n = int(V.shape[1])
    if n < world:
        raise ValueError(f"V has {n} columns for {world} processes; every process needs one")
    a, b = column_range(n, rank, world)
    return ColumnShard(V[:, a:b], a, n)


def _local_worker(
    rank: int,
    world: int,
    port: int,
    jobs: list,
    outdir: str,
    threads: int,
    backend: str,
    timeout: float,
) -> None:
    """One process of :func:`run_local_batch` (module level, so ``spawn`` can import it)."""
    torch.set_num_threads(threads)
    device = None
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout),
    )
    comm = _Comm()
    try:
        for i, job in enumerate(jobs):
            try:
                err = None
                try:
                    shard = _job_shard(job, rank, world)
                except (OSError, ValueError, TypeError) as exc:
                    err = exc
                _agree(comm, err, "data")
                kwargs = dict(job.get("kwargs", {}))
                if "H" in job:  # a whole H for init='custom': this process's columns of it
                    c0 = shard.col_offset
                    kwargs["H"] = job["H"][:, c0 : c0 + int(np.shape(shard.V)[1])]
                if device is not None:
                    kwargs.setdefault("device", device)
                dist.barrier()
                res = factorize_columns(
                    shard.V,
                    job["ranks"],
                    col_offset=shard.col_offset,
                    n_cols=shard.n_cols,
                    **kwargs,
                )
                secs = comm.max_(
                    torch.tensor([res.seconds], dtype=torch.float64, device=device or "cpu")
                )
                full = gather_result(res)
                if rank == 0:
                    assert full is not None
                    full = FactorizationResult(
                        **{**full.__dict__, "Ws": [_np(W) for W in full.Ws], "H": _np(full.H)}
                    )
                    full.save(os.path.join(outdir, f"job{i}.npz"))
                    with open(os.path.join(outdir, f"job{i}.json"), "w") as fh:
                        json.dump(
                            {"seconds": float(secs[0]), "world_size": world, "n_cols": res.n_cols},
                            fh,
                        )
            except Exception as exc:  # noqa: BLE001 - reported to the parent per job
                with open(os.path.join(outdir, f"job{i}.rank{rank}.err"), "w") as fh:
                    fh.write(f"{type(exc).__name__}\n{exc}")
                if not getattr(exc, "collective", False):
                    raise  # the others may be stuck in a collective: end the whole run
    finally:
        dist.destroy_process_group()


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


_ERRORS = {"ValueError": ValueError, "TypeError": TypeError, "FileNotFoundError": FileNotFoundError}


def run_local_batch(
    jobs: Sequence[dict],
    world_size: int,
    *,
    threads: int = 1,
    backend: str = "gloo",
    timeout: float = 600.0,
) -> list[ShardedFactorizationResult | BaseException]:
    """Run several factorizations in one group of ``world_size`` local processes.

    Each job is a dict with the data — ``"V"`` (an array, split with
    :func:`dnmf.shards.column_range`), ``"npy"`` (a path, each process reads its columns with
    :func:`dnmf.shards.load_npy_columns`) or ``"shards"`` (one array per process) — plus
    ``"ranks"`` and optional ``"kwargs"`` for :func:`factorize_columns` (and ``"H"``: a whole
    ``H`` for ``init='custom'``, split like ``V``). Processes are
    started with ``spawn`` and join a ``backend`` group on 127.0.0.1 (``nccl``: one GPU per
    process); ``threads`` sets ``torch.set_num_threads`` in each. Returns, per job, the
    gathered result (numpy, whole ``H``; ``seconds`` is the slowest process's time in
    :func:`factorize_columns`) or the exception rank 0 raised for that job. Raises
    ``RuntimeError`` when a process dies or ``timeout`` seconds pass.
    """
    import torch.multiprocessing as mp

    world_size = val.check_positive_int(world_size, "world_size")
    threads = val.check_positive_int(threads, "threads")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    jobs = list(jobs)
    with tempfile.TemporaryDirectory(prefix="dnmf-dist-") as outdir:
        ctx = mp.start_processes(
            _local_worker,
            nprocs=world_size,
            join=False,
            start_method="spawn",
            args=(world_size, free_port(), jobs, outdir, threads, backend, timeout),
        )
        deadline = time.monotonic() + timeout + 60
        try:
            while not ctx.join(timeout=0.5):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dnmf.distributed.run_local: no result after {timeout:g} s")
        except Exception as exc:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
            if isinstance(exc, RuntimeError) and "no result" in str(exc):
                raise
            raise RuntimeError(f"a dnmf.distributed worker failed: {exc}") from None
        out: list[ShardedFactorizationResult | BaseException] = []
        for i in range(len(jobs)):
            errf = Path(outdir) / f"job{i}.rank0.err"
            if errf.exists():
                name, _, msg = errf.read_text().partition("\n")
                out.append(_ERRORS.get(name, RuntimeError)(msg))
                continue
            res = load(Path(outdir) / f"job{i}.npz")
            extra = json.loads((Path(outdir) / f"job{i}.json").read_text())
            out.append(
                ShardedFactorizationResult(
                    **res.__dict__,
                    col_offset=0,
                    n_cols=extra["n_cols"],
                    rank=0,
                    world_size=extra["world_size"],
                    seconds=extra["seconds"],
                )
            )
    return out


def run_local(
    V: Any,
    ranks: int | Sequence[int],
    *,
    world_size: int,
    threads: int = 1,
    backend: str = "gloo",
    timeout: float = 600.0,
    **kwargs: Any,
) -> ShardedFactorizationResult:
    """:func:`factorize_columns` on ``world_size`` local processes (no ``torchrun`` needed).

    ``V`` is a numpy array (each process gets a copy and keeps its columns) or the path of a
    ``.npy`` file (each process maps it and reads only its columns). Other keyword arguments go
    to :func:`factorize_columns`. Returns the gathered result (numpy arrays, whole ``H``);
    ``seconds`` is the slowest process's time. Errors from the processes are raised here.
    """
    job: dict[str, Any] = {"ranks": ranks, "kwargs": kwargs}
    if isinstance(V, (str, os.PathLike)):
        job["npy"] = os.fspath(V)
    else:
        job["V"] = _np(V)
    res = run_local_batch([job], world_size, threads=threads, backend=backend, timeout=timeout)[0]
    if isinstance(res, BaseException):
        raise res
    return res


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dnmf.distributed",
        description="Deep NMF with V's columns split across processes. Start it with torchrun "
        "(one process per shard) or plainly (one process).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--npy", help="V as a 2-D .npy file (m x n, samples as columns); read by memory map"
    )
    src.add_argument("--images", help="a folder of images, one column each (sorted by name)")
    p.add_argument(
        "--samples-as-rows", action="store_true", help="the .npy holds V transposed (n x m)"
    )
    p.add_argument("--size", type=int, default=None, help="resize images to SIZE x SIZE")
    p.add_argument("--rgb", action="store_true", help="images in RGB (default: gray)")
    p.add_argument("--ranks", type=int, nargs="+", required=True, help="inner ranks r1 ... rk")
    p.add_argument(
        "--beta", default="2", help="beta of the divergence (2, 1, 0, a float or a name)"
    )
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--init", default="nndsvda", choices=[i for i in INITS if i != "custom"])
    p.add_argument("--init-sample", type=int, default=2048, help="columns sampled for NNDSVD")
    p.add_argument(
        "--pretrain",
        default="true",
        help="layer-wise pretraining: true, false or iterations per layer",
    )
    p.add_argument("--l1", type=float, default=0.0)
    p.add_argument("--l2", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument(
        "--device", default="cpu", help="cpu or cuda (cuda: one GPU per process, LOCAL_RANK)"
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "gloo", "nccl"],
        help="auto: nccl for cuda, gloo for cpu",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--out", default=None, help="rank 0 gathers H and writes the result here (.npz)")
    p.add_argument("--verbose", action="store_true")
    return p


def _parse_beta(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _parse_pretrain(text: str) -> bool | int:
    t = text.strip().lower()
    if t in ("true", "yes", "1"):
        return True
    if t in ("false", "no", "0"):
        return False
    try:
        return int(t)
    except ValueError:
        raise SystemExit(f"--pretrain must be true, false or an int, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dnmf.distributed``: one process per shard under ``torchrun``.

    Under ``torchrun`` (``WORLD_SIZE`` in the environment) it joins the process group
    (``env://``; ``nccl`` for ``--device cuda``, else ``gloo``), reads only its columns
    (``--npy`` by memory map, or its slice of ``--images``), factorizes, and rank 0 gathers
    ``H`` and writes the result to ``--out`` atomically (read it with ``dnmf.load``) and prints
    one JSON line of diagnostics. Without ``torchrun`` it runs as one process. Exit status 2
    for bad input (reported by every rank), 0 on success.
    """
    args = _parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cuda = str(args.device).startswith("cuda")
    backend = args.backend if args.backend != "auto" else ("nccl" if cuda else "gloo")
    world_env = int(os.environ.get("WORLD_SIZE", "1"))
    started = False
    device: str = args.device
    if cuda:
        if not torch.cuda.is_available():
            print(
                "dnmf.distributed: error: --device cuda but torch sees no CUDA device",
                file=sys.stderr,
                flush=True,
            )
            return 2
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if world_env > 1 or "RANK" in os.environ:
        dist.init_process_group(backend)
        started = True
    comm = _Comm()
    tag = f"[rank {comm.rank}/{comm.world}] " if comm.world > 1 else ""
    try:
        err: BaseException | None = None
        shard = None
        try:
            if args.npy:
                shard = load_npy_columns(
                    args.npy,
                    comm.rank,
                    comm.world,
                    samples_as_rows=args.samples_as_rows,
                    dtype=args.dtype,
                )
            else:
                shard = load_image_columns(
                    args.images,
                    comm.rank,
                    comm.world,
                    size=args.size,
                    gray=not args.rgb,
                    dtype=args.dtype,
                )
        except (OSError, ValueError, TypeError) as exc:
            err = exc
        _agree(comm, err, "data")
        assert shard is not None
        res = factorize_columns(
            shard.V,
            args.ranks,
            col_offset=shard.col_offset,
            n_cols=shard.n_cols,
            beta=_parse_beta(args.beta),
            max_iter=args.max_iter,
            tol=args.tol,
            init=args.init,
            pretrain=_parse_pretrain(args.pretrain),
            l1=args.l1,
            l2=args.l2,
            seed=args.seed,
            device=device,
            dtype=args.dtype,
            verbose=args.verbose,
            init_sample=args.init_sample,
        )
        secs = float(comm.max_(torch.tensor([res.seconds], dtype=torch.float64, device=device))[0])
        full = gather_result(res, device=device)
        if comm.rank == 0:
            assert full is not None
            if args.out:
                full.save(args.out)
            print(
                json.dumps(
                    {
                        "world_size": comm.world,
                        "backend": backend if started else None,
                        "m": int(shard.V.shape[0]),
                        "n": res.n_cols,
                        "ranks": list(res.ranks),
                        "n_iter": res.n_iter,
                        "converged": res.converged,
                        "loss": float(res.loss),
                        "seconds": round(secs, 4),
                        "out": args.out,
                    }
                ),
                flush=True,
            )
        return 0
    except (ValueError, TypeError, OSError) as exc:
        print(f"{tag}dnmf.distributed: error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        if started:
            dist.destroy_process_group()


__all__ = [
    "INITS",
    "RANDOM_BLOCK",
    "ShardedFactorizationResult",
    "factorize_columns",
    "free_port",
    "gather_result",
    "keyed_column_normal",
    "main",
    "run_local",
    "run_local_batch",
    "sample_columns",
]

if __name__ == "__main__":
    sys.exit(main())
