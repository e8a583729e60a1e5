"""The CNN methods' training data: extra pairs from photographs, flips of the faces.

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
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.blur import BlurOperator
from benchmarks.degradation import Degradation, DegradationFamily, degrade_pair
from benchmarks.errors import UserError
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
    jpeg_quality: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(blurred, sharp)``: `photo_crops` degraded like the benchmark's images
    (`benchmarks.degradation.degrade_pair`: the noise seeded by ``seed + 1``, the JPEG copies
    of both images with ``jpeg_quality``)."""
    sharp = photo_crops(n, size, gray=gray, seed=seed, augment=augment)
    if n == 0:
        return sharp.clone(), sharp
    gen = torch.Generator().manual_seed(seed + 1)
    pairs = [
        degrade_pair(c, blur, noise=noise, jpeg_quality=jpeg_quality, generator=gen)
        for c in sharp.split(128)
    ]
    return torch.cat([b for b, _ in pairs]), torch.cat([s for _, s in pairs])


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
    blurred: torch.Tensor,
    sharp: torch.Tensor,
    blur: BlurOperator,
    *,
    noise: float = 0.0,
    seed: int = 0,
    jpeg_quality: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training pairs and their 8 flips / quarter turns (the 4 flips and half turns when
    the images are not square), each an exact pair of ``blur``.

    A turned blurred image is the turned sharp one blurred by the *turned* kernel; where the
    turn leaves the kernel unchanged (all eight for the Gaussian, `psf_symmetries`) the pair is
    the turned pair, elsewhere (a camera-shake kernel) the turned sharp image is degraded
    afresh by ``blur`` (noise std ``noise`` seeded by ``seed``, then the JPEG step of
    ``jpeg_quality``), so that every pair shows the run's own kernel."""
    ks = [k for k in range(8) if k % 2 == 0 or blurred.shape[-1] == blurred.shape[-2]]
    same = set(psf_symmetries(blur))
    gen = torch.Generator().manual_seed(seed)
    bs, ss = [], []
    for k in ks:
        s = dihedral(sharp, k)
        if k in same:
            b = dihedral(blurred, k)
        else:
            b, _ = degrade_pair(s, blur, noise=noise, jpeg_quality=jpeg_quality, generator=gen)
        bs.append(b)
        ss.append(s)
    return torch.cat(bs), torch.cat(ss)


def check_tta(tta: bool, blur: BlurOperator) -> None:
    """``--tta`` averages over all 8 flips / quarter turns: refuse a blur that they change
    (a model trained on it would see its flipped inputs blurred by kernels it never saw)."""
    if tta and psf_symmetries(blur) != list(range(8)):
        raise ValueError(
            "--tta needs a blur kernel unchanged by flips and quarter turns (like "
            "the default Gaussian); this one is not, so the flipped inputs would "
            "be blurred differently: drop --tta"
        )


def check_tta_trained(
    tta: bool, trained: Degradation | DegradationFamily | None, path: Any
) -> None:
    """``--tta`` with a loaded model: refuse one trained on a kernel the flips / quarter turns
    change. A model trained on a `DegradationFamily` saw the turned kernels as often as the
    kernels (every family is closed under them), so its self-ensemble is sound."""
    if tta and isinstance(trained, Degradation) and psf_symmetries(trained.blur) != list(range(8)):
        raise UserError(
            f"--tta: the model in {path} was trained on {trained.kernel.describe()}, which "
            f"flips and quarter turns change, so its flipped inputs would be blurred by "
            f"kernels it never saw: drop --tta"
        )


def check_cnn_data(extra_photos: int, augment_faces: bool, blur: BlurOperator) -> None:
    """The errors `cnn_training_pairs` would raise, cheaply, for commands to call before
    they load data or make a run folder: a negative ``extra_photos`` (``augment_faces`` is
    sound for every kernel, `dihedral_pairs`)."""
    if extra_photos < 0:
        raise ValueError(f"--extra-photos must be >= 0, got {extra_photos}")


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
    jpeg_quality: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The CNN training pairs of ``train --extra-photos/--augment-*`` (and ``run``): the
    training faces, their flips/turns when ``augment_faces`` (`dihedral_pairs`, fresh noise
    seeded by ``seed + 2``), then ``extra_photos`` degraded photo crops (seeded by
    ``seed + 1``).  Validation and test never pass here."""
    check_cnn_data(extra_photos, augment_faces, blur)
    b, s = blurred, sharp
    if augment_faces:
        b, s = dihedral_pairs(
            blurred, sharp, blur, noise=noise, seed=seed + 2, jpeg_quality=jpeg_quality
        )
    if extra_photos:
        eb, es = photo_pairs(
            extra_photos,
            int(sharp.shape[-1]),
            blur,
            gray=sharp.shape[1] == 1,
            noise=noise,
            seed=seed + 1,
            augment=augment_photos,
            jpeg_quality=jpeg_quality,
        )
        b, s = torch.cat([b, eb]), torch.cat([s, es])
    return b, s
