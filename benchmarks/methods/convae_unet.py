"""``convae-unet``: residual U-Net with NAFNet blocks, blind, learned."""

from __future__ import annotations

from typing import Any, ClassVar

from benchmarks.methods._cnn import CNNMethod


class ConvAEUNetMethod(CNNMethod):
    """Residual NAF U-Net (pixel unshuffle, 3 levels, width 16); same loss and loop as convae."""

    name: ClassVar[str] = "convae-unet"
    description: ClassVar[str] = "residual NAF U-Net, predicts the correction (MSE + 0.1(1-SSIM))"
    architecture: ClassVar[str] = "convae-unet"
    model_kwargs: ClassVar[dict[str, Any]] = {}  # the model's defaults
    #: batch 16 beat 64 by 2.7 dB on the validation people at equal CPU time (docs/results/unet.md)
    train_batch_size: ClassVar[int | None] = 16
    tiny_model_kwargs: ClassVar[dict[str, Any]] = {
        "width": 8,
        "depth": 2,  # smoke preset
        "middle_blocks": 1,
    }


METHOD = ConvAEUNetMethod
