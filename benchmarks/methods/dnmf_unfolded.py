"""``dnmf-unfolded``: the blind coupled Deep NMF unfolded into a network, trained like the CNNs.

The model is `dnmf.deblur.unfolded.UnfoldedCoupled`; this file registers it with `convae`'s
architecture registry (so `convae.train`, its checkpoints and ``deblur-bench train`` handle it
like any CNN) and starts it from a `dnmf.deblur.coupled.CoupledDeblur` fitted on the training
pairs with the network's own settings (cached in the run's work folder): untrained, the network
restores exactly as that model does with multiplicative coding. Settings chosen on the
validation people: ``docs/results/unfolded.md``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

import convae
from benchmarks.methods import _fitted_models as common
from benchmarks.methods._cnn import CNNMethod
from benchmarks.methods._tuning import mean_scores
from benchmarks.methods.base import BlurLike, MethodContext
from benchmarks.pairs import PairSet
from dnmf.deblur.coupled import CoupledDeblur
from dnmf.deblur.unfolded import UnfoldedCoupled

ARCHITECTURE = "dnmf-unfolded"
convae.register(ARCHITECTURE)(UnfoldedCoupled)  # idempotent for the same class

UNFOLDED_ATOMS_FIG = "dnmf-unfolded_atoms.png"


def atom_panels(
    before: torch.Tensor, after: torch.Tensor, channels: int, side: int, what: str
) -> list[tuple[str, Any]]:
    """Two panels (before / after training) of signed atoms: each column's first half minus its
    second half (the ON/OFF or ± split), as ``side``-pixel patches."""
    half = before.shape[0] // 2
    return [
        (f"{what}, before", common.tile_atoms(before[:half] - before[half:], channels, side)),
        (f"{what}, after", common.tile_atoms(after[:half] - after[half:], channels, side)),
    ]


class DNMFUnfolded(CNNMethod):
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
    #: how the starting CoupledDeblur is fitted (as nmf-coupled's settings)
    init_fit: ClassVar[dict[str, Any]] = dict(n_patches=16000, fit_iter=60)
    tiny_init_fit: ClassVar[dict[str, Any]] = dict(n_patches=1000, fit_iter=10)
    small_init_fit: ClassVar[dict[str, Any]] = dict(n_patches=5000, fit_iter=25)

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.init_record: dict[str, Any] = {}

    # ------------------------------------------------------------------ the start
    def prepare_model(
        self,
        model: nn.Module,
        train: PairSet,
        val: PairSet | None,
        blur: BlurLike,
        *,
        resume: bool = False,
    ) -> None:
        """Start ``model`` from a `CoupledDeblur` fitted on ``train`` (cached), unless it
        starts at random (``init="random"``) or its weights come from a checkpoint."""
        assert isinstance(model, UnfoldedCoupled)
        self.init_record = {"init": model.init_kwargs["init"], "resume": resume}
        if resume or model.init_kwargs["init"] != "nmf":
            return
        fit = common.preset_settings(
            self.ctx, self.name, self.init_fit, self.tiny_init_fit, self.small_init_fit
        )
        settings = {**model.coupled_params(), **fit}
        t0 = time.perf_counter()
        coupled, path, hit = common.load_or_fit(
            self.ctx,
            f"{self.name}-init",
            CoupledDeblur,
            settings,
            common.data_key(train.blurred, train.sharp),
            lambda m: m.fit(train.blurred, train.sharp),
        )
        model.load_coupled(coupled)
        self.init_record.update(
            coupled_settings=settings,
            cache_file=str(path) if path is not None else None,
            cache_hit=hit,
            init_seconds=time.perf_counter() - t0,
            coupled_parameters=coupled.n_parameters(),
        )
        if val is not None and len(val):  # the untrained network: today's method
            with torch.no_grad():
                x = torch.cat([model(b) for b in val.blurred.split(self.infer_batch_size)])
            p, s = mean_scores(x, val.sharp)
            self.init_record.update(val_psnr_untrained=p, val_ssim_untrained=s)

    # ------------------------------------------------------------------ reporting
    def info(self) -> dict[str, Any]:
        d = super().info()
        d["macs_per_image"] = None  # no convolutions: convae's MAC counter does not apply
        d["start"] = self.init_record
        return d

    def figures(self, out_dir: Path) -> list[Path]:
        out = super().figures(out_dir)
        if self.model is None:
            return out
        net = convae.unwrap_model(self.model)
        assert isinstance(net, UnfoldedCoupled)
        k = net.init_kwargs
        c, side_b = k["in_channels"], k["size"] + 2 * k["context"]
        b0, b1 = net.first_layer_atoms()
        o0, o1 = net.output_atoms()
        panels = atom_panels(b0, b1, c, side_b, "first layer z⁺ − z⁻")
        panels += atom_panels(o0, o1, c, k["size"], "output r⁺ − r⁻")
        out.append(
            common.plot_atoms(
                Path(out_dir) / UNFOLDED_ATOMS_FIG,
                panels,
                f"{self.name}: atoms before and after training (first 64)",
            )
        )
        return out


METHOD = DNMFUnfolded
