"""Shared helper for classical methods: pick a parameter on the validation pairs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from benchmarks.metrics import psnr


def best_by_psnr(
    candidates: Sequence[Any], outputs: Sequence[torch.Tensor], sharp: torch.Tensor
) -> tuple[Any, list[float]]:
    """The candidate whose output has the highest mean validation PSNR, and all scores."""
    scores = [float(psnr(o, sharp).mean()) for o in outputs]
    best = max(range(len(scores)), key=scores.__getitem__)
    return candidates[best], scores
