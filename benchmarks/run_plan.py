"""What a ``deblur-bench run`` is asked to do and what it decided: `RunConfig` (the flags),
`RunPlan` (the checked configuration, `benchmarks.runner.prepare`'s result) and `MethodRun`
(one method's record). `benchmarks.runner` runs the steps and `benchmarks.run_outputs` writes
the files; both import these from here.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from benchmarks.blur import BlurOperator
from benchmarks.degradation import Degradation
from benchmarks.errors import UserError
from benchmarks.methods import MethodContext
from benchmarks.presets import Preset, preset_for

#: ``field`` metadata of the `RunConfig` entries that reach the methods as ``ctx.options``
OPTION = {"method_option": True}


@dataclass
class RunConfig:
    """Everything that defines a run; ``run``'s flags map onto these fields by name."""

    preset: str = "fast"
    data_dir: str | None = None
    size: int | None = None
    gray: bool | None = None
    methods: list[str] | None = None
    kernel: str | None = None  # --kernel SPEC (benchmarks.degradation.KERNEL_SPECS)
    sigma: float | None = None  # None: 3.0 (refused together with psf and kernel)
    kernel_size: int | None = None  # None: 25 (refused together with psf)
    psf: str | None = None
    noise: float = 0.0
    seed: int = 0
    out: str | None = None
    overwrite: bool = False
    device: str = "cpu"
    threads: int | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)
    save_images: bool = False
    quiet: bool = False
    epochs: int | None = field(default=None, metadata=OPTION)
    max_minutes: float | None = field(default=None, metadata=OPTION)
    max_images: int | None = None
    batch_size: int | None = field(default=None, metadata=OPTION)
    tta: bool = field(default=False, metadata=OPTION)  # CNNs restore with the 8-flip ensemble
    # CNN rows only (as `train`): extra training pairs and the lr schedule
    extra_photos: int = field(default=0, metadata=OPTION)
    augment_photos: bool = field(default=False, metadata=OPTION)
    augment_faces: bool = field(default=False, metadata=OPTION)
    lr_schedule: str | None = field(default=None, metadata=OPTION)
    jpeg_quality: int | None = None  # JPEG round trip of both images (overrides the preset)
    ssim_weight: float | None = None  # CNN rows: loss MSE + w (1 - SSIM) (overrides the preset)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunConfig:
        """The config of parsed ``run`` flags: each field from the flag of its name, and
        ``checkpoints`` from the ``--checkpoint METHOD=PATH`` items."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        values["checkpoints"] = parse_checkpoints(getattr(args, "checkpoint", None))
        return cls(**values)

    def resolved_preset(self) -> Preset:
        return preset_for(self)

    def method_options(self) -> dict[str, Any]:
        """``ctx.options`` of every method: the fields marked `OPTION` that are set."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata == OPTION}
        return {k: v for k, v in values.items() if v is not None and v is not False}


def parse_checkpoints(items: list[str] | None) -> dict[str, str]:
    """``["convae=a.pt", ...]`` (``--checkpoint METHOD=PATH``, repeated) as a dict."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--checkpoint expects METHOD=PATH, got {item!r}")
        out[name] = path
    return out


@dataclass
class RunPlan:
    """What `prepare` decided: everything a run needs besides its data."""

    cfg: RunConfig
    preset: Preset
    device: torch.device
    names: list[str]
    degradation: Degradation
    options: dict[str, Any]

    @property
    def blur(self) -> BlurOperator:
        return self.degradation.blur

    @property
    def blur_meta(self) -> dict[str, Any]:
        return self.degradation.meta()

    def context(self, work_dir: Path) -> MethodContext:
        """A method's context: budget, device, seed, its folder, and the run's options."""
        return MethodContext(
            preset=self.preset,
            device=self.device,
            seed=self.cfg.seed,
            work_dir=work_dir,
            quiet=self.cfg.quiet,
            blur_meta=self.blur_meta,
            options=dict(self.options),
            noise=self.cfg.noise,
        )


@dataclass
class MethodRun:
    """One method's timings on the test images and what it reports for ``run.json``."""

    name: str
    n_images: int
    fit_seconds: float
    restore_seconds: float
    info: dict[str, Any] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)

    @property
    def sec_per_image(self) -> float:
        return self.restore_seconds / max(1, self.n_images)
