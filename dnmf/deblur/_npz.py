"""Model files of the deblurring models: dnmf's one atomic ``.npz`` writer, folder made first."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._io import save_npz_atomic

__all__ = ["save_npz"]


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """:func:`dnmf._io.save_npz_atomic`, after making ``path``'s folder if it is missing."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_npz_atomic(path, arrays)
