"""From a folder (or the embedded photographs) to identity-disjoint (blurred, sharp) splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.blur import BlurOperator
from benchmarks.degradation import Degradation, Kernel
from benchmarks.faces import ImageSet, load_images, split_identities
from benchmarks.pairs import PairSet
from benchmarks.presets import Preset


@dataclass
class Splits:
    train: PairSet
    val: PairSet
    test: PairSet
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


def degrade_all(
    sharp: torch.Tensor, degradation: Degradation, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(blurred, sharp)`` of every image (`Degradation.apply` in chunks of 256, the noise
    drawn from one generator seeded with ``seed``), as `prepare_splits` makes them."""
    gen = torch.Generator().manual_seed(seed)
    pairs = [degradation.apply(chunk, gen) for chunk in sharp.split(256)]
    return torch.cat([b for b, _ in pairs]), torch.cat([s for _, s in pairs])


def _pairs(images: ImageSet, idx: list[int], blurred: torch.Tensor) -> PairSet:
    t = torch.as_tensor(idx, dtype=torch.long)
    return PairSet(
        blurred[t].contiguous(),
        images.images[t].contiguous(),
        [images.identities[i] for i in idx],
        [images.names[i] for i in idx],
    )


def prepare_splits(
    preset: Preset,
    data_dir: str | Path | None,
    *,
    seed: int,
    degradation: Degradation | None = None,
    blur: BlurOperator | None = None,
    noise: float = 0.0,
) -> Splits:
    """Load, split by identity (seeded), and degrade every image once (seeded noise).

    ``degradation`` (`benchmarks.degradation.Degradation`) says how; scripts may give the
    operator ``blur`` and ``noise`` instead, the JPEG step then coming from the preset. With a
    JPEG quality, the sharp and the blurred images are both replaced by their JPEG copies (the
    source's protocol: every split, so that training and scoring see the same kind of image).
    """
    if degradation is None:
        if blur is None:
            raise TypeError("prepare_splits needs a degradation (or a blur operator)")
        kernel = Kernel.from_array(blur.kernel, path=None)
        degradation = Degradation(kernel, noise, preset.jpeg_quality)
    images = load_images(
        data_dir, size=preset.size, gray=preset.gray, max_images=preset.max_images, seed=seed
    )
    split = split_identities(images.identities, seed=seed)
    blurred, images.images = degrade_all(images.images, degradation, seed + 1)
    meta = {
        "n_images": len(images),
        "n_identities": len(set(images.identities)),
        "train_ids": split.train_ids,
        "val_ids": split.val_ids,
        "test_ids": split.test_ids,
        "n_train": len(split.train),
        "n_val": len(split.val),
        "n_test": len(split.test),
    }
    return Splits(
        _pairs(images, split.train, blurred),
        _pairs(images, split.val, blurred),
        _pairs(images, split.test, blurred),
        images.source,
        meta,
    )
