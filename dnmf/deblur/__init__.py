"""Deep NMF deblurring models (torch only; never imports ``benchmarks``).

* `dnmf.deblur.patches` — patch grids: extraction and overlap-add assembly with adjoints.
* `dnmf.deblur.coupled` — blind coupled-dictionary model learned from (blurred, sharp) pairs.
* `dnmf.deblur.hqs` — half-quadratic splitting for any patch denoiser (exact x-step with
  the operator's ``A``/``A_adjoint``, annealed noise levels).
* `dnmf.deblur.patch_denoise` — image denoisers from patch priors (every overlapping,
  mean-removed patch; colour rotation; averaging).
* `dnmf.deblur.nmf_patch_prior` — the Deep NMF patch prior (ON/OFF or semi-NMF codes,
  sparsity tied to the noise, layer-centric depth penalty).
* `dnmf.deblur.prior` — `DeepNMFPrior`, the non-blind model (fit on sharp images,
  restore by HQS).
* `dnmf.deblur.dictionary` — `FittedDictionary`, the fitted state and model file that the
  dictionary priors share.

The first non-blind model, multiplicative updates through the blur, is an ablation kept with
the experiments (``experiments/mu_prior.py``), outside the installed package.
"""

from .dictionary import FittedDictionary
from .hqs import HQSResult, LinearOperator, annealing_schedule, hqs_deblur
from .patch_denoise import PatchDenoiser
from .patches import PatchGrid
from .prior import DeepNMFPrior

__all__ = [
    "PatchGrid",
    "PatchDenoiser",
    "DeepNMFPrior",
    "FittedDictionary",
    "HQSResult",
    "LinearOperator",
    "annealing_schedule",
    "hqs_deblur",
]
