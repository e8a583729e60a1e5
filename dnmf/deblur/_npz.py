"""Model files of the deblurring models: dnmf's one atomic ``.npz`` writer (folder made first)
and its checksum-verifying reader (`dnmf._io`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import read_npz, save_npz_atomic

__all__ = ["load_npz", "save_npz", "save_dictionary", "load_dictionary"]


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


def save_dictionary(path: str | os.PathLike, model: Any, kind: str | None = None) -> None:
    """Write a fitted dictionary model (``Ws_``, ``channels_``, ``loss_history_``,
    ``pretrain_histories_`` and ``get_params()``) to one ``.npz``, atomically; ``kind`` tags
    the file so that `load_dictionary` can refuse another model's file."""
    if model.Ws_ is None:
        raise RuntimeError("nothing to save: the prior is not fitted")
    arrays = {f"W{i + 1}": W.cpu().numpy() for i, W in enumerate(model.Ws_)}
    arrays["params"] = np.asarray(json.dumps(model.get_params()))
    if kind is not None:
        arrays["kind"] = np.asarray(kind)
    arrays["channels"] = np.asarray(model.channels_)
    history = model.loss_history_ if model.loss_history_ is not None else []
    arrays["loss_history"] = np.asarray(history)
    for i, h in enumerate(model.pretrain_histories_):
        arrays[f"pretrain_{i + 1}"] = h
    save_npz(path, arrays)


def load_dictionary(
    cls: Any, path: str | os.PathLike, device: Any = None, kind: str | None = None
) -> Any:
    """A ``cls`` model read from a file of `save_dictionary` (``kind`` checked when given)."""
    z = load_npz(path)
    if kind is not None and ("kind" not in z or str(z["kind"]) != kind):
        raise ValueError(f"{path} is not a saved {cls.__name__} model")
    params = json.loads(str(z["params"]))
    obj = cls(**params, device=device)
    k = len(params["ranks"])
    obj.Ws_ = [torch.from_numpy(z[f"W{i + 1}"]).to(obj.device) for i in range(k)]
    obj.channels_ = int(z["channels"])
    obj.loss_history_ = z["loss_history"]
    obj.pretrain_histories_ = [z[f"pretrain_{i + 1}"] for i in range(k) if f"pretrain_{i + 1}" in z]
    return obj
