"""Run presets: what data size and training budget each preset means.

Explicit CLI flags override a preset's fields (``--preset fast --size 128``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Preset:
    """One named budget. ``None`` in ``max_images`` means "all images"."""

    name: str
    size: int  # square side in pixels after crop + resize
    gray: bool  # RGB by default
    max_images: int | None  # cap on images loaded (sampled per identity, seeded)
    epochs: int  # CNN training epochs
    max_minutes: float | None  # CNN training wall-clock cap (whichever ends first)
    batch_size: int  # CNN batch size
    tiny: bool  # use tiny models / few iterations (tests and CI)
    description: str
    jpeg_quality: int | None = None  # JPEG round trip of sharp and blurred images (None: none)
    ssim_weight: float | None = None  # CNN loss MSE + w (1 - SSIM); None: the method's default
    keep_best: bool = True  # CNNs keep their best-validation epoch (False: the last one)

    def with_overrides(self, **kw: Any) -> Preset:
        """Return a copy with every non-``None`` keyword applied (``max_images=0``: all)."""
        new = replace(self, **{k: v for k, v in kw.items() if v is not None})
        return replace(new, max_images=None) if new.max_images == 0 else new

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        size=32,
        gray=False,
        max_images=48,
        epochs=2,
        max_minutes=1.0,
        batch_size=16,
        tiny=True,
        description="tests and CI: a few 32x32 images, tiny models, seconds",
    ),
    "fast": Preset(
        name="fast",
        size=64,
        gray=False,
        max_images=400,
        epochs=30,
        max_minutes=1.0,
        batch_size=64,
        tiny=False,
        description="first run on a 2-core CPU: 64x64, hundreds of images, <= 5 min in all "
        "(CNN rows are short trainings)",
    ),
    "seed": Preset(
        name="seed",
        size=160,
        gray=False,
        max_images=None,
        epochs=100,
        max_minutes=None,
        batch_size=64,
        tiny=False,
        description="the source repository's own ConvAE protocol: 160x160 RGB, JPEG-75 copies "
        "of both images, MSE loss, Adam 1e-3, batch 64, 100 epochs, last-epoch weights",
        jpeg_quality=75,
        ssim_weight=0.0,
        keep_best=False,
    ),
    "paper": Preset(
        name="paper",
        size=160,
        gray=False,
        max_images=None,
        epochs=100,
        max_minutes=None,
        batch_size=64,
        tiny=False,
        description="the reference protocol, meant for a GPU: 160x160 RGB, all images, 100 epochs",
    ),
}


#: The preset fields a command's flags of the same name override (``None``: keep the preset's).
OVERRIDABLE = ("size", "gray", "max_images", "epochs", "max_minutes", "jpeg_quality", "ssim_weight")


def preset_for(source: Any) -> Preset:
    """The preset ``source.preset`` with the `OVERRIDABLE` attributes of ``source``
    (parsed flags or a run's config) applied."""
    overrides = {k: getattr(source, k, None) for k in OVERRIDABLE}
    return get_preset(source.preset).with_overrides(**overrides)


def get_preset(name: str) -> Preset:
    """Look a preset up by name, with an error listing the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
