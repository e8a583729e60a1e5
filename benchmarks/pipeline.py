"""From a folder (or the embedded photographs) to identity-disjoint (blurred, sharp) splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.blur import BlurOperator, degrade
from benchmarks.faces import ImageSet, load_images, split_identities
from benchmarks.jpeg import jpeg_round_trip
from benchmarks.pairs import PairSet
from benchmarks.presets import Preset


@dataclass
class Splits:
    train: PairSet
    val: PairSet
    test: PairSet
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


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
    blur: BlurOperator,
    noise: float = 0.0,
) -> Splits:
    """Load, split by identity (seeded), and degrade every image once (seeded noise).

    With ``preset.jpeg_quality`` set, the sharp and the blurred images are then both replaced
    by their JPEG copies at that quality (the source's protocol: every split, so that training
    and scoring see the same kind of image).
    """
    images = load_images(
        data_dir, size=preset.size, gray=preset.gray, max_images=preset.max_images, seed=seed
    )
    split = split_identities(images.identities, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    blurred = torch.cat(
        [degrade(chunk, blur, noise=noise, generator=gen) for chunk in images.images.split(256)]
    )
    if preset.jpeg_quality is not None:
        q = preset.jpeg_quality
        blurred = torch.cat([jpeg_round_trip(c, q) for c in blurred.split(256)])
        images.images = torch.cat([jpeg_round_trip(c, q) for c in images.images.split(256)])
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
