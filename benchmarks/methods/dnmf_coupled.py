"""``dnmf-coupled``: Deep NMF coupled dictionary ``[W1b; W1out] W2 … Wk H``, blind.

Same model and tricks as ``nmf-coupled`` (:class:`dnmf.deblur.coupled.CoupledDeblur`) with
k ≥ 2 layers; settings picked on the validation people (``notes/README-deblur.md``).
"""
from __future__ import annotations

from typing import Any, ClassVar

from benchmarks.methods.nmf_coupled import NMFCoupled


class DNMFCoupled(NMFCoupled):
    name = "dnmf-coupled"
    description = ("blind coupled patch dictionary, Deep NMF (k >= 2 layers): contrast-normalised "
                   "blurred context -> nonnegative split of the residual")
    settings: ClassVar[dict[str, Any]] = {**NMFCoupled.settings, "ranks": (256, 128)}
    tiny_settings: ClassVar[dict[str, Any]] = {**NMFCoupled.tiny_settings, "ranks": (24, 16)}


METHOD = DNMFCoupled
