"""Reading image files: the one reader every ``benchmarks`` path uses.

`read_picture` returns a `Picture` whose samples are on [0, 1] at the file's real
depth: 8-bit images as Pillow decodes them; 16-bit gray (Pillow modes ``I;16*``) divided by
65535; 32-bit integer images (mode ``I``) by their bit depth; float images (mode ``F``) as they
are, clipped to [0, 1]; 16-bit colour PNGs and TIFFs, which Pillow would cut to 8 bits, decoded
at full depth (`benchmarks.png16`, ``tifffile``).  The EXIF orientation is applied, so a
phone photo taken upright is read upright.  Transparent pixels are composited onto white (as
a viewer shows the image on a white page), never read in the colour the transparency hides.
An animation or a multi-page file gives its first frame, with a warning that names the file
and its number of frames (`read_or_warn`).

8-bit images stay 8-bit Pillow bands through crop and resize, so that their pixels are exactly
what the face loader produced before this reader existed; deeper images are cropped and
resized as float (``F``) bands.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.errors import UserError
from benchmarks.png16 import needs_png16, read_png16

#: The image files a folder is searched for (lower-case suffixes).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm")
#: Formats whose extra frames are not more images of a sequence: an MPO JPEG's are previews
#: (or a stereo pair), a PSD's are the layers of the composite that is read.
_NOT_SEQUENCES = {"MPO", "PSD"}
#: ITU-R 601-2 luma, the weights of Pillow's ``convert("L")``
_LUMA = (0.299, 0.587, 0.114)
_EIGHT_BIT_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK"}
_EIGHT_BIT_MODES |= {"YCbCr", "LAB", "HSV"}
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class UnreadableImage(UserError):
    """An image file that cannot be decoded; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: object) -> None:
        self.path, self.reason = Path(path), str(reason)
        super().__init__(f"cannot read image {path}: {reason}")


def suffixes_text() -> str:
    return "/".join(IMAGE_SUFFIXES)


