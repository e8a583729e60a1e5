"""``RankSelection``, the outcome of `dnmf.select_ranks`: every fit's scores, the choice, and
the held-out masks to reproduce a fit."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .holdout import heldout_masks

Candidate = Any  # an int (one layer) or a tuple of ints (one rank per layer)


@dataclass
class RankSelection:
    """Outcome of `select_ranks`.

    ``heldout``/``train`` hold the β-divergence per held-out / per training entry of every fit,
    shaped ``(candidates, folds, restarts)``; `table` summarises them per candidate and
    `best` is the candidate the rule chose.
    """

    candidates: list[Candidate]
    heldout: np.ndarray
    train: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    n_params: np.ndarray
    best: Candidate
    rule: str
    beta: float
    holdout: float
    pattern: str
    solver: str
    seconds: float
    fit_seeds: np.ndarray
    shape: tuple[int, int]
    design_seed: int = field(repr=False, default=0)
    criterion: str = "product"
    #: Layer-wise criterion only: every fit's held-out loss of layer l on its own input (layer
    #: 1 on V, layer l on the codes of layer l - 1), (candidates, folds, restarts) per layer.
    layer_heldout: list[np.ndarray] | None = None
    #: Seconds of each stage: starting factors, pretraining, the fits, their scores.
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def best_index(self) -> int:
        return self.candidates.index(self.best)

    def cv_results(self) -> dict[str, np.ndarray]:
        """Per-candidate summary as a dict of arrays (scikit-learn's ``cv_results_`` style)."""
        C = len(self.candidates)
        h = self.heldout.reshape(C, -1)
        t = self.train.reshape(C, -1)
        n = h.shape[1]
        cand = np.empty(C, dtype=object)
        cand[:] = self.candidates
        out = {
            "candidate": cand,
            "n_params": self.n_params.copy(),
            "mean_heldout_loss": h.mean(axis=1),
            "std_heldout_loss": h.std(axis=1, ddof=1) if n > 1 else np.zeros(C),
            "mean_train_loss": t.mean(axis=1),
            "std_train_loss": t.std(axis=1, ddof=1) if n > 1 else np.zeros(C),
            "n_fits": np.full(C, n),
            "n_converged": self.converged.reshape(C, -1).sum(axis=1),
            "chosen": np.array([c == self.best for c in self.candidates]),
        }
        for l, lh in enumerate(self.layer_heldout or []):
            lf = lh.reshape(C, -1)
            out[f"mean_heldout_loss_layer{l + 1}"] = lf.mean(axis=1)
            out[f"std_heldout_loss_layer{l + 1}"] = lf.std(axis=1, ddof=1) if n > 1 else np.zeros(C)
        for f in range(h.shape[1]):
            out[f"split{f}_heldout_loss"] = h[:, f]
        return out

    @property
    def table(self):
        """``pandas.DataFrame``, one row per candidate: mean/std of the held-out and training
        loss per entry over folds × restarts, the number of fits and which one was chosen."""
        res = self.cv_results()
        cols = [k for k in res if not k.startswith("split")]
        return pd.DataFrame({k: res[k] for k in cols})

    def heldout_mask(self, fold: int) -> np.ndarray:
        """Boolean ``(m, n)`` array, True at the entries fold ``fold`` held out (so a fit can be
        reproduced with ``dnmf.factorize(V * ~E, ranks, mask=~E, seed=fit_seeds[fold, s])``;
        with the search's own missing entries ``M``, ``mask=M * ~E``).

        ``fold`` is an int from 0 to ``folds - 1`` (numpy integers too); anything else is a
        ``ValueError`` naming the range (a negative fold does not count from the end).
        """
        if (
            isinstance(fold, (bool, np.bool_))
            or not isinstance(fold, numbers.Integral)
            or not 0 <= int(fold) < self.folds
        ):
            raise ValueError(
                f"fold must be an int from 0 to {self.folds - 1} (the search ran {self.folds} "
                f"folds), got {fold!r}"
            )
        masks = heldout_masks(self.shape, self.pattern, self.holdout, self.folds, self.design_seed)
        return masks[1][int(fold)]

    @property
    def folds(self) -> int:
        return int(self.heldout.shape[1])


__all__ = ["Candidate", "RankSelection"]
