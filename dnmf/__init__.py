"""dnmf: Deep NMF ``V ≈ W1 W2 … Wk H`` with nonnegative factors, in torch (CPU or CUDA).

The factors are fitted by exact block-coordinate descent (HALS: `factorize`'s and `DeepNMF`'s
default for the Frobenius loss, with a mask on the data filled in from the model) or by
multiplicative updates (any β-divergence, masks), as ``solver=`` chooses.

* `factorize` keeps the mathematical orientation: ``V`` is ``m × n`` with one sample per
  **column** (e.g. one flattened image per column).
* `DeepNMF` follows scikit-learn's orientation: ``X`` is ``n_samples × n_features``
  (``V = Xᵀ``), so it drops into a ``Pipeline`` next to ``sklearn.decomposition.NMF``.
* `dnmf.distributed` (``factorize_columns``) splits ``V``'s columns across
  ``torch.distributed`` processes; `dnmf.shards` reads one process's columns. Both are
  imported on first use (so ``python -m dnmf.distributed`` runs cleanly).
"""

import importlib

from ._solvers.loss import EPSILON, beta_divergence
from ._solvers.update import mu_exponent
from .estimator import DeepNMF
from .factorize import (
    ConvergenceWarning,
    FactorizationResult,
    check_ranks,
    factorize,
    load,
    solve_h,
)
from .online import MiniBatchDeepNMF
from .select import RankSelection, rank_grid, select_ranks

__all__ = [
    "ConvergenceWarning",
    "DeepNMF",
    "EPSILON",
    "FactorizationResult",
    "MiniBatchDeepNMF",
    "RankSelection",
    "beta_divergence",
    "check_ranks",
    "factorize",
    "load",
    "mu_exponent",
    "rank_grid",
    "select_ranks",
    "solve_h",
    "distributed",
    "factorize_columns",
    "shards",
]


def __getattr__(name: str):
    """Lazy access to `dnmf.distributed`, `dnmf.shards` and ``factorize_columns``."""
    if name in ("distributed", "shards"):
        return importlib.import_module(f".{name}", __name__)
    if name == "factorize_columns":
        return importlib.import_module(".distributed", __name__).factorize_columns
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
