"""``dnmf-unfolded``: the blind coupled Deep NMF unfolded into a network, trained like the CNNs.

The model is `dnmf.deblur.unfolded.UnfoldedCoupled`; this file registers it with `convae`'s
architecture registry (so `convae.train`, its checkpoints and ``deblur-bench train`` handle it
like any CNN) and starts it from a `dnmf.deblur.coupled.CoupledDeblur` fitted on the training
pairs with the network's own settings (cached in the run's work folder): untrained, the network
restores exactly as that model does with multiplicative coding. Settings chosen on the
validation people: ``docs/results/unfolded.md``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

import convae
from benchmarks.methods import _fitted_models as common
from benchmarks.methods._unfolded import UnfoldedMethod, signed_panels
from benchmarks.methods.base import BlurLike
from benchmarks.pairs import PairSet
from dnmf.deblur.coupled import CoupledDeblur
from dnmf.deblur.unfolded import UnfoldedCoupled

ARCHITECTURE = "dnmf-unfolded"
convae.register(ARCHITECTURE)(UnfoldedCoupled)  # idempotent for the same class


class DNMFUnfolded(UnfoldedMethod):
    name: ClassVar[str] = "dnmf-unfolded"
    description: ClassVar[str] = (
        "blind coupled Deep NMF unfolded: K multiplicative-update layers on the codes of "
        "W1 W2 h (W2 untied per layer), output dictionary, trained end to end (MSE + 0.1(1-SSIM))"
    )
    architecture: ClassVar[str] = ARCHITECTURE
    model_kwargs: ClassVar[dict[str, Any]] = {}  # the model's defaults
    tiny_model_kwargs: ClassVar[dict[str, Any]] = dict(
        size=4, context=2, stride=2, ranks=(8, 4), layers=2
    )
    train_batch_size: ClassVar[int | None] = 16
    train_lr: ClassVar[float] = 0.1
    #: how the starting CoupledDeblur is fitted (as nmf-coupled's settings)
    init_fit: ClassVar[dict[str, Any]] = dict(n_patches=16000, fit_iter=60)
    tiny_init_fit: ClassVar[dict[str, Any]] = dict(n_patches=1000, fit_iter=10)
    small_init_fit: ClassVar[dict[str, Any]] = dict(n_patches=5000, fit_iter=25)

    def init_from_fit(
        self, model: nn.Module, train: PairSet, val: PairSet | None, blur: BlurLike
    ) -> dict[str, Any]:
        """The `CoupledDeblur` with the network's settings, fitted on ``train`` (cached)."""
        assert isinstance(model, UnfoldedCoupled)
        fit = common.preset_settings(
            self.ctx, self.name, self.init_fit, self.tiny_init_fit, self.small_init_fit
        )
        settings = {**model.coupled_params(), **fit}
        coupled, path, hit = common.load_or_fit(
            self.ctx,
            f"{self.name}-init",
            CoupledDeblur,
            settings,
            common.data_key(train.blurred, train.sharp),
            lambda m: m.fit(train.blurred, train.sharp),
        )
        model.load_coupled(coupled)
        return {
            "coupled_settings": settings,
            "cache_file": str(path) if path is not None else None,
            "cache_hit": hit,
            "coupled_parameters": coupled.n_parameters(),
        }

    def atom_panels(self, net: nn.Module) -> list[tuple[str, Any]]:
        assert isinstance(net, UnfoldedCoupled)
        k = net.init_kwargs
        c = k["in_channels"]
        b0, b1 = net.first_layer_atoms()
        o0, o1 = net.output_atoms()
        side_b = k["size"] + 2 * k["context"]
        return [
            *signed_panels(b0, b1, c, side_b, "first layer z⁺ − z⁻", split=True),
            *signed_panels(o0, o1, c, k["size"], "output r⁺ − r⁻", split=True),
        ]


METHOD = DNMFUnfolded
