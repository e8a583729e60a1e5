"""Training pairs for a generalist CNN (``train --kernels FAMILY``): degraded on the fly.

Each training image is degraded afresh in every epoch by a degradation drawn from a
`benchmarks.degradation.DegradationFamily` (a Gaussian of random sigma, a random camera-shake
trajectory, a random noise level, ...). The draw of image ``i`` in epoch ``e`` depends only on
``(seed, e, i)``, not on the order the images are visited in nor on the process that visits
them, so a resumed or distributed training sees exactly the pairs of an uninterrupted one:
`convae.train` tells the dataset its epoch (``set_epoch``, as PyTorch's samplers are told).
Validation pairs are drawn once, from a stream of their own, so the best epoch is chosen on
the same images and degradations throughout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from benchmarks.degradation import DegradationFamily
from benchmarks.extra_pairs import dihedral, photo_crops
from benchmarks.pairs import PairSet

#: Seed-sequence tags keeping the training and validation draws apart.
_TRAIN, _VAL = 0, 1


def _draw(
    family: DegradationFamily, sharp: torch.Tensor, key: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image ``(C, H, W)`` degraded by a draw seeded by ``key``: ``(blurred, sharp)``."""
    rng = np.random.default_rng(key)
    degradation = family.sample(rng)
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63)))
    b, s = degradation.apply(sharp[None], gen)
    return b[0], s[0]


class FamilyPairs(Dataset):
    """``(blurred, sharp)`` pairs of the images ``sharp`` (N, C, H, W), each degraded by its
    own draw from ``family`` in every epoch (see the module docstring)."""

    def __init__(self, sharp: torch.Tensor, family: DegradationFamily, seed: int) -> None:
        if sharp.ndim != 4 or not len(sharp):
            raise ValueError(f"expected (N, C, H, W) images, got {tuple(sharp.shape)}")
        self.sharp = sharp.float().contiguous()
        self.family = family
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the degradations of epoch ``epoch`` from now on (`convae.train` calls it)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.sharp.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _draw(self.family, self.sharp[i], [self.seed, _TRAIN, self.epoch, int(i)])


def redraw(pairs: PairSet, family: DegradationFamily, seed: int) -> PairSet:
    """``pairs`` with every sharp image degraded once by its own draw from ``family`` (the
    validation pairs of a generalist: the same in every epoch)."""
    drawn = [_draw(family, pairs.sharp[i], [int(seed), _VAL, i]) for i in range(len(pairs))]
    blurred = torch.stack([b for b, _ in drawn])
    sharp = torch.stack([s for _, s in drawn])
    return PairSet(blurred, sharp, list(pairs.identities), list(pairs.names))


def sharp_pool(
    faces: torch.Tensor,
    *,
    extra_photos: int = 0,
    augment_photos: bool = False,
    augment_faces: bool = False,
    seed: int = 0,
) -> torch.Tensor:
    """The sharp training images of a generalist: the faces, their 8 flips / quarter turns
    with ``augment_faces`` (any turn is sound: the blur is drawn afterwards), then
    ``extra_photos`` crops of the bundled photographs (seeded by ``seed + 1``, as ``run``
    draws them)."""
    if extra_photos < 0:
        raise ValueError(f"--extra-photos must be >= 0, got {extra_photos}")
    parts = [faces]
    if augment_faces:
        square = faces.shape[-1] == faces.shape[-2]
        parts += [dihedral(faces, k) for k in range(1, 8) if k % 2 == 0 or square]
    if extra_photos:
        size, gray = int(faces.shape[-1]), faces.shape[1] == 1
        parts.append(
            photo_crops(extra_photos, size, gray=gray, seed=seed + 1, augment=augment_photos)
        )
    return torch.cat(parts)


def family_training(
    train: PairSet,
    val: PairSet | None,
    family: DegradationFamily,
    options: Mapping[str, Any],
    seed: int,
) -> tuple[FamilyPairs, PairSet | None, PairSet]:
    """What a generalist trains on: the on-the-fly pairs of the training faces (with the
    ``extra_photos`` / ``augment_photos`` / ``augment_faces`` of ``options``, `sharp_pool`),
    the validation pairs drawn once (`redraw`), and one fixed draw of the training faces (for
    a model that starts from a fit on pairs). ``train``'s blurred images are not used."""
    pool = sharp_pool(
        train.sharp,
        extra_photos=int(options.get("extra_photos", 0)),
        augment_photos=bool(options.get("augment_photos")),
        augment_faces=bool(options.get("augment_faces")),
        seed=seed,
    )
    val_pairs = redraw(val, family, seed) if val is not None and len(val) else None
    return FamilyPairs(pool, family, seed), val_pairs, redraw(train, family, seed + 1)
