"""``convae``: the reference convolutional autoencoder, blind, learned."""

from __future__ import annotations

from typing import Any, ClassVar

from benchmarks.methods._cnn import CNNMethod


class ConvAEMethod(CNNMethod):
    """Reference ConvAE, 5 stride-2 convs 3->64->...->1024 and mirrored transposed convs."""

    name: ClassVar[str] = "convae"
    description: ClassVar[str] = "reference convolutional autoencoder (MSE + 0.1(1-SSIM))"
    architecture: ClassVar[str] = "convae"
    model_kwargs: ClassVar[dict[str, Any]] = {"base_channels": 64}  # faithful
    tiny_model_kwargs: ClassVar[dict[str, Any]] = {"base_channels": 8}  # smoke preset


METHOD = ConvAEMethod
