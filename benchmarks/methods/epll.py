"""``epll``: Gaussian-mixture patch prior + half-quadratic splitting (Zoran & Weiss 2011).

The mixture is learned from the **sharp** training images only (`benchmarks.gmm_prior.EPLL`,
cached in the run folder like the Deep NMF dictionaries); the x-step weight is chosen on the
validation images. It is the classical patch-prior anchor next to ``dnmf-prior``, which runs
the same splitting loop with a Deep NMF prior.
"""

from __future__ import annotations

from typing import Any, ClassVar

from benchmarks.gmm_prior import EPLL as EPLLModel
from benchmarks.methods._hqs_common import HQSPriorMethod


class EPLL(HQSPriorMethod):
    name = "epll"
    description = (
        "non-blind: Gaussian-mixture prior of sharp mean-removed patches (EPLL), "
        "annealed half-quadratic splitting with the known blur"
    )
    model_class = EPLLModel
    fit_seconds_key = "mixture_fit_seconds"

    settings: ClassVar[dict[str, Any]] = dict(
        size=8,
        n_components=50,
        n_patches=40000,
        colour="opponent",
        max_iter=60,
        stride=2,
        sigma_max=0.1,
        sigma_min=0.005,
        n_stages=8,
        weight=1e-7,
    )
    tiny_settings: ClassVar[dict[str, Any]] = dict(
        size=4, n_components=4, n_patches=2000, max_iter=20, n_stages=3
    )
    #: the fast preset (<= 64 px): as good on validation there, and the first run stays < 5 min
    small_settings: ClassVar[dict[str, Any]] = dict(n_patches=10000, max_iter=30)


METHOD = EPLL
