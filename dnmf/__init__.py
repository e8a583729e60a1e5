"""dnmf: Deep NMF ``V ≈ W1 W2 … Wk H`` by multiplicative updates, in torch (CPU or CUDA).

* :func:`factorize` keeps the mathematical orientation: ``V`` is ``m × n`` with one sample per
  **column** (e.g. one flattened image per column).
* :class:`DeepNMF` follows scikit-learn's orientation: ``X`` is ``n_samples × n_features``
  (``V = Xᵀ``), so it drops into a ``Pipeline`` next to ``sklearn.decomposition.NMF``.
"""
from ._mu import EPSILON, beta_divergence, mu_exponent
from .estimator import DeepNMF
from .factorize import ConvergenceWarning, FactorizationResult, factorize, load, solve_h

__all__ = [
    "ConvergenceWarning",
    "DeepNMF",
    "EPSILON",
    "FactorizationResult",
    "beta_divergence",
    "factorize",
    "load",
    "mu_exponent",
    "solve_h",
]
