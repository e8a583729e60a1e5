"""Face folders -> tensors: recursive loading, identity parsing, crop/resize, splits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.images import IMAGE_SUFFIXES as IMAGE_SUFFIXES  # the one list, re-exported
from benchmarks.images import Picture, image_files, read_or_warn, suffixes_text

_STEM_SUFFIX = re.compile(r"_\d+_?$")

# Real photographs shipped inside the scikit-image wheel (no download). Each is its own
# identity; synthetic/binary images and the motion-blurred clock are left out on purpose.
EMBEDDED_PHOTOS = (
    "astronaut.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "moon.png",
    "page.png",
    "rocket.jpg",
    "retina.jpg",
    "motorcycle_left.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "ihc.png",
    "text.png",
    "hubble_deep_field.jpg",
    "microaneurysms.png",
    "cell.png",
)


@dataclass
class ImageSet:
    """Preprocessed images ``(N, C, S, S)`` float32 in [0, 1] with identity and name per image."""

    images: torch.Tensor
    identities: list[str]
    names: list[str]
    source: str

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class Split:
    """Index lists into an `ImageSet`; identity-disjoint by construction."""

    train: list[int]
    val: list[int]
    test: list[int]
    train_ids: list[str]
    val_ids: list[str]
    test_ids: list[str]


def find_images(root: str | Path) -> list[Path]:
    """All JPEG/PNG/PGM files under ``root`` (recursive, sorted); clear errors if none."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"data folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"--data-dir must be a folder, got a file: {root}")
    files = image_files(root)
    if not files:
        raise ValueError(f"no images ({suffixes_text()}) found under {root}")
    return files


def identity_from_stem(stem: str) -> str:
    """The identity in a file stem.

    ``Akshay Kumar_12`` -> ``Akshay Kumar``; ``person07_03_`` -> ``person07``; ``s12_4`` -> ``s12``.
    """
    ident = _STEM_SUFFIX.sub("", stem)
    return ident or stem


def parse_identities(files: list[Path], root: str | Path) -> list[str]:
    """Identity per file: the per-person sub-folder when the images sit in two or more sibling
    folders, else the file stem without its trailing ``_<digits>``."""
    root = Path(root)
    parents = {f.parent for f in files}
    grandparents = {p.parent for p in parents}
    if len(parents) >= 2 and len(grandparents) == 1 and root not in parents:
        return [f.parent.name for f in files]
    return [identity_from_stem(f.stem) for f in files]


def preprocess(pic: Picture, size: int) -> np.ndarray:
    """Center-crop to a square, resize (bicubic, antialiased by PIL), return ``(C, S, S)``."""
    return pic.center_square().resize(size).array()


def _cap_per_identity(identities: list[str], max_images: int | None, seed: int) -> list[int]:
    """Keep at most ``max_images`` indices, spread evenly over identities (seeded)."""
    n = len(identities)
    if max_images is None or max_images >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, ident in enumerate(identities):
        groups.setdefault(ident, []).append(i)
    queues = [list(rng.permutation(g)) for _, g in sorted(groups.items())]
    keep: list[int] = []
    while len(keep) < max_images:
        for q in queues:
            if q and len(keep) < max_images:
                keep.append(int(q.pop(0)))
    return sorted(keep)


def load_face_folder(
    root: str | Path, *, size: int, gray: bool = False, max_images: int | None = None, seed: int = 0
) -> ImageSet:
    """Load every readable image under ``root``; unreadable files are skipped with a warning."""
    files = find_images(root)
    identities = parse_identities(files, root)
    keep = _cap_per_identity(identities, max_images, seed)
    arrays, ids, names = [], [], []
    for i in keep:
        pic = read_or_warn(files[i], gray=gray)
        if pic is None:
            continue
        arrays.append(preprocess(pic, size))
        ids.append(identities[i])
        names.append(str(files[i].relative_to(root)))
    if not arrays:
        raise ValueError(f"none of the {len(files)} image files under {root} could be read")
    return ImageSet(torch.from_numpy(np.stack(arrays)), ids, names, source=str(root))


