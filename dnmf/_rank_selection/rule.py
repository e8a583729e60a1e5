"""The rules that choose a candidate from its held-out scores (``rule=`` of `dnmf.select_ranks`).

The layer-wise criterion applies them one layer at a time
(`dnmf._rank_selection.cv_layers.choose_layerwise`).
"""

from __future__ import annotations

import numpy as np

#: ``'min'``: the smallest mean held-out loss; ``'1se'``: the simplest within one standard error.
RULES = ("min", "1se")


def choose(mean: np.ndarray, se: np.ndarray, n_params: np.ndarray, rule: str) -> int:
    """Index of the chosen candidate: the smallest mean held-out loss (``'min'``), or the
    candidate with the fewest parameters whose mean is within one standard error of that
    minimum (``'1se'``, Hastie, Tibshirani & Friedman's one-standard-error rule)."""
    best = int(np.argmin(mean))
    if rule == "min":
        return best
    ok = np.flatnonzero(mean <= mean[best] + se[best])
    return int(ok[np.lexsort((mean[ok], n_params[ok]))[0]])


__all__ = ["RULES", "choose"]
