"""The fitted-dictionary shell of the Deep NMF deblurring priors: fitted state and model file.

A prior that learns a Deep NMF dictionary ``W1 … Wk`` from sharp images
(`dnmf.deblur.prior.DeepNMFPrior`, and the multiplicative-update ablation kept with the
experiments) holds the same fitted state — ``Ws_``, ``channels_``, ``loss_history_``,
``pretrain_histories_``, ``fit_seconds_`` — and the same model file: one ``.npz`` written
atomically with a SHA-256 of its arrays (`dnmf.deblur._npz`, on `dnmf._io`), whose arrays are
``W1 … Wk``, ``params`` (the JSON of ``get_params()``), ``channels``, ``loss_history``,
``pretrain_1 …`` and, for a class with a `FittedDictionary.FILE_KIND`, ``kind``.
`FittedDictionary` is that shell, written once; a model adds its settings and its restoration.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from ._npz import load_npz, save_npz

__all__ = ["FittedDictionary"]

_Model = TypeVar("_Model", bound="FittedDictionary")


class FittedDictionary:
    """Base of a model that learns a Deep NMF dictionary: its fitted state and its file.

    A subclass calls `_init_fitted` at the end of ``__init__`` (its settings are keyword
    arguments, plus ``device``), `_record_fit` at the end of ``fit``, and defines
    `get_params` (the keyword arguments that rebuild it: they are what `load` passes back).
    ``FILE_KIND`` tags its files so that `load` refuses another model's file; ``None`` writes
    untagged files (and loads any file with the arrays it needs).
    """

    FILE_KIND: ClassVar[str | None] = None

    device: torch.device
    Ws_: list[torch.Tensor] | None
    channels_: int | None
    loss_history_: np.ndarray | None
    pretrain_histories_: list[np.ndarray]
    fit_seconds_: float | None

    def _init_fitted(self, device: Any) -> None:
        """The device (CPU when ``None``) and the state of a model not fitted yet."""
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.Ws_ = None
        self.channels_ = None
        self.loss_history_ = None
        self.pretrain_histories_ = []
        self.fit_seconds_ = None

    def _record_fit(
        self, Ws: Sequence[torch.Tensor], result: Any, channels: int, started: float
    ) -> None:
        """Keep a fit's layers ``Ws``, the image channels, the loss histories of ``result``
        (a `dnmf.FactorizationResult`) and the seconds since ``started``
        (a `time.perf_counter` reading)."""
        self.Ws_ = list(Ws)
        self.channels_ = int(channels)
        self.loss_history_ = np.asarray(result.loss_history)
        self.pretrain_histories_ = [np.asarray(h) for h in result.pretrain_loss_histories]
        self.fit_seconds_ = time.perf_counter() - started

    def fitted_layers(self) -> list[torch.Tensor]:
        """``Ws_``, or a ``RuntimeError`` naming the class when the model is not fitted."""
        if self.Ws_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        return self.Ws_

    def get_params(self) -> dict[str, Any]:
        """The settings as keyword arguments of the class (JSON-able)."""
        raise NotImplementedError

    def n_parameters(self) -> int:
        """Entries of the dictionary's layers (0 before `fit`)."""
        return int(sum(W.numel() for W in self.Ws_ or []))

    # --------------------------------------------------------------- the model file
    def save(self, path: str | os.PathLike) -> None:
        """Write the dictionary and the settings to an ``.npz`` (atomically, checksummed)."""
        if self.Ws_ is None:
            raise RuntimeError("nothing to save: the prior is not fitted")
        arrays = {f"W{i + 1}": W.cpu().numpy() for i, W in enumerate(self.Ws_)}
        arrays["params"] = np.asarray(json.dumps(self.get_params()))
        if self.FILE_KIND is not None:
            arrays["kind"] = np.asarray(self.FILE_KIND)
        arrays["channels"] = np.asarray(self.channels_)
        history = self.loss_history_ if self.loss_history_ is not None else np.zeros(0)
        arrays["loss_history"] = np.asarray(history)
        for i, h in enumerate(self.pretrain_histories_):
            arrays[f"pretrain_{i + 1}"] = h
        save_npz(path, arrays)

    @classmethod
    def load(cls: type[_Model], path: str | os.PathLike, device: Any = None) -> _Model:
        """Read a model written by `save` (its checksum verified; ``device``: where its
        layers go). A file of another kind of model is a ``ValueError`` naming the file."""
        z = load_npz(path)
        kind = cls.FILE_KIND
        if kind is not None and ("kind" not in z or str(z["kind"]) != kind):
            raise ValueError(f"{path} is not a saved {cls.__name__} model")
        params = json.loads(str(z["params"]))
        make: Any = cls  # a subclass takes its settings as keywords (the base takes none)
        obj = make(**params, device=device)
        k = len(params["ranks"])
        obj.Ws_ = [torch.from_numpy(z[f"W{i + 1}"]).to(obj.device) for i in range(k)]
        obj.channels_ = int(z["channels"])
        obj.loss_history_ = z["loss_history"]
        obj.pretrain_histories_ = [
            z[f"pretrain_{i + 1}"] for i in range(k) if f"pretrain_{i + 1}" in z
        ]
        return obj