def load_embedded(
    *, size: int, gray: bool = False, max_images: int | None = None, seed: int = 0
) -> ImageSet:
    """Non-overlapping square crops of scikit-image's bundled photographs, one identity each."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    arrays, ids, names = [], [], []
    for fname in EMBEDDED_PHOTOS:
        path = folder / fname
        pic = read_or_warn(path, gray=gray) if path.exists() else None
        if pic is None:
            continue
        w, h = pic.size
        tile = max(size, min(w, h) // 3)  # about 9 crops per photograph
        for r in range(h // tile):
            for c in range(w // tile):
                crop = pic.crop((c * tile, r * tile, (c + 1) * tile, (r + 1) * tile))
                arrays.append(preprocess(crop, size))
                ids.append(Path(fname).stem)
                names.append(f"{Path(fname).stem}_r{r}c{c}.png")
    if not arrays:
        raise RuntimeError("scikit-image's bundled photographs were not found")
    keep = _cap_per_identity(ids, max_images, seed)
    return ImageSet(
        torch.from_numpy(np.stack([arrays[i] for i in keep])),
        [ids[i] for i in keep],
        [names[i] for i in keep],
        source="embedded: scikit-image sample photographs",
    )


#: The face set that ships with the package (Georgia Tech Face Database, 50 people x 15
#: tight colour crops; attribution and terms in ``SOURCE.txt`` beside the images).
SHIPPED_FACES = Path(__file__).resolve().parent / "data" / "gt_faces"
SHIPPED_FACES_SOURCE = "shipped face set: Georgia Tech Face Database (50 people x 15 images)"
#: ``--data-dir`` names for the data that comes with the toolkit (no folder of that name needed).
BUILTIN_SETS = {
    "builtin:faces": "the shipped face set (the default)",
    "builtin:photos": "crops of scikit-image's sample photographs (not faces)",
}


def load_images(
    data_dir: str | Path | None,
    *,
    size: int,
    gray: bool = False,
    max_images: int | None = None,
    seed: int = 0,
) -> ImageSet:
    """The data a run uses: ``data_dir`` if given, else the shipped face set.

    ``data_dir`` may also name a built-in set (`BUILTIN_SETS`): ``builtin:faces`` (the
    shipped faces) or ``builtin:photos`` (scikit-image's photographs, not faces).
    """
    name = str(data_dir) if data_dir is not None else "builtin:faces"
    if name.startswith("builtin:"):
        if name not in BUILTIN_SETS:
            raise ValueError(
                f"--data-dir {name!r}: unknown built-in set; choose one of "
                f"{sorted(BUILTIN_SETS)} or a folder of images"
            )
        if name == "builtin:photos":
            return load_embedded(size=size, gray=gray, max_images=max_images, seed=seed)
        faces = load_face_folder(
            SHIPPED_FACES, size=size, gray=gray, max_images=max_images, seed=seed
        )
        faces.source = SHIPPED_FACES_SOURCE
        return faces
    return load_face_folder(data_dir, size=size, gray=gray, max_images=max_images, seed=seed)


def split_identities(
    identities: list[str], *, seed: int = 0, test_frac: float = 0.2, val_frac: float = 0.1
) -> Split:
    """Seeded identity-disjoint split: 20% of the people (>= 1) test, 10% (>= 1) val, rest train."""
    people = sorted(set(identities))
    if len(people) < 3:
        raise ValueError(
            f"the split needs at least 3 identities (train, validation, test), found "
            f"{len(people)}: {people}. Identities come from per-person folders or the file "
            f"stem without its trailing _<digits>"
        )
    rng = np.random.default_rng(seed)
    order = [people[i] for i in rng.permutation(len(people))]
    n_test = max(1, int(round(test_frac * len(people))))
    n_val = max(1, int(round(val_frac * len(people))))
    if n_test + n_val >= len(people):
        n_test, n_val = 1, 1
    test_ids, val_ids = order[:n_test], order[n_test : n_test + n_val]
    train_ids = order[n_test + n_val :]
    sets = {"train": set(train_ids), "val": set(val_ids), "test": set(test_ids)}
    idx = {k: [i for i, p in enumerate(identities) if p in s] for k, s in sets.items()}
    return Split(
        idx["train"], idx["val"], idx["test"], sorted(train_ids), sorted(val_ids), sorted(test_ids)
    )
