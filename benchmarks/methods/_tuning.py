"""Choosing a parameter on the validation pairs: the best candidate by mean PSNR.

The one home of that rule (every adapter that tunes uses it, ties going to the first
candidate) and of the Wiener balance grid that ``wiener`` and the ``dnmf-prior`` ablation
search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from benchmarks.classical import wiener_padded
from benchmarks.metrics import psnr, ssim

#: Wiener–Hunt balances searched on validation: 1e-5 to 1, 4 per decade.
WIENER_BALANCES = [float(b) for b in np.logspace(-5, 0, 21)]


def best_index(scores: Sequence[float]) -> int:
    """The position of the highest score (the first one on ties)."""
    return max(range(len(scores)), key=scores.__getitem__)


def mean_scores(x: torch.Tensor, sharp: torch.Tensor) -> tuple[float, float]:
    """Mean PSNR and SSIM of the outputs ``x`` (clipped to [0, 1]) against ``sharp``."""
    x = x.to("cpu", torch.float32).clamp(0, 1)
    s = sharp.to("cpu", torch.float32)
    return float(psnr(x, s).mean()), float(ssim(x, s).mean())


def best_by_psnr(
    candidates: Sequence[Any], outputs: Sequence[torch.Tensor], sharp: torch.Tensor
) -> tuple[Any, list[float]]:
    """The candidate whose output has the highest mean validation PSNR, and all scores."""
    scores = [float(psnr(o, sharp).mean()) for o in outputs]
    return candidates[best_index(scores)], scores


def pick(
    grid: list[Any], run: Callable[[Any], torch.Tensor], sharp: torch.Tensor
) -> tuple[Any, list[dict[str, Any]]]:
    """Score ``run(candidate)`` for every candidate on validation; return the best by mean
    PSNR and every candidate's PSNR and SSIM."""
    scores = []
    for cand in grid:
        p, s = mean_scores(run(cand), sharp)
        scores.append({"value": cand, "val_psnr": p, "val_ssim": s})
    return grid[best_index([d["val_psnr"] for d in scores])], scores


def best_wiener_balance(
    y: torch.Tensor, kernel: torch.Tensor, sharp: torch.Tensor
) -> tuple[float, list[float]]:
    """The balance of `WIENER_BALANCES` whose padded Wiener–Hunt restoration of ``y``
    is best on ``sharp``, and the mean PSNR of each."""
    return best_by_psnr(WIENER_BALANCES, wiener_padded(y, kernel, WIENER_BALANCES), sharp)
