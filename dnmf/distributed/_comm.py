"""The collectives of a column-split run, as no-ops for a single process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist


class Comm:
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


def error_text(err: BaseException | None) -> str | None:
    """How a process reports its error to the others (``None``: no error)."""
    return None if err is None else f"{type(err).__name__}: {err}"


def fail_together(err: BaseException | None, texts: Sequence[str | None], what: str) -> None:
    """Raise on every process when any process hit an error (``texts``: every process's
    `error_text`, in rank order, already exchanged).

    The process that failed re-raises its own exception; the others raise ``ValueError`` naming
    the failing ranks. Every exception raised here has ``collective = True``.
    """
    if err is not None:
        raise mark_collective(err)
    bad = [(r, m) for r, m in enumerate(texts) if m is not None]
    if bad:
        raise mark_collective(
            ValueError("; ".join(f"rank {r} refused its {what}: {m}" for r, m in bad))
        )


def agree(comm: Comm, err: BaseException | None, what: str = "input") -> None:
    """Collective: raise on every process if any process hit an error (no one is left waiting);
    see `fail_together`."""
    fail_together(err, comm.objects(error_text(err)), what)


def mark_collective(exc: BaseException) -> BaseException:
    """Flag ``exc`` as raised on every process alike (the local launcher then keeps going)."""
    exc.collective = True  # type: ignore[attr-defined]
    return exc
