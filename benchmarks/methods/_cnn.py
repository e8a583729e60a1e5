"""Shared adapter for the learned CNN methods (``convae``, ``convae-unet``, ...).

A concrete method only names its architecture and constructor keywords::

    class ConvAEMethod(CNNMethod):
        name = "convae"
        architecture = "convae"
        tiny_model_kwargs = {"base_channels": 8}

Training budget comes from ``ctx.preset`` (epochs, max_minutes, batch_size), overridden by
``ctx.options`` keys ``epochs``, ``max_minutes``, ``batch_size``, ``lr`` (also ``amp``,
``compile``, ``lr_schedule``, ``ssim_weight``) and ``tta`` (restore with the 8-flip self-ensemble).
The training pairs are the training faces plus what ``extra_photos``, ``augment_photos`` and
``augment_faces`` add (`benchmarks.extra_pairs`, degraded with ``ctx.noise``); validation
and test pairs are never changed. All training, checkpoint and model code lives in `convae`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

import convae
from benchmarks.degradation import check_trained_degradation, trained_on
from benchmarks.extra_pairs import check_cnn_data, check_tta, check_tta_trained, cnn_training_pairs
from benchmarks.family_pairs import family_training
from benchmarks.methods.base import BlurLike, Method, MethodContext
from benchmarks.pairs import PairSet

CURVE_NAME = "training_curve.png"


class CNNMethod(Method):
    """Train a registered `convae` architecture on the pairs; restore by inference."""

    learns: ClassVar[bool] = True
    checkpointable: ClassVar[bool] = True
    trainable_cnn: ClassVar[bool] = True
    architecture: ClassVar[str] = ""  # a convae registry name
    model_kwargs: ClassVar[dict[str, Any]] = {}  # constructor kwargs (not in_channels)
    tiny_model_kwargs: ClassVar[dict[str, Any]] = {}  # applied on top when preset.tiny
    infer_batch_size: ClassVar[int] = 32
    #: training batch that replaces the preset's (None: the preset's, e.g. 64 for convae)
    train_batch_size: ClassVar[int | None] = None

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.model: nn.Module | None = None
        self.result: convae.TrainResult | None = None
        self.history: list[dict[str, Any]] = []
        self.best_val_loss: float | None = None
        self.epochs_run: int | None = None
        self.train_seconds: float | None = None
        self.train_images_per_s: float | None = None
        self.image_shape: tuple[int, int, int] | None = None
        self.loaded_from: str | None = None
        #: what the model was trained on (`Degradation.meta` or `DegradationFamily.meta`)
        self.trained_meta: dict[str, Any] = {}

    # ------------------------------------------------------------------ options
    @classmethod
    def check_options(cls, options: Mapping[str, Any], blur: BlurLike) -> None:
        """``tta`` needs a blur unchanged by all 8 flips/turns; ``extra_photos`` is a count
        >= 0."""
        check_tta(bool(options.get("tta")), blur)
        check_cnn_data(
            int(options.get("extra_photos", 0)),
            bool(options.get("augment_faces")),
            blur,
        )

    @classmethod
    def run_notes(cls, options: Mapping[str, Any]) -> list[str]:
        """The self-ensemble and the extra training data, when asked for."""
        notes = ["CNN rows use the 8-flip test-time self-ensemble (--tta)."]
        notes = notes if options.get("tta") else []
        extra = int(options.get("extra_photos", 0))
        parts = ["their flips/turns"] if options.get("augment_faces") else []
        if extra:
            turned = " (flipped/turned)" if options.get("augment_photos") else ""
            parts.append(f"{extra} degraded photo crops{turned}")
        if parts:
            notes.append(f"CNNs trained here on the training images and {' and '.join(parts)}.")
        return notes

    def training_pairs(self, train: PairSet, blur: BlurLike) -> PairSet:
        """``train`` plus the flips of its faces and the degraded photo crops that
        ``ctx.options`` ask for (``train`` itself when none)."""
        o = self.ctx.options
        extra, faces = int(o.get("extra_photos", 0)), bool(o.get("augment_faces"))
        if not (extra or faces):
            return train
        blurred, sharp = cnn_training_pairs(
            train.blurred,
            train.sharp,
            blur,
            extra_photos=extra,
            augment_photos=bool(o.get("augment_photos")),
            augment_faces=faces,
            noise=self.ctx.noise,
            seed=self.ctx.seed,
            jpeg_quality=self.ctx.preset.jpeg_quality,
        )
        if not self.ctx.quiet:
            print(
                f"{self.name} training pairs: {len(blurred) - extra} faces + {extra} photo crops",
                file=sys.stderr,
                flush=True,
            )
        return PairSet(blurred, sharp)

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return torch.device(self.ctx.device)

    def build_model(self, in_channels: int) -> nn.Module:
        """A fresh model for ``in_channels``, seeded by ``ctx.seed`` (global RNG untouched)."""
        kwargs = dict(self.model_kwargs)
        if self.ctx.preset.tiny:
            kwargs.update(self.tiny_model_kwargs)
        kwargs.update(self.ctx.options.get("model_kwargs") or {})  # e.g. train --model-arg width=32
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ctx.seed)
            return convae.build_model(self.architecture, in_channels=in_channels, **kwargs)

    def prepare_model(
        self,
        model: nn.Module,
        train: PairSet,
        val: PairSet | None,
        blur: BlurLike,
        *,
        resume: bool = False,
    ) -> None:
        """Ready a freshly built ``model`` for training on ``train`` (``run`` and ``train`` call
        it before the loop; ``resume``: the weights will come from a checkpoint). Default:
        nothing, the CNNs start from their seeded random weights; an unfolded Deep NMF starts
        from a model fitted on the pairs here."""

    def train_config(self) -> convae.TrainConfig:
        """The TrainConfig this run uses: preset budget, then ``ctx.options`` overrides."""
        p, o = self.ctx.preset, self.ctx.options
        cfg = convae.TrainConfig(
            epochs=p.epochs,
            max_minutes=p.max_minutes,
            batch_size=self.train_batch_size or p.batch_size,
            seed=self.ctx.seed,
            device=str(self.device),
            keep_best=p.keep_best,
        )
        if p.ssim_weight is not None:
            cfg.ssim_weight = p.ssim_weight
        for key, conv in (
            ("epochs", int),
            ("max_minutes", float),
            ("batch_size", int),
            ("lr", float),
            ("amp", bool),
            ("compile", bool),
            ("lr_schedule", str),
            ("ssim_weight", float),
        ):
            if o.get(key) is not None:
                setattr(cfg, key, conv(o[key]))
        cfg.validate()
        return cfg

    def _need_model(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError(f"method {self.name!r} has no model: call fit() or load() first")
        return self.model

    # ------------------------------------------------------------------ Method API
    def fit(self, train: PairSet, val: PairSet, blur: BlurLike) -> None:
        """Train on `training_pairs` of ``train``, select the best epoch on ``val``;
        ``blur`` only degrades extra photo crops (the network never sees it: blind). With a
        ``family`` option (a `benchmarks.degradation.DegradationFamily`), train a generalist
        instead: every training face degraded per epoch by its own draw
        (`benchmarks.family_pairs.family_training`), ``val`` redrawn once from the family."""
        if self.model is not None and self.loaded_from is not None:
            return  # a checkpoint was loaded (--checkpoint): no retraining
        family = self.ctx.options.get("family")  # a DegradationFamily: train a generalist
        data: Any
        if family is not None:
            data, val, train = family_training(train, val, family, self.ctx.options, self.ctx.seed)
        else:
            train = self.training_pairs(train, blur)
            data = (train.blurred, train.sharp)
        c = int(train.blurred.shape[1])
        model = self.build_model(c)
        self.prepare_model(model, train, val, blur)
        work = Path(self.ctx.work_dir) if self.ctx.work_dir is not None else None
        val_data = (val.blurred, val.sharp) if val is not None and len(val) else None
        result = convae.train(
            model,
            data,
            val_data,
            self.train_config(),
            checkpoint_dir=work,
            meta=self.ctx.blur_meta,
            progress=not self.ctx.quiet,
        )
        self.model = model.eval()
        self.trained_meta = dict(self.ctx.blur_meta)
        self.result = result
        self.history = result.history
        self.best_val_loss = result.best_val_loss
        self.epochs_run = result.epochs_completed
        self.train_seconds = result.train_seconds
        self.train_images_per_s = result.images_per_s
        self.image_shape = tuple(int(v) for v in train.blurred.shape[1:])  # type: ignore[assignment]
        if work is not None and self.history:
            convae.plot_history(
                self.history,
                work / CURVE_NAME,
                title=f"{self.name} ({self.ctx.preset.name} preset)",
            )

    @torch.no_grad()
    def restore(self, y: torch.Tensor, blur: BlurLike) -> torch.Tensor:
        """Run the network on ``y`` (N, C, H, W) in batches; CPU float32 in [0, 1]."""
        model = self._need_model()
        if y.ndim != 4:
            raise ValueError(f"restore expects (N, C, H, W), got {tuple(y.shape)}")
        want = getattr(convae.unwrap_model(model), "in_channels", y.shape[1])
        if y.shape[1] != want:
            raise ValueError(
                f"{self.name} was trained on {want}-channel images, got "
                f"{y.shape[1]} channels (RGB/gray mismatch)"
            )
        model.eval()
        outs = []
        tta = bool(self.ctx.options.get("tta"))
        for chunk in y.split(self.infer_batch_size):
            x = chunk.to(self.device, torch.float32)
            out = convae.self_ensemble(model, x) if tta else model(x)
            outs.append(out.float().clamp_(0.0, 1.0).cpu())
        return torch.cat(outs) if outs else y.new_empty(y.shape, dtype=torch.float32)

    def save(self, path: str | Path) -> None:
        """Write the (best) model with its history and blur meta; loadable with ``load``."""
        model = self._need_model()
        r = self.result
        convae.save_checkpoint(
            path,
            model,
            history=self.history,
            config=r.config if r else {},
            epoch=self.epochs_run or 0,
            best_val_loss=self.best_val_loss,
            best_epoch=r.best_epoch if r else None,
            meta=self.ctx.blur_meta,
        )

    def load(self, path: str | Path) -> None:
        """Load a checkpoint of this method's architecture; warns
        (`benchmarks.degradation.DegradationMismatchWarning`) when it was trained on another
        degradation than ``ctx.blur_meta``'s, and refuses ``--tta`` for a model trained on a
        kernel the flips change."""
        model = convae.load_model(
            path, map_location=self.device, expect_architecture=self.architecture
        )
        info = getattr(model, "checkpoint", {})
        self.trained_meta = dict(info.get("meta") or {})
        check_tta_trained(bool(self.ctx.options.get("tta")), trained_on(self.trained_meta), path)
        check_trained_degradation(self.trained_meta, self.ctx.blur_meta, path)
        self.model = model
        self.loaded_from = str(path)
        self.history = list(info.get("history") or [])
        self.best_val_loss = info.get("best_val_loss")
        self.epochs_run = info.get("epoch")
        self.train_seconds = float(sum(h.get("seconds", 0.0) for h in self.history)) or None
        ips = [h["images_per_s"] for h in self.history if h.get("images_per_s")]
        self.train_images_per_s = sum(ips) / len(ips) if ips else None

    def info(self) -> dict[str, Any]:
        """Parameters, training time/throughput, epochs, best validation loss, MACs/image."""
        d: dict[str, Any] = {"architecture": self.architecture}
        if self.model is None:
            return d
        trained = trained_on(self.trained_meta)
        d["trained_on"] = trained.describe() if trained is not None else None
        base = convae.unwrap_model(self.model)
        d.update(
            model_kwargs=dict(getattr(base, "init_kwargs", {})),
            parameters=convae.count_parameters(base),
            train_seconds=self.train_seconds,
            epochs_run=self.epochs_run,
            train_images_per_s=self.train_images_per_s,
            best_val_loss=self.best_val_loss,
            best_epoch=self.result.best_epoch if self.result else None,
            stopped_reason=self.result.stopped_reason if self.result else None,
            loaded_from=self.loaded_from,
            tta=bool(self.ctx.options.get("tta")),
            # the source's own figure: mean training MSE over the last epoch's batches
            train_mse_last_epoch=self.history[-1].get("train_mse") if self.history else None,
            epochs_trained=self.history[-1].get("epoch") if self.history else None,
            weights_epoch=self._weights_epoch(),
        )
        shape = self.image_shape or (
            getattr(base, "in_channels", 3),
            self.ctx.preset.size,
            self.ctx.preset.size,
        )
        try:
            d["macs_per_image"] = convae.count_macs(base, shape)
            d["macs_image_shape"] = list(shape)
        except Exception:  # MACs are a nicety; never fail a run over them
            d["macs_per_image"] = None
        return d

    def _weights_epoch(self) -> int | None:
        """The epoch whose weights restore: a loaded file's own, else best or last trained."""
        if self.loaded_from is not None or self.result is None:
            return self.epochs_run
        keep_best = self.result.config.get("keep_best", True) if self.result.config else True
        return self.result.best_epoch if keep_best else self.result.epochs_completed

    def figures(self, out_dir: Path) -> list[Path]:
        """The training curve (train/val loss per epoch), when there is a history."""
        if not self.history:
            return []
        return [
            convae.plot_history(
                self.history,
                Path(out_dir) / CURVE_NAME,
                title=f"{self.name} ({self.ctx.preset.name} preset)",
            )
        ]
