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
from ._io import DamagedFileError, read_npz, save_npz_atomic
from ._solvers.loop import SolverOutcome

#: Version 2 stores a SHA-256 of the arrays (`dnmf._io.CHECKSUM_KEY`); version 1 files, written
#: before it, still load.
FORMAT_VERSION = 2
#: The first format version whose files must carry the checksum.
CHECKSUM_SINCE = 2
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
        out: SolverOutcome,
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
        """Write everything to one ``.npz`` file, atomically (read it back with ``dnmf.load``).

        The file is written beside ``path`` and renamed over it once complete, so ``path``
        holds the old file or the new one, never a part. It stores a SHA-256 of its arrays,
        which ``dnmf.load`` verifies. An existing regular file at ``path`` is replaced; a
        symbolic link, folder, device node, FIFO or socket there is refused with a
        ``ValueError`` naming it (a link is never turned into a regular file, a device never
        replaced): save to the link's target, or to another name.
        """
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

    Raises ``FileNotFoundError`` for a missing file, ``ValueError("not a dnmf result file:
    PATH (why)")`` for an empty, truncated, foreign or non-``.npz`` file or one written by a
    newer dnmf, ``ValueError("checksum mismatch in PATH: …; the file is damaged")`` for a file
    whose arrays changed after it was written, and ``ValueError("invalid dnmf result file:
    PATH (field …)")`` for fields that no `FactorizationResult` can hold (a format version that
    is not a known integer, a layer count below 1, factors whose shapes do not chain, NaN,
    infinite or negative factors, ranks that disagree with the factors, …).

    Files of format version 2 (this dnmf) carry a SHA-256 of their arrays and are refused
    without it; files of version 1 (written before checksums were stored) load unchecked.
    """
    try:
        data, checked = read_npz(path)
    except (FileNotFoundError, DamagedFileError):
        raise
    except _NOT_A_RESULT as exc:
        raise ValueError(f"not a dnmf result file: {path} ({_why(exc)})") from None
    try:
        version = _version(data)
    except _NewerFormat as exc:
        raise ValueError(
            f"{path} has format version {exc.args[0]}; this dnmf reads <= {FORMAT_VERSION}"
        ) from None
    except KeyError as exc:
        raise ValueError(f"not a dnmf result file: {path} ({_why(exc)})") from None
    except _BadField as exc:
        raise ValueError(f"invalid dnmf result file: {path} ({exc})") from None
    if version >= CHECKSUM_SINCE and not checked:
        raise DamagedFileError(
            f"checksum missing in {path}: format version {version} stores a SHA-256 of its "
            "arrays and this file has none; the file is damaged"
        )
    try:
        return _from_arrays(data)
    except KeyError as exc:
        raise ValueError(f"not a dnmf result file: {path} ({_why(exc)})") from None
    except _BadField as exc:
        raise ValueError(f"invalid dnmf result file: {path} ({exc})") from None


class _NewerFormat(Exception):
    pass


class _BadField(Exception):
    """A field no `FactorizationResult` can hold; the message names the field."""


def _version(data: dict[str, np.ndarray]) -> int:
    v = data["format_version"]
    if v.shape != () or v.dtype.kind not in "iu":
        shown = v.tolist() if v.size <= 4 else f"an array of shape {v.shape}"
        raise _BadField(
            f"format_version must be an integer from 1 to {FORMAT_VERSION}, got {shown!r} "
            f"(dtype {v.dtype})"
        )
    version = int(v)
    if version > FORMAT_VERSION:
        raise _NewerFormat(version)
    if version < 1:
        raise _BadField(
            f"format_version must be an integer from 1 to {FORMAT_VERSION}, got {version}"
        )
    return version


def _int_scalar(data: dict[str, np.ndarray], name: str, low: int) -> int:
    v = data[name]
    if v.shape != () or v.dtype.kind not in "iu" or int(v) < low:
        shown = v.tolist() if v.size <= 4 else f"an array of shape {v.shape}"
        raise _BadField(f"{name} must be an integer >= {low}, got {shown!r} (dtype {v.dtype})")
    return int(v)


def _factor(data: dict[str, np.ndarray], name: str) -> np.ndarray:
    F = data[name]
    if F.dtype.kind != "f" or F.ndim not in (2, 3):
        raise _BadField(
            f"{name} must be a 2-D (or batched 3-D) float array, got dtype {F.dtype} with shape "
            f"{F.shape}"
        )
    if F.size and not np.isfinite(F).all():
        raise _BadField(f"{name} contains NaN or infinity ({int((~np.isfinite(F)).sum())} entries)")
    if F.size and float(F.min()) < 0:
        raise _BadField(f"{name} must be nonnegative: found {int((F < 0).sum())} negative entries")
    return F


def _from_arrays(data: dict[str, np.ndarray]) -> FactorizationResult:
    """The result in ``data``, every field checked against the others (`_BadField`)."""
    k = _int_scalar(data, "n_layers", 1)
    extra = sorted(n for n in data if n[:1] == "W" and n[1:].isdigit() and int(n[1:]) > k)
    if extra:
        raise _BadField(f"n_layers is {k} but the file also holds {', '.join(extra)}")
    Ws = [_factor(data, f"W{l + 1}") for l in range(k)]
    H = _factor(data, "H")
    batch = H.shape[:-2]
    for l in range(1, k + 1):  # W1 (m, r1), Wl (r(l-1), rl), H (rk, n): the inner sizes chain
        left, right = Ws[l - 1], H if l == k else Ws[l]
        lname, rname = f"W{l}", "H" if l == k else f"W{l + 1}"
        if left.shape[-1] != right.shape[-2]:
            raise _BadField(
                f"{lname} has shape {left.shape} and {rname} has shape {right.shape}: "
                f"{lname}'s columns must equal {rname}'s rows"
            )
    for l, W in enumerate(Ws):
        if W.shape[:-2] not in ((), batch):
            raise _BadField(
                f"W{l + 1} has shape {W.shape}, which does not match H's batch of {batch}"
            )
    ranks = data["ranks"]
    inner = tuple(int(W.shape[-1]) for W in Ws)
    if ranks.dtype.kind not in "iu" or tuple(int(r) for r in ranks.reshape(-1)) != inner:
        raise _BadField(
            f"ranks must be the factors' inner sizes {list(inner)}, got {ranks.tolist()}"
        )
    hist, iters = data["loss_history"], data["loss_iters"]
    want_hist = 1 if not batch else 2
    if (
        hist.dtype.kind != "f"
        or hist.ndim != want_hist
        or (batch and hist.shape[1] != batch[0])
        or iters.dtype.kind not in "iu"
        or iters.shape != hist.shape[:1]
        or hist.shape[0] < 1
    ):
        raise _BadField(
            f"loss_history (shape {hist.shape}, dtype {hist.dtype}) and loss_iters (shape "
            f"{iters.shape}, dtype {iters.dtype}) must be float (T,{' B' if batch else ''}) "
            "and integer (T,) records of the same T >= 1"
        )
    n_iter, converged = data["n_iter"], data["converged"]
    if n_iter.dtype.kind not in "iu" or n_iter.shape != batch or (n_iter.size and n_iter.min() < 0):
        raise _BadField(
            f"n_iter must be integers >= 0 of shape {batch}, got {n_iter.tolist()!r} "
            f"(dtype {n_iter.dtype})"
        )
    if converged.dtype.kind != "b" or converged.shape != batch:
        raise _BadField(
            f"converged must be booleans of shape {batch}, got {converged.tolist()!r} "
            f"(dtype {converged.dtype})"
        )
    beta = data["beta"]
    if beta.shape != () or beta.dtype.kind not in "fiu" or not np.isfinite(beta):
        raise _BadField(f"beta must be a finite real number, got {beta.tolist()!r}")
    return FactorizationResult(
        Ws=Ws,
        H=H,
        loss_history=hist,
        loss_iters=iters,
        n_iter=int(n_iter) if n_iter.ndim == 0 else n_iter,
        converged=bool(converged) if converged.ndim == 0 else converged,
        beta=float(beta),
        ranks=inner,
        pretrain_loss_histories=[
            data[f"pretrain_loss_{l + 1}"] for l in range(k) if f"pretrain_loss_{l + 1}" in data
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
