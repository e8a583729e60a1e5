"""Deep NMF deblurring models (torch only; never imports ``benchmarks``).

* :mod:`dnmf.deblur.patches` — patch grids: extraction and overlap-add assembly with adjoints.
* :mod:`dnmf.deblur.coupled` — blind coupled-dictionary model learned from (blurred, sharp) pairs.
* :mod:`dnmf.deblur.prior` — non-blind Deep NMF patch prior restored by multiplicative updates
  through any operator with ``A``/``A_adjoint``.
"""

from .patches import PatchGrid
from .prior import DeepNMFPrior, LinearOperator, deblur_mu

__all__ = ["PatchGrid", "DeepNMFPrior", "LinearOperator", "deblur_mu"]
