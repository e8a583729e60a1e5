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
* `dnmf.deblur.mu_prior` — the first non-blind model, multiplicative updates through the
  blur (an ablation).
"""

from .hqs import HQSResult, LinearOperator, annealing_schedule, hqs_deblur
from .mu_prior import DeepNMFPriorMU, deblur_mu
from .patch_denoise import PatchDenoiser
from .patches import PatchGrid
from .prior import DeepNMFPrior

__all__ = [
    "PatchGrid",
    "PatchDenoiser",
    "DeepNMFPrior",
    "DeepNMFPriorMU",
    "HQSResult",
    "LinearOperator",
    "annealing_schedule",
    "deblur_mu",
    "hqs_deblur",
]
