"""``identity``: the blurred input itself, the floor every method must beat."""

from __future__ import annotations

import torch

from benchmarks.methods.base import BlurLike, Method


class Identity(Method):
    name = "identity"
    description = "the blurred input itself"

    def restore(self, y: torch.Tensor, blur: BlurLike) -> torch.Tensor:
        return y.detach().to("cpu", torch.float32).clamp(0.0, 1.0)


METHOD = Identity
