"""Test-time self-ensembling over the 8 flips / quarter turns of the square (the dihedral
group), as in EDSR's "+" models: restore each transformed input, undo the transform, average.

It assumes the blur is unchanged by those transforms (true for the benchmark's Gaussian): then
each transformed input is an equally valid blurred image and the eight estimates differ only
by the network's errors, which averaging reduces.  Costs 8 forward passes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

ALL_DIHEDRAL = tuple(range(8))


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th (0..7) flip / quarter turn of the last two dims: ``rot90`` by ``k % 4``,
    then a left-right flip when ``k >= 4`` (``k = 0`` is the identity)."""
    if not 0 <= k < 8:
        raise ValueError(f"k must be in 0..7, got {k}")
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return y.flip(-1) if k >= 4 else y


def undo_dihedral(y: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of `dihedral` ``k``: ``undo_dihedral(dihedral(x, k), k) == x``."""
    if not 0 <= k < 8:
        raise ValueError(f"k must be in 0..7, got {k}")
    if k >= 4:
        y = y.flip(-1)
    return torch.rot90(y, -(k % 4), dims=(-2, -1))


@torch.no_grad()
def self_ensemble(
    model: nn.Module, x: torch.Tensor, transforms: Iterable[int] = ALL_DIHEDRAL
) -> torch.Tensor:
    """Mean of ``undo(model(dihedral(x, k)), k)`` over ``transforms`` (default: all 8)."""
    ks = list(transforms)
    if not ks:
        raise ValueError("self_ensemble needs at least one transform")
    acc = undo_dihedral(model(dihedral(x, ks[0])).float(), ks[0])
    for k in ks[1:]:
        acc.add_(undo_dihedral(model(dihedral(x, k)).float(), k))
    return acc / len(ks)
