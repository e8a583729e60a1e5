"""Column shards of ``V``: which columns a process owns, and loaders that read only those.

``V`` is ``m × n`` with one sample per column. In a run over ``world`` processes, process
``rank`` owns the contiguous block of columns `column_range` gives it (balanced: the
first ``n % world`` ranks get one column more), and the loaders below read that block and
nothing else, so no process ever holds the whole of ``V``:

* `load_npy_columns` maps a ``.npy`` file into memory (``np.load(mmap_mode='r')``) and
  copies out its own columns (or, with ``samples_as_rows=True``, its own rows of a file that
  stores ``Vᵀ``, which is one contiguous read per process);
* `load_image_columns` reads its own slice of the sorted image files of a folder, one
  flattened image per column.

Both return a `ColumnShard` ``(V, col_offset, n_cols)`` ready for
`dnmf.distributed.factorize_columns`. ``rank``/``world`` default to the initialised
``torch.distributed`` group, or to a single process.
"""

from __future__ import annotations

import numbers
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch.distributed as dist
from numpy.typing import DTypeLike
from PIL import Image, ImageOps, UnidentifiedImageError

from . import _validation as val

#: Pillow modes whose samples are 8-bit (what ``load_image_columns`` reads)
_EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})
#: File name endings that `load_image_columns` treats as images (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
#: Formats whose extra frames are not more images of a sequence: an MPO JPEG's are previews
#: (or a stereo pair), a PSD's are the layers of the composite that is read.
_NOT_SEQUENCES = frozenset({"MPO", "PSD"})
#: Pillow modes with an alpha band (a palette or a colour can also be transparent: ``info``)
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})


class ColumnShard(NamedTuple):
    """This process's block of columns: ``V`` is ``m × (stop - start)``, numpy float."""

    V: np.ndarray
    col_offset: int  # global index of V's first column
    n_cols: int  # number of columns of the whole matrix