def image_files(root: str | Path) -> list[Path]:
    """Every image file under the folder ``root`` (recursive, by suffix, sorted)."""
    return sorted(
        p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


@dataclass
class Picture:
    """One image as Pillow bands: ``L`` (8-bit, /255) or ``F`` (already on [0, 1]).

    ``frames``: how many frames the file held (an animation or a multi-page file holds more
    than one; the bands are the first).
    """

    bands: list[Image.Image]
    frames: int = 1

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` as Pillow gives it."""
        return self.bands[0].size

    def crop(self, box: tuple[int, int, int, int]) -> Picture:
        return Picture([b.crop(box) for b in self.bands])

    def center_square(self) -> Picture:
        w, h = self.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return self.crop((left, top, left + s, top + s))

    def resize(self, side: int) -> Picture:
        """Square ``side`` px, bicubic (Pillow antialiases when shrinking)."""
        if self.size == (side, side):
            return self
        return Picture(
            [
                b.resize((side, side), Image.Resampling.BICUBIC, reducing_gap=None)
                for b in self.bands
            ]
        )

    def array(self) -> np.ndarray:
        """``(C, H, W)`` float32 on [0, 1]."""
        planes = [
            np.asarray(b, dtype=np.float32) / 255.0
            if b.mode == "L"
            else np.clip(np.asarray(b, dtype=np.float32), 0.0, 1.0)
            for b in self.bands
        ]
        return np.stack(planes)


def read_picture(path: str | Path, *, gray: bool = False) -> Picture:
    """Decode ``path`` at full depth, upright, as 1 (``gray``) or 3 bands.

    Raises `UnreadableImage` naming the file for anything that cannot be decoded.
    """
    path = Path(path)
    im = None
    try:
        im = Image.open(path)
        im.load()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad files
        if im is not None:
            im.close()
        raise UnreadableImage(path, exc) from None
    with im:
        orientation = _orientation(im)
        frames = _frames(im)
        try:
            deep = _deep_array(path, im)
            pic = _from_pillow(im, gray) if deep is None else Picture(_float_bands(deep, gray))
        except (OSError, ValueError) as exc:  # PNGError and tifffile's errors are ValueErrors
            if isinstance(exc, UnreadableImage):
                raise
            raise UnreadableImage(path, exc) from None
    if orientation in _ORIENT:  # what ImageOps.exif_transpose does, band by band
        pic = Picture([b.transpose(_ORIENT[orientation]) for b in pic.bands])
    pic.frames = frames
    return pic


def read_or_warn(
    path: Path,
    *,
    gray: bool,
    category: type[Warning] = UserWarning,
    stacklevel: int = 3,
) -> Picture | None:
    """`read_picture`, or None with a warning that names the file (folders skip it).

    A file of several frames (an animated GIF, PNG or WebP, a multi-page TIFF) is read as its
    first frame, with a warning that names the file and its number of frames.
    """
    try:
        pic = read_picture(path, gray=gray)
    except UnreadableImage as exc:
        warnings.warn(
            f"skipping unreadable image {path}: {exc.reason}", category, stacklevel=stacklevel
        )
        return None
    if pic.frames > 1:
        warnings.warn(
            f"{path} holds {pic.frames} frames (an animation or a multi-page file); "
            f"only the first is used",
            category,
            stacklevel=stacklevel,
        )
    return pic


def _frames(im: Image.Image) -> int:
    """The number of frames of a sequence format (1 for the rest)."""
    if im.format in _NOT_SEQUENCES:
        return 1
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # a broken frame table: the first frame is what is read
        return 1


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block: read the pixels as stored
        return 1


def _deep_array(path: Path, im: Image.Image) -> np.ndarray | None:
    """The samples as an array when Pillow's 8-bit bands would lose depth, else None."""
    if im.mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    if im.mode == "I":
        return _scaled_int(np.asarray(im, dtype=np.int64), im)
    if im.mode == "F":
        return np.asarray(im, dtype=np.float32)
    if im.format == "PNG" and needs_png16(path):
        return read_png16(path)
    if im.format == "TIFF" and max(_tiff_bits(im)) > 8:
        import tifffile

        return np.asarray(tifffile.imread(path))
    if im.mode not in _EIGHT_BIT_MODES:
        raise UnreadableImage(path, f"unsupported image mode {im.mode!r}")
    return None


def _tiff_bits(im: Image.Image) -> tuple[int, ...]:
    bits = getattr(im, "tag_v2", {}).get(258, (8,))
    return tuple(bits) if isinstance(bits, tuple) else (int(bits),)


def _scaled_int(a: np.ndarray, im: Image.Image) -> np.ndarray:
    """Mode ``I`` (32-bit ints) as float on [0, 1]: by the TIFF bit depth, else 16 bits
    (Pillow's mode for 16-bit PNG/PGM files, already scaled to 0-65535)."""
    bits = max(_tiff_bits(im)) if im.format == "TIFF" else 16
    return (np.clip(a, 0, None) / float(2**bits - 1)).astype(np.float32)


def _to_unit(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        return np.clip(a.astype(np.float32), 0.0, 1.0)
    if a.dtype.kind in "ui":
        top = float(np.iinfo(a.dtype).max)
        return (np.clip(a.astype(np.float64), 0, None) / top).astype(np.float32)
    if a.dtype.kind == "b":
        return a.astype(np.float32)
    raise ValueError(f"unsupported sample type {a.dtype}")


def _float_bands(a: np.ndarray, gray: bool) -> list[Image.Image]:
    """``(H, W)`` or ``(H, W, C)`` samples -> 1 or 3 ``F`` bands (an alpha channel, the
    second of two or the fourth of four, composited onto white)."""
    u = _to_unit(a)
    if u.ndim == 3 and u.shape[2] in (2, 4):  # gray or RGB + alpha: over white
        alpha = u[..., -1:]
        u = u[..., :-1] * alpha + (1.0 - alpha)
    if u.ndim == 3 and u.shape[2] == 1:
        u = u[..., 0]
    elif u.ndim == 3 and u.shape[2] >= 3:
        u = u[..., :3]
    elif u.ndim != 2:
        raise ValueError(f"unsupported sample layout {a.shape}")
    if u.ndim == 3 and gray:
        u = u[..., 0] * _LUMA[0] + u[..., 1] * _LUMA[1] + u[..., 2] * _LUMA[2]
    planes = [u] if u.ndim == 2 else [u[..., c] for c in range(3)]
    if not gray and len(planes) == 1:
        planes = planes * 3
    return [Image.fromarray(np.ascontiguousarray(p, dtype=np.float32)) for p in planes]


def _from_pillow(im: Image.Image, gray: bool) -> Picture:
    """An 8-bit image as ``L`` bands, converted exactly as the face loader always did; one with
    transparency (an alpha band, a transparent palette entry or colour) over white first."""
    if im.has_transparency_data:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
    if gray:
        return Picture([im.convert("L")])
    return Picture(list(im.convert("RGB").split()))
