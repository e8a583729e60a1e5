"""The reference convolutional autoencoder of the project's source, kept faithful: the baseline.

Encoder: five ``Conv2d(kernel 3, stride 2, padding 1)`` + ReLU, channels
``C -> 64 -> 128 -> 256 -> 512 -> 1024``.  Decoder: five mirrored
``ConvTranspose2d(kernel 3, stride 2, padding 1, output_padding 1)``,
``1024 -> 512 -> 256 -> 128 -> 64 -> C``, ReLU between them and a sigmoid at the end.
No pooling, no skip connections, no residual.  For RGB that is 12,540,163 parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convae.models import register

DEPTH = 5  # stride-2 stages; the input side must be a multiple of 2**DEPTH
MULTIPLE = 2**DEPTH


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Pad ``x`` (N, C, H, W) at the bottom/right to sides divisible by ``multiple``.

    Uses reflect padding (the edge pixel is not repeated), which avoids a hard border the
    network would have to learn around; an image too small to reflect that far (pad >= side)
    falls back to replicate padding.  Returns the padded tensor and the original H, W.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, h, w
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), h, w


@register("convae")
class ConvAE(nn.Module):
    """Reference ConvAE from the project's source description.

    Args:
        in_channels: 3 (RGB) or 1 (gray); the output has the same number of channels.
        base_channels: width of the first stage; stages use ``base * (1, 2, 4, 8, 16)``.
            64 is the faithful reference (3->64->...->1024); the smoke preset uses 8.

    Any input size works: the input is padded at the bottom/right to a multiple of 32
    (reflect padding, replicate when the image is too small to reflect) and the output is
    cropped back to the input size.  At 160x160 (the reference size) nothing is padded.
    Output values lie in (0, 1) (sigmoid).
    """

    def __init__(self, *, in_channels: int = 3, base_channels: int = 64) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (gray) or 3 (RGB), got {in_channels!r}")
        if (
            not isinstance(base_channels, int)
            or isinstance(base_channels, bool)
            or base_channels < 1
        ):
            raise ValueError(f"base_channels must be a positive int, got {base_channels!r}")
        self.in_channels = in_channels
        self.init_kwargs = {"in_channels": in_channels, "base_channels": base_channels}

        chans = [in_channels] + [base_channels * 2**i for i in range(DEPTH)]
        enc: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            enc += [nn.Conv2d(cin, cout, kernel_size=3, stride=2, padding=1), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*enc)

        rev = chans[::-1]
        dec: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(rev[:-1], rev[1:])):
            dec.append(
                nn.ConvTranspose2d(cin, cout, kernel_size=3, stride=2, padding=1, output_padding=1)
            )
            dec.append(nn.ReLU(inplace=True) if i < DEPTH - 1 else nn.Sigmoid())
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore a batch ``x`` (N, C, H, W) in [0, 1]; returns the same shape."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        xp, h, w = pad_to_multiple(x, MULTIPLE)
        return self.decoder(self.encoder(xp))[..., :h, :w]
