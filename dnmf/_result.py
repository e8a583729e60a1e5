"""``FactorizationResult``: the factors and diagnostics every dnmf solver returns, and its file."""

from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._convert import as_output, to_numpy
from ._io import save_npz_atomic
from ._mu import MUOutcome

FORMAT_VERSION = 1
Array = Any  # numpy.ndarray or torch.Tensor, following the input's kind


@dataclass
class FactorizationResult:
    """Factors and diagnostics of a (deep) NMF.

    ``Ws`` and ``H`` have the kind of the input (numpy arrays for numpy/scipy input, torch
    tensors on the computing device for tensor input). ``loss_history[i]`` is the objective
    (β-divergence + penalties) after ``loss_iters[i]`` joint iterations; for a batch it has one
    column per matrix, and ``n_iter``/``converged`` are arrays with one entry per matrix.
    """

    Ws: list[Array]
    H: Array
    loss_history: np.ndarray
    loss_iters: np.ndarray
    n_iter: int | np.ndarray
    converged: bool | np.ndarray
    beta: float
    ranks: tuple[int, ...]
    pretrain_loss_histories: list[np.ndarray] = field(default_factory=list)
    #: The search of ``factorize(V, ranks='auto')`` (a `dnmf.select.RankSelection`), else
    #: None; not saved to file.
    rank_selection: Any = None

    @classmethod
    def from_outcome(
        cls,
        out: MUOutcome,
        Ws: Sequence[torch.Tensor],
        H: torch.Tensor,
        *,
        kind: str,
        beta: float,
        pretrain_loss_histories: Sequence[np.ndarray] = (),
        **extra: Any,
    ) -> Any:
        """The result of a solver run: the factors in the input's ``kind`` ('numpy' or
        'torch'), the run's records, scalars for one matrix. ``extra`` fills a subclass's
        fields."""
        return cls(
            Ws=[as_output(W, kind) for W in Ws],
            H=as_output(H, kind),
            loss_history=out.loss_history,
            loss_iters=out.loss_iters,
            n_iter=int(out.n_iter) if out.n_iter.ndim == 0 else out.n_iter,
            converged=bool(out.converged) if out.converged.ndim == 0 else out.converged,
            beta=beta,
            ranks=tuple(int(W.shape[-1]) for W in Ws),
            pretrain_loss_histories=list(pretrain_loss_histories),
            **extra,
        )

    @property
    def loss(self) -> float | np.ndarray:
        """Final objective (one value per matrix for a batch)."""
        return self.loss_history[-1]

    def W(self) -> Array:
        """The product ``W1 W2 … Wk`` (the dictionary in data space)."""
        out = self.Ws[-1]
        for Wl in reversed(self.Ws[:-1]):
            out = Wl @ out
        return out

    def reconstruct(self) -> Array:
        """``W1 W2 … Wk H``, same kind (numpy/torch) and shape as the input."""
        return self.W() @ self.H

    def save(self, path: str | os.PathLike) -> None:
        """Write everything to one ``.npz`` file, atomically (read it back with ``dnmf.load``)."""
        arrays: dict[str, np.ndarray] = {
            "format_version": np.asarray(FORMAT_VERSION),
            "n_layers": np.asarray(len(self.Ws)),
            "H": to_numpy(self.H),
            "loss_history": np.asarray(self.loss_history),
            "loss_iters": np.asarray(self.loss_iters),
            "n_iter": np.asarray(self.n_iter),
            "converged": np.asarray(self.converged),
            "beta": np.asarray(self.beta),
            "ranks": np.asarray(self.ranks, dtype=np.int64),
        }
        for l, Wl in enumerate(self.Ws):
            arrays[f"W{l + 1}"] = to_numpy(Wl)
        for l, h in enumerate(self.pretrain_loss_histories):
            arrays[f"pretrain_loss_{l + 1}"] = np.asarray(h)
        save_npz_atomic(path, arrays)


#: What reading a file that is not a dnmf result raises, inside numpy and zipfile.
_NOT_A_RESULT = (
    zipfile.BadZipFile,
    EOFError,
    KeyError,
    ValueError,
    TypeError,
    AttributeError,
    zlib.error,
    pickle.UnpicklingError,
)


def load(path: str | os.PathLike) -> FactorizationResult:
    """Read a result written by `FactorizationResult.save` (numpy arrays).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError("not a dnmf result file:
    PATH (why)")`` for an empty, truncated, foreign or non-``.npz`` file, or one written by a
    newer dnmf.
    """
    try:
        data = np.load(os.fspath(path), allow_pickle=False)
    except _NOT_A_RESULT as exc:
        raise ValueError(f"not a dnmf result file: {path} ({_why(exc)})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"not a dnmf result file: {path} (a single .npy array, not an .npz)")
    with data:
        try:
            version = int(data["format_version"])
            if version > FORMAT_VERSION:
                raise _NewerFormat(version)
            return _from_arrays(data)
        except _NewerFormat as exc:
            raise ValueError(
                f"{path} has format version {exc.args[0]}; this dnmf reads <= {FORMAT_VERSION}"
            ) from None
        except _NOT_A_RESULT as exc:
            raise ValueError(f"not a dnmf result file: {path} ({_why(exc)})") from None


class _NewerFormat(Exception):
    pass


def _from_arrays(data: Any) -> FactorizationResult:
    k = int(data["n_layers"])
    n_iter = data["n_iter"]
    converged = data["converged"]
    return FactorizationResult(
        Ws=[data[f"W{l + 1}"] for l in range(k)],
        H=data["H"],
        loss_history=data["loss_history"],
        loss_iters=data["loss_iters"],
        n_iter=int(n_iter) if n_iter.ndim == 0 else n_iter,
        converged=bool(converged) if converged.ndim == 0 else converged,
        beta=float(data["beta"]),
        ranks=tuple(int(r) for r in data["ranks"]),
        pretrain_loss_histories=[
            data[f"pretrain_loss_{l + 1}"]
            for l in range(k)
            if f"pretrain_loss_{l + 1}" in data.files
        ],
    )


def _why(exc: BaseException) -> str:
    """A short reason for a file that did not read as a dnmf result."""
    if isinstance(exc, EOFError):
        return "the file is empty"
    if isinstance(exc, zipfile.BadZipFile):
        return "not an .npz archive, or a truncated one"
    if isinstance(exc, KeyError):
        name = str(exc.args[0]).split(" is not a file")[0] if exc.args else "?"
        return f"no {name!r} entry"
    return f"{type(exc).__name__}: {exc}"


__all__ = ["FORMAT_VERSION", "FactorizationResult", "load"]
