"""The one call shape every method in the comparison has.

``method.fit(train, val, blur)`` (a no-op where nothing is learned or tuned), then
``method.restore(y, blur) -> x_hat``.  Adapters live one per file in this package and
expose their class as ``METHOD``; the registry discovers them, so adding a method is
adding a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from benchmarks.pairs import PairSet
from benchmarks.presets import Preset
from dnmf.deblur.hqs import LinearOperator

BlurLike = LinearOperator
"""What a method may use of the degradation: the linear operator ``A`` and its adjoint
``A_adjoint``. It is `dnmf.deblur.hqs.LinearOperator`, the protocol's one home (the deblurring
models take it); this name stays so that the method files read as before."""


@dataclass
class MethodContext:
    """Everything a method needs besides data: budget, device, seed, where to write."""

    preset: Preset
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    work_dir: Path | None = None  # per-method folder for curves, figures, caches
    quiet: bool = False  # no progress bars when True
    blur_meta: dict[str, Any] = field(default_factory=dict)  # degradation settings
    options: dict[str, Any] = field(default_factory=dict)  # CLI overrides (epochs, ...)
    noise: float = 0.0  # the degradation's noise std, for methods that degrade images of their own


class Method:
    """Base class: subclasses set the class attributes and override what they need."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    sees_psf: ClassVar[bool] = False  # non-blind methods use ``blur``
    learns: ClassVar[bool] = False  # learns from (blurred, sharp) pairs
    checkpointable: ClassVar[bool] = False
    #: a CNN that ``deblur-bench train`` can train on its own (checkpoints for ``--checkpoint``)
    trainable_cnn: ClassVar[bool] = False

    def __init__(self, ctx: MethodContext) -> None:
        self.ctx = ctx

    @classmethod
    def check_options(cls, options: Mapping[str, Any], blur: BlurLike) -> None:
        """Refuse ``options`` (``ctx.options`` to be) that this method could not honour with
        ``blur``, before any data is loaded or folder made. Default: every value is fine."""

    @classmethod
    def run_notes(cls, options: Mapping[str, Any]) -> list[str]:
        """Sentences for a run's summary header that say how ``options`` change this method's
        rows. Default: none."""
        return []

    def fit(self, train: PairSet, val: PairSet, blur: BlurLike) -> None:
        """Learn or tune on ``train``/``val``. Default: nothing to do."""

    def restore(self, y: torch.Tensor, blur: BlurLike) -> torch.Tensor:
        """Restore a batch ``y`` (N, C, H, W) in [0, 1]; returns the same shape on CPU."""
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        raise NotImplementedError(f"method {self.name!r} has nothing to save")

    def load(self, path: str | Path) -> None:
        raise NotImplementedError(f"method {self.name!r} takes no checkpoint")

    def info(self) -> dict[str, Any]:
        """JSON-able facts for run.json (chosen parameters, parameter count, ...)."""
        return {}

    def figures(self, out_dir: Path) -> list[Path]:
        """Write method-specific figures (loss curves, atoms) and return their paths."""
        return []
