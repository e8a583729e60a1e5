"""The CNN methods' training data: extra pairs from photographs, exact flips of the faces.

The CNN adapter (`benchmarks.methods.CNNMethod`) calls `cnn_training_pairs` for
``--extra-photos`` / ``--augment-photos`` / ``--augment-faces`` (in ``run`` and ``train``), and
`check_cnn_data` and `check_tta` from its ``check_options`` hook.

A CNN trained on the 35 training people of the face set overfits them within minutes.
Deblurring is local, so random crops of ordinary photographs, degraded by exactly the
benchmark's operator, are valid extra training pairs. They come from scikit-image's bundled
photographs (the embedded default set: no download), at full and half scale. They are added
to the training split only. Validation and test stay faces of held-out people.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.blur import BlurOperator, degrade
from benchmarks.faces import EMBEDDED_PHOTOS
from convae.tta import dihedral


def _photos(size: int, gray: bool) -> list[torch.Tensor]:
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    out = []
    for name in EMBEDDED_PHOTOS:
        path = folder / name
        if not path.exists():
            continue
        im = Image.open(path).convert("L" if gray else "RGB")
        for scale in (1.0, 0.5):
            w, h = int(im.width * scale), int(im.height * scale)
            if min(w, h) < size:
                continue
            a = np.asarray(im if scale == 1 else im.resize((w, h), Image.Resampling.LANCZOS))
            t = torch.from_numpy(a.astype(np.float32) / 255.0)
            out.append(t[None] if gray else t.permute(2, 0, 1))
    return out


def photo_crops(
    n: int, size: int, *, gray: bool = False, seed: int = 1, augment: bool = False
) -> torch.Tensor:
    """``n`` seeded random ``size``-px crops ``(n, C, size, size)`` in [0, 1] (C = 1 if gray).

    ``augment``: each crop also gets one of the 8 flips / quarter turns of the square, drawn
    from the same seed.  That is safe for any blur because the pairs are degraded afterwards.
    """
    if n < 0:
        raise ValueError(f"the number of extra photo crops must be >= 0, got {n}")
    photos = _photos(size, gray)
    if not photos:
        raise RuntimeError(
            f"no bundled scikit-image photograph is at least {size} px on its "
            "short side (is scikit-image installed?)"
        )
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(n, 1 if gray else 3, size, size)
    for i in range(n):
        p = photos[int(torch.randint(len(photos), (1,), generator=gen))]
        y = int(torch.randint(p.shape[1] - size + 1, (1,), generator=gen))
        x = int(torch.randint(p.shape[2] - size + 1, (1,), generator=gen))
        crop = p[:, y : y + size, x : x + size]
        if augment:
            crop = dihedral(crop, int(torch.randint(8, (1,), generator=gen)))
        out[i] = crop
    return out


def photo_pairs(
    n: int,
    size: int,
    blur: BlurOperator,
    *,
    gray: bool = False,
    noise: float = 0.0,
    seed: int = 1,
    augment: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(blurred, sharp)``: `photo_crops` degraded like the benchmark's images."""
    sharp = photo_crops(n, size, gray=gray, seed=seed, augment=augment)
    if n == 0:
        return sharp.clone(), sharp
    gen = torch.Generator().manual_seed(seed + 1)
    blurred = torch.cat([degrade(c, blur, noise=noise, generator=gen) for c in sharp.split(128)])
    return blurred, sharp


def psf_symmetries(blur: BlurOperator) -> list[int]:
    """The ``k`` of `dihedral` under which ``blur`` maps transformed images to the
    transformed blur: those leaving its (odd-sized, centred) kernel unchanged.  The reflect
    boundary commutes with all eight; an even-sized kernel's centring does not, so only the
    identity is returned for it."""
    kern = blur.kernel
    if kern.shape[0] % 2 == 0 or kern.shape[1] % 2 == 0:
        return [0]
    return [
        k
        for k in range(8)
        if dihedral(kern, k).shape == kern.shape
        and torch.allclose(dihedral(kern, k), kern, rtol=1e-6, atol=1e-12)
    ]


def dihedral_pairs(
    blurred: torch.Tensor, sharp: torch.Tensor, blur: BlurOperator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training pairs and their flips / turns, for each one the blur is symmetric under
    (all eight for the Gaussian): exact extra pairs, since transforming a degraded image equals
    degrading the transformed one.  Quarter turns need square images and are skipped otherwise."""
    ks = [k for k in psf_symmetries(blur) if k % 2 == 0 or blurred.shape[-1] == blurred.shape[-2]]
    if ks == [0]:
        raise ValueError(
            "the blur kernel is not symmetric under any flip or quarter turn, so "
            "flipped training pairs would be wrong; drop --augment-faces"
        )
    return (
        torch.cat([dihedral(blurred, k) for k in ks]),
        torch.cat([dihedral(sharp, k) for k in ks]),
    )


def check_tta(tta: bool, blur: BlurOperator) -> None:
    """``--tta`` averages over all 8 flips / quarter turns: refuse a blur that they change."""
    if tta and psf_symmetries(blur) != list(range(8)):
        raise ValueError(
            "--tta needs a blur kernel unchanged by flips and quarter turns (like "
            "the default Gaussian); this one is not, so the flipped inputs would "
            "be blurred differently: drop --tta"
        )


def check_cnn_data(extra_photos: int, augment_faces: bool, blur: BlurOperator) -> None:
    """The errors `cnn_training_pairs` would raise, cheaply, for commands to call before
    they load data or make a run folder."""
    if extra_photos < 0:
        raise ValueError(f"--extra-photos must be >= 0, got {extra_photos}")
    if augment_faces and psf_symmetries(blur) == [0]:
        raise ValueError(
            "--augment-faces needs a blur kernel symmetric under some flip or "
            "quarter turn; this one is not: drop --augment-faces"
        )


def cnn_training_pairs(
    blurred: torch.Tensor,
    sharp: torch.Tensor,
    blur: BlurOperator,
    *,
    extra_photos: int = 0,
    augment_photos: bool = False,
    augment_faces: bool = False,
    noise: float = 0.0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The CNN training pairs of ``train --extra-photos/--augment-*`` (and ``run``): the
    training faces, their exact flips/turns when ``augment_faces``, then ``extra_photos``
    degraded photo crops (seeded by ``seed + 1``).  Validation and test never pass here."""
    check_cnn_data(extra_photos, augment_faces, blur)
    b, s = dihedral_pairs(blurred, sharp, blur) if augment_faces else (blurred, sharp)
    if extra_photos:
        eb, es = photo_pairs(
            extra_photos,
            int(sharp.shape[-1]),
            blur,
            gray=sharp.shape[1] == 1,
            noise=noise,
            seed=seed + 1,
            augment=augment_photos,
        )
        b, s = torch.cat([b, eb]), torch.cat([s, es])
    return b, s
