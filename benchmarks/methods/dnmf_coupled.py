"""``dnmf-coupled``: Deep NMF coupled dictionary ``[W1b; W1out] W2 … Wk H``, blind.

Same model and tricks as ``nmf-coupled`` (`dnmf.deblur.coupled.CoupledDeblur`) with
k ≥ 2 layers; settings picked on the validation people (``docs/results/deblur-dnmf.md``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from benchmarks.methods.nmf_coupled import NMFCoupled


class DNMFCoupled(NMFCoupled):
    name = "dnmf-coupled"
    description = (
        "blind coupled patch dictionary, Deep NMF (k >= 2 layers), two stages: "
        "contrast-normalised blurred context -> nonnegative split of the residual"
    )
    #: two stages: the second coupled Deep NMF is trained on the first one's outputs of the
    #: training images (+0.5 dB on the validation people, see docs/results/deblur-dnmf.md)
    settings: ClassVar[dict[str, Any]] = {**NMFCoupled.settings, "ranks": (256, 128), "stages": 2}
    #: fast preset at <= 64 px: half the ranks of the 128 px setting, lighter fit
    small_settings: ClassVar[dict[str, Any]] = {**NMFCoupled.small_settings, "ranks": (128, 64)}
    #: smoke preset: one stage (plumbing only; the cascade has its own unit test)
    tiny_settings: ClassVar[dict[str, Any]] = {
        **NMFCoupled.tiny_settings,
        "ranks": (24, 16),
        "stages": 1,
    }


METHOD = DNMFCoupled
