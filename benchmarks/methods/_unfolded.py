"""What the two unfolded Deep NMF adapters (``dnmf-unfolded``, ``dnmf-prior-unfolded``) share.

Both are `CNNMethod`s: the same training loop (`convae.train`), pairs, loss, validation
selection, checkpoints and commands as the CNNs. What differs is the start (a Deep NMF model
fitted on the training pairs, `prepare_model`), the default learning rate (chosen on the
validation people: the networks' parameters are logarithms of the factors, whose steps are
relative), and the figures (atoms before and after training).
"""

from __future__ import annotations

import sys
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

ATOMS_FIG = "atoms_before_after.png"


def signed_panels(
    before: torch.Tensor, after: torch.Tensor, channels: int, side: int, what: str, *, split: bool
) -> list[tuple[str, Any]]:
    """Two panels (before / after training) of atoms as ``side``-pixel patches; ``split``:
    each column is a ± split whose halves are subtracted first."""

    def signed(W: torch.Tensor) -> torch.Tensor:
        half = W.shape[0] // 2
        return W[:half] - W[half:] if split else W

    return [
        (f"{what}, before", common.tile_atoms(signed(before), channels, side)),
        (f"{what}, after", common.tile_atoms(signed(after), channels, side)),
    ]


class UnfoldedMethod(CNNMethod):
    """A `CNNMethod` whose network starts from a fitted Deep NMF model (subclasses say how)."""

    #: the learning rate when ``--lr`` is not given (chosen on the validation people)
    train_lr: ClassVar[float] = 1e-3

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        #: how the network started (`info()`, ``run.json``)
        self.start: dict[str, Any] = {}

    def train_config(self) -> convae.TrainConfig:
        cfg = super().train_config()
        if self.ctx.options.get("lr") is None:
            cfg.lr = self.train_lr
        return cfg

    def init_from_fit(
        self, model: nn.Module, train: PairSet, val: PairSet | None, blur: BlurLike
    ) -> dict[str, Any]:
        """Fit (or read from the run's cache) the Deep NMF model this network starts from and
        load it into ``model``; returns facts for `info()`."""
        raise NotImplementedError

    def prepare_model(
        self,
        model: nn.Module,
        train: PairSet,
        val: PairSet | None,
        blur: BlurLike,
        *,
        resume: bool = False,
    ) -> None:
        """Start ``model`` from the fitted model (`init_from_fit`) unless it starts at random
        (``init="random"``) or its weights come from a checkpoint (``resume``); score the
        untrained network on ``val`` (it is the fitted model's restoration)."""
        init = getattr(model, "init_kwargs", {}).get("init", "nmf")
        self.start = {"init": init, "resume": resume}
        if resume or init != "nmf":
            return
        t0 = time.perf_counter()
        self.start.update(self.init_from_fit(model, train, val, blur))
        self.start["init_seconds"] = time.perf_counter() - t0
        if val is not None and len(val):
            with torch.no_grad():
                x = torch.cat([model(b) for b in val.blurred.split(self.infer_batch_size)])
            p, s = mean_scores(x, val.sharp)
            self.start.update(val_psnr_untrained=p, val_ssim_untrained=s)
            if not self.ctx.quiet:  # train.json does not carry `start`: the log says it
                print(
                    f"{self.name}: started from the fitted model in "
                    f"{self.start['init_seconds']:.0f} s (before the training budget); "
                    f"untrained (the fitted model's restoration) validation PSNR "
                    f"{p:.2f} dB, SSIM {s:.4f}",
                    file=sys.stderr,
                    flush=True,
                )

    def info(self) -> dict[str, Any]:
        d = super().info()
        d["macs_per_image"] = None  # no convolutions: convae's MAC counter does not apply
        d["start"] = self.start
        d["lr"] = self._config().get("lr")
        return d

    def _config(self) -> dict[str, Any]:
        """The training configuration: this run's, or the loaded checkpoint's."""
        if self.result is not None:
            return dict(self.result.config or {})
        if self.model is None:
            return {}
        ckpt = getattr(convae.unwrap_model(self.model), "checkpoint", {}) or {}
        return dict(ckpt.get("config") or {})

    def atom_panels(self, net: nn.Module) -> list[tuple[str, Any]]:
        """The panels of the before/after atom figure."""
        raise NotImplementedError

    def figures(self, out_dir: Path) -> list[Path]:
        out = super().figures(out_dir)
        if self.model is None:
            return out
        out.append(
            common.plot_atoms(
                Path(out_dir) / ATOMS_FIG,
                self.atom_panels(convae.unwrap_model(self.model)),
                f"{self.name}: atoms before and after training (at most 64)",
            )
        )
        return out
