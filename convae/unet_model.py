"""``convae-unet``: a compact residual U-Net with NAFNet-style blocks.

Layout (NAFNet's habits): blocks first, the network last, plain keyword arguments,
pad to a multiple and crop back, global residual.

    x ─ PixelUnshuffle(s) ─ intro 3x3 ─ [blocks ─ down 2x2/2] x depth ─ middle blocks
      ─ [up (1x1 + PixelShuffle) ─ + skip ─ blocks] x depth ─ ending 3x3 ─ PixelShuffle(s) ─ + x

Why the first step is a space-to-depth (``shuffle=2``): rearranging 2x2 pixels into
channels is lossless (the output is shuffled back and added to the input), and it lets every
block work on a 4x smaller grid, which is what makes the model fast on a CPU.  Little is
lost by processing on that grid: the degradation is a wide Gaussian (25x25, sigma 3) whose
frequency response ``exp(-2 pi^2 sigma^2 f^2)`` is 0.02 at 0.15 cycles/pixel and 1.5e-5 at
0.25 cycles/pixel (the half-resolution Nyquist frequency), far below the 8-bit rounding step,
so what can still be recovered lies well inside the band a half-resolution grid represents.
With ``depth=3`` the coarsest grid is 1/16 of the image (8x8 at 128 px), so a 3x3 depthwise
convolution there already sees 48 pixels, wider than the blur kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from convae.models import register
from convae.ref_model import pad_to_multiple


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an (N, C, H, W) tensor (as in NAFNet)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        xc = x - mu
        var = xc.pow(2).mean(1, keepdim=True)
        y = xc * torch.rsqrt(var + self.eps)
        return y * self.weight[:, None, None] + self.bias[:, None, None]


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them (NAFNet's activation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """NAFNet block: LayerNorm, 1x1 expand, 3x3 depthwise, SimpleGate, simplified channel
    attention, 1x1 project; then a gated 1x1 feed-forward.  Both branches are scaled by
    zero-initialised ``beta``/``gamma``, so a fresh block is the identity."""

    def __init__(self, channels: int, *, expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        c, dw, ffn = channels, channels * expand, channels * ffn_expand
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.gate = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gate(self.conv2(self.conv1(self.norm1(x))))
        y = self.conv3(y * self.sca(y))
        x = x + y * self.beta
        y = self.conv5(self.gate(self.conv4(self.norm2(x))))
        return x + y * self.gamma


def _per_level(value: int | Sequence[int], depth: int, name: str) -> list[int]:
    vals = [value] * depth if isinstance(value, int) else list(value)
    if len(vals) != depth or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in vals
    ):
        raise ValueError(
            f"{name} must be an int >= 0 or {depth} such ints (one per level), got {value!r}"
        )
    return vals


@register("convae-unet")
class ConvAEUNet(nn.Module):
    """Residual U-Net with NAFNet blocks: predicts the correction added to the blurred input.

    Args:
        in_channels: 3 (RGB) or 1 (gray); the output has the same channels.
        width: channels of the first level; level ``i`` has ``width * 2**i``, the middle
            ``width * 2**depth``.
        depth: number of 2x downsamplings inside the U-Net (after the pixel unshuffle).
        enc_blocks, dec_blocks: NAF blocks per encoder / decoder level, an int for every
            level or one int per level (finest first).
        middle_blocks: NAF blocks at the coarsest level.
        shuffle: pixel-unshuffle factor applied first (1 = work at full resolution, 2 = on a
            half-resolution grid with 4x the channels; lossless, see the module docstring).

    Any input size works: the input is padded at the bottom/right to a multiple of
    ``shuffle * 2**depth`` (16 by default; reflect padding, replicate when the image is too
    small to reflect), and the output is cropped back to the input size.  The output is the
    input plus the predicted correction and is not clamped (the benchmark clamps to [0, 1]);
    the last convolution starts at zero, so an untrained model returns its input.
    The defaults (width 16, depth 3, 1/2/1 blocks) have 410,204 parameters for RGB and cost
    82 M multiply-accumulates per 128x128 image; ``width=32`` has 1,601,708 (289 M MACs).
    Width 16 won the short validation comparison on this CPU (README, "convae-unet" section).
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        width: int = 16,
        depth: int = 3,
        enc_blocks: int | Sequence[int] = 1,
        middle_blocks: int = 2,
        dec_blocks: int | Sequence[int] = 1,
        shuffle: int = 2,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (gray) or 3 (RGB), got {in_channels!r}")
        for name, v, lo in (
            ("width", width, 1),
            ("depth", depth, 0),
            ("shuffle", shuffle, 1),
            ("middle_blocks", middle_blocks, 0),
        ):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        if width % 2:
            raise ValueError(f"width must be even (SimpleGate halves channels), got {width!r}")
        enc = _per_level(enc_blocks, depth, "enc_blocks")
        dec = _per_level(dec_blocks, depth, "dec_blocks")
        self.in_channels = in_channels
        self.depth, self.shuffle = depth, shuffle
        self.multiple = shuffle * 2**depth
        self.init_kwargs = {
            "in_channels": in_channels,
            "width": width,
            "depth": depth,
            "enc_blocks": enc,
            "middle_blocks": middle_blocks,
            "dec_blocks": dec,
            "shuffle": shuffle,
        }

        c_io = in_channels * shuffle**2
        self.unshuffle = nn.PixelUnshuffle(shuffle)
        self.intro = nn.Conv2d(c_io, width, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        c = width
        for n in enc:
            self.encoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.Sequential(*[NAFBlock(c) for _ in range(middle_blocks)])
        for n in reversed(dec):
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
        self.ending = nn.Conv2d(width, c_io, 3, padding=1)
        nn.init.zeros_(self.ending.weight)  # a fresh model returns its input unchanged
        nn.init.zeros_(self.ending.bias)  # type: ignore[arg-type]
        self.reshuffle = nn.PixelShuffle(shuffle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore a batch ``x`` (N, C, H, W) in [0, 1]; returns the same shape."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        xp, h, w = pad_to_multiple(x, self.multiple)
        f = self.intro(self.unshuffle(xp))
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            f = enc(f)
            skips.append(f)
            f = down(f)
        f = self.middle(f)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            f = dec(up(f) + skip)
        out = xp + self.reshuffle(self.ending(f))
        return out[..., :h, :w]
