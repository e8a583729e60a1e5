"""``dnmf-prior-unfolded``: ``dnmf-prior``'s splitting unfolded and trained end to end.

The model is `dnmf.deblur.unfolded_prior.UnfoldedPrior`, registered here with `convae`'s
architecture registry so that `convae.train` trains it like the CNNs (same pairs, loss,
validation selection, checkpoints, ``deblur-bench train``). It starts as ``dnmf-prior``: the
Deep NMF dictionary fitted on the sharp training images and the x-step weight tuned on the
validation pairs, by the same code (`benchmarks.methods._hqs_common.fit_and_tune`, cached in
the run's work folder). Non-blind: the network's x-steps use the run's blur operator, which
the method hands it before training and before every restoration (it is not saved with the
weights).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

import convae
from benchmarks.methods import _fitted_models as common
from benchmarks.methods import _hqs_common as hqs
from benchmarks.methods._unfolded import UnfoldedMethod, signed_panels
from benchmarks.methods.base import BlurLike
from benchmarks.methods.dnmf_prior import DNMFPrior
from benchmarks.pairs import PairSet
from dnmf.deblur.prior import DeepNMFPrior
from dnmf.deblur.unfolded_prior import UnfoldedPrior

ARCHITECTURE = "dnmf-prior-unfolded"
convae.register(ARCHITECTURE)(UnfoldedPrior)  # idempotent for the same class


class DNMFPriorUnfolded(UnfoldedMethod):
    name: ClassVar[str] = "dnmf-prior-unfolded"
    description: ClassVar[str] = (
        "non-blind: dnmf-prior's half-quadratic splitting unfolded, per-stage noise levels, "
        "x-step weights and Deep NMF dictionaries trained end to end (MSE + 0.1(1-SSIM))"
    )
    sees_psf: ClassVar[bool] = True
    architecture: ClassVar[str] = ARCHITECTURE
    model_kwargs: ClassVar[dict[str, Any]] = {}  # the model's defaults: dnmf-prior's settings
    tiny_model_kwargs: ClassVar[dict[str, Any]] = dict(size=4, ranks=(16, 8), n_stages=3)
    infer_batch_size: ClassVar[int] = 8
    train_batch_size: ClassVar[int | None] = 4
    train_lr: ClassVar[float] = 0.01
    #: how the starting DeepNMFPrior's dictionary is fitted (dnmf-prior's settings)
    init_fit: ClassVar[dict[str, Any]] = dict(n_patches=20000, fit_iter=60)
    tiny_init_fit: ClassVar[dict[str, Any]] = dict(n_patches=2000, fit_iter=15)
    small_init_fit: ClassVar[dict[str, Any]] = dict(n_patches=10000, fit_iter=50)

    def prepare_model(
        self,
        model: nn.Module,
        train: PairSet,
        val: PairSet | None,
        blur: BlurLike,
        *,
        resume: bool = False,
    ) -> None:
        """Hand the network the blur, then start it as ``dnmf-prior`` (`UnfoldedMethod`)."""
        assert isinstance(model, UnfoldedPrior)
        model.set_operator(blur)
        super().prepare_model(model, train, val, blur, resume=resume)

    def init_from_fit(
        self, model: nn.Module, train: PairSet, val: PairSet | None, blur: BlurLike
    ) -> dict[str, Any]:
        """``dnmf-prior`` with the network's settings: fitted on the sharp training images and
        tuned on the validation pairs, as that method does it (cached)."""
        assert isinstance(model, UnfoldedPrior)
        fit = common.preset_settings(
            self.ctx, self.name, self.init_fit, self.tiny_init_fit, self.small_init_fit
        )
        settings = {**model.prior_params(), **fit}
        tuning = hqs.Tuning()
        prior = hqs.fit_and_tune(
            self.ctx, f"{self.name}-init", DeepNMFPrior, settings,
            (train, val, blur),  # type: ignore[arg-type]  # no val: no tuning
            weight_per_noise=DNMFPrior.weight_per_noise,
            weight_factors=DNMFPrior.weight_factors,
            max_val_images=DNMFPrior.max_val_images, tuning=tuning,
        )  # fmt: skip
        model.load_prior(prior)
        return {"prior_settings": settings, **tuning.as_dict(), "weight": prior.weight}

    @torch.no_grad()
    def restore(self, y: torch.Tensor, blur: BlurLike) -> torch.Tensor:
        """The network's restoration with ``blur`` as its operator."""
        net = convae.unwrap_model(self._need_model())
        assert isinstance(net, UnfoldedPrior)
        net.set_operator(blur)
        return super().restore(y, blur)

    def info(self) -> dict[str, Any]:
        d = super().info()
        if self.model is not None:
            net = convae.unwrap_model(self.model)
            assert isinstance(net, UnfoldedPrior)
            d["sigmas"] = net.sigmas().tolist()
            d["mus"] = net.mus().tolist()
        return d

    def atom_panels(self, net: nn.Module) -> list[tuple[str, Any]]:
        assert isinstance(net, UnfoldedPrior)
        k = net.init_kwargs
        c = 1 if k["colour"] == "opponent" else k["in_channels"]
        before, after = net.atoms()
        return signed_panels(before, after, c, k["size"], "first stage's signed atoms", split=False)


METHOD = DNMFPriorUnfolded
