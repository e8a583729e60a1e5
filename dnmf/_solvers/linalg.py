"""Small tensor helpers shared by the solvers: batched transpose, product and factor chains."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _mT(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-1, -2)


def _mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Matrix product; 3-D operands go straight to ``bmm`` (matmul's reshapes cost more than
    the small products of a batch of small matrices)."""
    if a.ndim == 3 and b.ndim == 3 and a.shape[0] == b.shape[0]:
        return torch.bmm(a, b) if out is None else torch.bmm(a, b, out=out)
    return torch.matmul(a, b) if out is None else torch.matmul(a, b, out=out)


def _chain(mats: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """Right-to-left product of small factors (``None`` for the empty product, i.e. identity)."""
    out = None
    for A in reversed(mats):
        out = A if out is None else _mm(A, out)
    return out


def _prod(mats: Sequence[torch.Tensor]) -> torch.Tensor:
    """`_chain` of a non-empty sequence."""
    out = _chain(mats)
    assert out is not None, "empty product"
    return out