def resolve_rank_world(rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """``(rank, world)`` as given, else from the initialised ``torch.distributed`` default
    group, else ``(0, 1)``. Giving only one of the two is an error."""
    if (rank is None) != (world is None):
        raise ValueError(f"give both rank and world or neither, got rank={rank!r}, world={world!r}")
    if rank is None:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    world = val.check_positive_int(world, "world")
    rank = val.check_positive_int(rank, "rank", allow_zero=True)
    if rank >= world:
        raise ValueError(f"rank must be in [0, world) = [0, {world}), got rank={rank}")
    return rank, world


def column_range(n_cols: int, rank: int, world: int) -> tuple[int, int]:
    """``(start, stop)`` of the columns rank ``rank`` of ``world`` owns.

    Balanced and contiguous: ranks ``0 … n_cols % world - 1`` own ``n_cols // world + 1``
    columns, the others ``n_cols // world``; the ranges tile ``[0, n_cols)`` in rank order.
    A rank owns no column (``start == stop``) only when ``n_cols < world``.
    """
    n_cols = val.check_positive_int(n_cols, "n_cols", allow_zero=True)
    rank, world = resolve_rank_world(rank, world)
    base, extra = divmod(n_cols, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _own_range(n_cols: int, rank: int, world: int, what: str) -> tuple[int, int]:
    if n_cols < world:
        raise ValueError(
            f"{what} has {n_cols} columns for {world} processes; every process needs at least "
            "one column (use fewer processes)"
        )
    return column_range(n_cols, rank, world)


def load_npy_columns(
    path: str | os.PathLike,
    rank: int | None = None,
    world: int | None = None,
    *,
    samples_as_rows: bool = False,
    dtype: DTypeLike | None = None,
) -> ColumnShard:
    """Read this rank's columns of a 2-D ``.npy`` file through a memory map.

    The file holds ``V`` (``m × n``, samples as columns) or, with ``samples_as_rows=True``,
    ``Vᵀ`` (``n × m``). Only the rank's block is copied into memory; the rest of the file is
    never read into this process (a C-ordered ``V`` is read row by row in strided pieces, so
    for big files store ``Vᵀ`` or a Fortran-ordered ``V``: then the block is one contiguous
    read). ``dtype`` converts the block (default: float32/float64 kept, other real numbers
    become float64). Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an
    unreadable file, a shape that is not 2-D, a non-real dtype, NaN/Inf or negative entries
    in the block, or fewer columns than processes.
    """
    rank, world = resolve_rank_world(rank, world)
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no .npy file at {str(p)!r}")
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # truncated header, not an .npy at all, object arrays...
        raise ValueError(f"could not read {str(p)!r} as a .npy array: {exc}") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        raise ValueError(f"{str(p)!r} is not a single .npy array (got {type(arr).__name__})")
    if arr.ndim != 2:
        raise ValueError(f"{str(p)!r} must hold a 2-D matrix, got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{str(p)!r} must hold real numbers, got dtype {arr.dtype}")
    n_cols = arr.shape[0] if samples_as_rows else arr.shape[1]
    start, stop = _own_range(n_cols, rank, world, str(p))
    try:
        block = (
            np.asarray(arr[start:stop, :]).T if samples_as_rows else np.asarray(arr[:, start:stop])
        )
    except (OSError, ValueError) as exc:  # a file shorter than its header says
        raise ValueError(f"could not read columns {start}:{stop} of {str(p)!r}: {exc}") from None
    if dtype is not None:
        out_dtype = np.dtype(dtype)
    elif block.dtype in (np.float32, np.float64):
        out_dtype = block.dtype
    else:
        out_dtype = np.dtype(np.float64)
    block = np.ascontiguousarray(block, dtype=out_dtype)
    del arr
    # the checks dnmf.factorize makes (on a view of the block for float32/float64)
    what = f"{str(p)!r} columns {start}:{stop}"
    val.check_matrix(val.to_tensor(block, what), what, allow_batch=False)
    return ColumnShard(block, start, n_cols)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files of ``folder`` (not recursive), sorted by name: the column order."""
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"no image folder at {str(d)!r}")
    files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"{str(d)!r} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return files


def _parse_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int or a (height, width) pair, got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def _frames(im: Image.Image) -> int:
    """The number of frames of a sequence format (1 for the rest)."""
    if im.format in _NOT_SEQUENCES:
        return 1
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # a broken frame table: the first frame is what is read
        return 1


def _over_white(im: Image.Image) -> Image.Image:
    """``im`` with its transparency (an alpha band, a transparent palette entry or colour)
    composited onto white, as a viewer shows it on a white page; ``im`` itself when it has
    none. Converting it straight to ``L`` or ``RGB`` would read the colour the transparency
    hides (often black) instead."""
    if im.mode not in _ALPHA_MODES and "transparency" not in im.info:
        return im
    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")


def load_image_columns(
    folder: str | os.PathLike,
    rank: int | None = None,
    world: int | None = None,
    *,
    size: int | tuple[int, int] | None = None,
    gray: bool = True,
    dtype: DTypeLike = np.float32,
) -> ColumnShard:
    """Read this rank's images of ``folder`` as columns: ``V`` is ``(h·w·c) × n_own``.

    Files are sorted by name and split with `column_range`; only the rank's own files
    are opened. Each image becomes one column in [0, 1] (row-major pixels, channels last):
    gray (``c = 1``) by default, RGB with ``gray=False``; ``size`` (an int or
    ``(height, width)``) resizes with bicubic filtering, otherwise every image must have the
    size of the rank's first one (ranks then compare row counts when factorizing). The EXIF
    orientation is applied, and transparent pixels are composited onto white (never read in
    the colour the transparency hides). A file of several frames (an animated PNG or WebP, a
    multi-page TIFF) is read as its first frame, with a warning that names the file and its
    number of frames. Needs Pillow. Raises ``FileNotFoundError``/``ValueError`` for a
    missing folder, a folder without images, an unreadable or not 8-bit image (named, e.g. a
    16-bit PNG, which converting would clip, or one Pillow refuses as a decompression bomb)
    or mismatched sizes.
    """
    rank, world = resolve_rank_world(rank, world)
    hw = _parse_size(size)
    files = list_images(folder)
    start, stop = _own_range(len(files), rank, world, f"{str(folder)!r} ({len(files)} images)")
    cols = []
    shape = None
    for f in files[start:stop]:
        try:
            with Image.open(f) as im:
                # convert() would clip deeper images to 8 bits (16-bit gray becomes white)
                if im.mode not in _EIGHT_BIT_MODES:
                    raise ValueError(
                        f"mode {im.mode} is not an 8-bit image; this reader takes 8-bit "
                        f"images only: convert it, or read the images yourself and pass V"
                    )
                frames = _frames(im)
                im = ImageOps.exif_transpose(im)  # upright, as the camera meant it
                # composited after the turn: the composite no longer carries the EXIF block
                im = _over_white(im).convert("L" if gray else "RGB")
                if hw is not None:
                    im = im.resize((hw[1], hw[0]), Image.Resampling.BICUBIC)
                a = np.asarray(im, dtype=np.float32) / 255.0
        except (
            UnidentifiedImageError,
            OSError,
            SyntaxError,
            ValueError,
            Image.DecompressionBombError,  # not an OSError: Pillow's refusal of a huge header
        ) as exc:
            raise ValueError(f"could not read image {str(f)!r}: {exc}") from None
        if frames > 1:
            warnings.warn(
                f"{f} holds {frames} frames (an animation or a multi-page file); "
                "only the first is used",
                UserWarning,
                stacklevel=2,
            )
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise ValueError(
                f"image {str(f)!r} is {a.shape[1]}x{a.shape[0]} but {str(files[start])!r} is "
                f"{shape[1]}x{shape[0]}; pass size= to resize every image"
            )
        cols.append(a.reshape(-1))
    V = np.stack(cols, axis=1).astype(dtype, copy=False)
    return ColumnShard(np.ascontiguousarray(V), start, len(files))


__all__ = [
    "ColumnShard",
    "IMAGE_EXTENSIONS",
    "column_range",
    "list_images",
    "load_image_columns",
    "load_npy_columns",
    "resolve_rank_world",
]
