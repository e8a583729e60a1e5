"""Model files of the deblurring models: dnmf's one atomic ``.npz`` writer (folder made first)
and its checksum-verifying reader (`dnmf._io`). What a dictionary model writes in them:
`dnmf.deblur.dictionary.FittedDictionary`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._io import read_npz, save_npz_atomic

__all__ = ["load_npz", "save_npz"]


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """`dnmf._io.save_npz_atomic`, after making ``path``'s folder if it is missing."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_npz_atomic(path, arrays)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of a model file, its SHA-256 verified (`dnmf._io.read_npz`).

    A file whose arrays changed after it was written is refused with ``ValueError("checksum
    mismatch in PATH: …; the file is damaged")``. Files written before model files carried a
    checksum have none and load unchecked.
    """
    return read_npz(path)[0]
