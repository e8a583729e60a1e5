"""Checkpoints: atomic save, safe load, and the checks that keep a resume honest.

A checkpoint is a plain dict saved with ``torch.save`` and loaded with
``torch.load(weights_only=True)`` (no arbitrary pickles), holding:

``format``/``format_version``, ``architecture`` + ``model_kwargs`` (to rebuild the model),
``model_state``, ``optimizer_state`` / ``scaler_state`` (absent in inference-only files),
``config`` (the training config as a plain dict), ``epoch`` (epochs completed),
``best_val_loss``/``best_epoch``, ``history`` (one dict per epoch: losses, seconds,
images/s), ``rng`` (torch CPU, CUDA, numpy, python and the shuffling generator), ``meta``
(caller's settings, e.g. the blur that made the training pairs) and ``checksum``.

``checksum`` is ``"sha256:<hex>"`` of everything else in the dict (`content_digest`: every
tensor's dtype, shape and bytes and every other value, in the dict's order), verified on
every read: the zip container torch writes checks nothing when read, so bytes damaged inside
a tensor would otherwise load as altered weights or optimizer state.  Files of format
version 1 (written before the checksum existed) still load, with an
`UnverifiedCheckpointWarning`.

Files are written to a temporary file in the same folder and renamed with ``os.replace``,
so a crash never leaves a half-written checkpoint under the real name; a write that fails
(a full disk) raises `CheckpointWriteError`, removes the temporary file and leaves the file
already at the path unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import random
import secrets
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch
from torch import nn

from convae.models import architecture_of, build_model, unwrap_model

FORMAT = "convae-checkpoint"
#: 2 added ``checksum`` (required from 2 on); 1 is read with a warning that it is unverified.
FORMAT_VERSION = 2
CHECKSUM_KEY = "checksum"
_CHECKSUM_PREFIX = "sha256:"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, damaged, or made for another model."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, quota, I/O error).

    ``errno`` and ``strerror`` are the cause's (``errno.ENOSPC`` for a full disk),
    ``filename`` the checkpoint's path; the file already at that path, if any, is unchanged.
    """

    def __str__(self) -> str:
        return (
            f"cannot write checkpoint {self.filename}: {self.strerror} (nothing there was replaced)"
        )


class UnverifiedCheckpointWarning(UserWarning):
    """The checkpoint predates checksums (format version 1): damage in it cannot be detected."""


class MetaMismatchWarning(UserWarning):
    """The checkpoint was trained with other settings (blur) than the caller expects."""


# --------------------------------------------------------------------------- writing


def _new_temp(path: Path) -> tuple[int, str]:
    """A new hidden file beside ``path``, opened for writing, with the mode a plain ``open``
    gives (``0o666 & ~umask``; ``tempfile.mkstemp`` would make it 0600 for good)."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")


class _WriteRecorder:
    """The file object torch.save writes to, keeping the ``OSError`` of a failed write:
    torch swallows it and raises a ``RuntimeError`` (``[enforce fail at
    inline_container.cc]``) that has lost the errno and says nothing of a full disk."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return int(self._f.write(data))
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self._f.flush()


def _write_error(e: OSError, path: Path) -> CheckpointWriteError:
    """``e`` (a failed write of ``path``'s temporary file) as a `CheckpointWriteError` naming
    ``path`` with the OS's reason, lower-cased (``no space left on device``)."""
    code = e.errno if e.errno is not None else errno.EIO
    reason = os.strerror(code)
    return CheckpointWriteError(code, reason[:1].lower() + reason[1:], str(path))


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to a temporary file beside ``path``, fsync, then rename.

    A failed write (a full disk: ``errno.ENOSPC``) raises `CheckpointWriteError`, an
    ``OSError`` with the cause's errno and ``filename=path``; the temporary file is removed and
    whatever was at ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp(path)
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                sink = _WriteRecorder(f)
                try:
                    torch.save(obj, cast("IO[bytes]", sink))  # write and flush suffice
                except RuntimeError as e:
                    if sink.error is None:
                        raise
                    raise sink.error from e
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # writing, flushing or closing: the disk, not the caller
            if e.errno is None or isinstance(e, CheckpointWriteError):
                raise
            raise _write_error(e, path) from e
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _feed(h: Any, obj: Any) -> None:
    """Add ``obj`` to the hash ``h``: a type tag, a length where the size varies, the value.

    Dicts go in their own order (which pickling keeps), tensors as dtype, shape and bytes.
    """
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, Mapping):
        h.update(f"D{len(obj)}:".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}:".encode())
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, str):
        b = obj.encode("utf-8", "surrogatepass")
        h.update(f"S{len(b)}:".encode() + b)
    elif obj is None or isinstance(obj, bool):
        h.update(f"{obj!r};".encode())
    elif isinstance(obj, int):
        h.update(f"I{obj};".encode())
    elif isinstance(obj, float):
        h.update(f"F{obj.hex()};".encode())  # exact, NaN and infinities included
    else:  # nothing else is saved today; keep the hash defined for whatever is added
        r = f"{type(obj).__qualname__}:{obj!r}".encode()
        h.update(f"O{len(r)}:".encode() + r)


def content_digest(ckpt: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint dict's content, its ``checksum`` entry left out.

    Computed from the values, not the file's bytes, so it is the same after a
    ``torch.save``/``torch.load`` round trip.
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in ckpt.items() if k != CHECKSUM_KEY})
    return h.hexdigest()


def normalize_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """``meta`` as plain JSON types (tuples become lists), or a TypeError naming the problem.

    Only JSON-able values are allowed so that ``weights_only`` loading can read them back.
    """
    if meta is None:
        return {}
    try:
        return json.loads(json.dumps(dict(meta), sort_keys=True))
    except (TypeError, ValueError) as e:
        raise TypeError(f"checkpoint meta must hold JSON-able values only: {e}") from None


def capture_rng_state(shuffle_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Snapshot of every RNG a training run touches, in ``weights_only``-loadable types."""
    np_state: Any = np.random.get_state()  # the legacy tuple (the stubs also allow a dict)
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "numpy": {
            "bit_generator": str(np_state[0]),
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "shuffle": shuffle_generator.get_state() if shuffle_generator is not None else None,
    }


def restore_rng_state(
    state: Mapping[str, Any], shuffle_generator: torch.Generator | None = None
) -> None:
    """Inverse of `capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    n = state["numpy"]
    np.random.set_state(
        (
            n["bit_generator"],
            n["key"].cpu().numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if shuffle_generator is not None and state.get("shuffle") is not None:
        shuffle_generator.set_state(state["shuffle"].cpu())


def _cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in unwrap_model(model).state_dict().items()}


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: Any | None = None,
    config: Mapping[str, Any] | None = None,
    epoch: int = 0,
    best_val_loss: float | None = None,
    best_epoch: int | None = None,
    history: list[dict[str, Any]] | None = None,
    meta: Mapping[str, Any] | None = None,
    rng: Mapping[str, Any] | None = None,
    model_state: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint atomically and return its path.

    ``model`` gives the architecture and (unless ``model_state`` is passed) the weights.
    Leave ``optimizer`` out for an inference-only file (it then cannot be resumed).
    """
    arch, kwargs = architecture_of(model)
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": arch,
        "model_kwargs": kwargs,
        "model_state": dict(model_state) if model_state is not None else _cpu_state_dict(model),
        "config": dict(config or {}),
        "epoch": int(epoch),
        "best_val_loss": None if best_val_loss is None else float(best_val_loss),
        "best_epoch": best_epoch,
        "history": list(history or []),
        "meta": normalize_meta(meta),
        "rng": dict(rng) if rng is not None else None,
        "torch_version": str(torch.__version__),  # TorchVersion is not weights_only-safe
    }
    if optimizer is not None:
        ckpt["optimizer_state"] = optimizer.state_dict()
    if scaler is not None:
        ckpt["scaler_state"] = scaler.state_dict()
    ckpt[CHECKSUM_KEY] = _CHECKSUM_PREFIX + content_digest(ckpt)
    return atomic_save(ckpt, path)


# --------------------------------------------------------------------------- reading


def read_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; clear errors naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(
            f"not a checkpoint: {path} (the file is truncated, corrupt or of another kind: "
            f"not the zip archive torch.save writes)"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (
        RuntimeError,
        EOFError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
        # torch's unpickler on damaged data (seen flipping each byte of a data.pkl in turn):
        KeyError,
        IndexError,  # "pop from empty list"
        TypeError,  # "unhashable type"
        AttributeError,  # "'str' object has no attribute 'dtype'"
        AssertionError,  # "saved_id must be a tuple"
    ) as e:
        msg = str(e)
        if "Weights only load failed" in msg:
            detail = next(
                (ln.strip() for ln in msg.splitlines() if "WeightsUnpickler" in ln),
                msg.splitlines()[0],
            )
            raise CheckpointError(
                f"checkpoint {path} holds objects that safe loading "
                f"(weights_only=True) refuses: {detail}"
            ) from e
        raise CheckpointError(
            f"not a checkpoint: {path} (the file is truncated, corrupt or of another kind; "
            f"{type(e).__name__}: {msg.splitlines()[0] if msg else ''})"
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a convae checkpoint (no '{FORMAT}' format tag)")
    version = ckpt.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(
            f"not a checkpoint: {path} (damaged: format_version {version!r} is not an int >= 1)"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version "
            f"{ckpt['format_version']}; this code reads up to {FORMAT_VERSION}"
        )
    verify_checksum(ckpt, path)
    missing = [k for k, t in _REQUIRED.items() if not isinstance(ckpt.get(k), t)]
    if missing:
        raise CheckpointError(
            f"not a checkpoint: {path} (damaged: {', '.join(missing)} missing or of the wrong type)"
        )
    return ckpt


def verify_checksum(ckpt: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Refuse (`CheckpointError`) a checkpoint whose content differs from its ``checksum``;
    warn (`UnverifiedCheckpointWarning`) for a format-1 file, which has none."""
    stored = ckpt.get(CHECKSUM_KEY)
    if stored is None and ckpt.get("format_version") == 1:
        warnings.warn(
            f"checkpoint {path} predates checksums (format version 1): damage in it cannot be "
            f"detected (checkpoints written from now on carry one)",
            UnverifiedCheckpointWarning,
            stacklevel=3,
        )
        return
    if not (isinstance(stored, str) and stored.startswith(_CHECKSUM_PREFIX)):
        why = "its checksum entry is missing or unreadable"
    elif stored[len(_CHECKSUM_PREFIX) :] != content_digest(ckpt):
        why = "its content differs from the SHA-256 written with it"
    else:
        return
    raise CheckpointError(
        f"checkpoint {path}: checksum mismatch: the file is damaged ({why}); "
        f"use another copy or train again"
    )


#: Keys every checkpoint has, with their types (checked on read, so a damaged file fails here).
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "architecture": str,
    "model_kwargs": dict,
    "model_state": dict,
}


def _channels_word(n: Any) -> str:
    return {1: "1 channel (gray)", 3: "3 channels (RGB)"}.get(n, f"{n} channels")


def check_compatible(
    ckpt: Mapping[str, Any],
    architecture: str,
    model_kwargs: Mapping[str, Any],
    path: str | os.PathLike[str] = "<checkpoint>",
) -> None:
    """Refuse a checkpoint made for another architecture, channel count or model shape.

    Image size is not checked: the models are fully convolutional.
    """
    if ckpt["architecture"] != architecture:
        raise CheckpointError(
            f"checkpoint {path} was made for architecture {ckpt['architecture']!r}, "
            f"not {architecture!r}; build a {ckpt['architecture']!r} model or use load_model()"
        )
    c_ck = ckpt["model_kwargs"].get("in_channels")
    c_want = model_kwargs.get("in_channels")
    if c_ck != c_want:
        raise CheckpointError(
            f"checkpoint {path} was trained on images with {_channels_word(c_ck)}, but the "
            f"model expects {_channels_word(c_want)} (RGB/gray mismatch)"
        )
    if dict(ckpt["model_kwargs"]) != dict(model_kwargs):
        raise CheckpointError(
            f"checkpoint {path} was made for {architecture!r} with {dict(ckpt['model_kwargs'])}, "
            f"but the model was built with {dict(model_kwargs)}"
        )


def check_meta(
    ckpt_meta: Mapping[str, Any] | None,
    expected: Mapping[str, Any] | None,
    path: str | os.PathLike[str] = "<checkpoint>",
) -> bool:
    """Warn (`MetaMismatchWarning`) when the checkpoint's meta differ from ``expected``.

    Only keys present in ``expected`` are compared. Returns True when they agree.
    """
    if not expected:
        return True
    have = normalize_meta(ckpt_meta)
    want = normalize_meta(expected)
    diffs = [
        f"{k}: checkpoint {have.get(k, '<missing>')!r} vs expected {v!r}"
        for k, v in sorted(want.items())
        if have.get(k, "<missing>") != v
    ]
    if diffs:
        warnings.warn(
            f"checkpoint {path} was trained with other settings (blur) than "
            f"expected: {'; '.join(diffs)}",
            MetaMismatchWarning,
            stacklevel=3,
        )
        return False
    return True


def model_from_checkpoint(
    ckpt: Mapping[str, Any], path: str | os.PathLike[str] = "<checkpoint>"
) -> nn.Module:
    """Rebuild the model recorded in a checkpoint dict and load its weights."""
    model = build_model(ckpt["architecture"], **ckpt["model_kwargs"])
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as e:
        raise CheckpointError(f"weights in {path} do not fit {ckpt['architecture']!r}: {e}") from e
    return model


def load_model(
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    expect_architecture: str | None = None,
    expect_in_channels: int | None = None,
    expect_meta: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Rebuild the model saved in ``path`` (any registered architecture), on ``map_location``.

    Raises `CheckpointError` if the file is unreadable or, when given, the
    architecture or channel count differ; warns (`MetaMismatchWarning`) when
    ``expect_meta`` (e.g. blur settings) differ from the checkpoint's ``meta``.
    The model is returned in eval mode; ``model.checkpoint`` holds the checkpoint's
    ``history``, ``epoch``, ``best_val_loss``, ``best_epoch``, ``config`` and ``meta``.
    """
    ckpt = read_checkpoint(path, map_location="cpu")
    if expect_architecture is not None and ckpt["architecture"] != expect_architecture:
        raise CheckpointError(
            f"checkpoint {path} was made for architecture "
            f"{ckpt['architecture']!r}, not {expect_architecture!r}"
        )
    if expect_in_channels is not None:
        c = ckpt["model_kwargs"].get("in_channels")
        if c != expect_in_channels:
            raise CheckpointError(
                f"checkpoint {path} was trained on images with "
                f"{_channels_word(c)}, not {_channels_word(expect_in_channels)}"
            )
    check_meta(ckpt.get("meta"), expect_meta, path)
    model = model_from_checkpoint(ckpt, path).to(map_location).eval()
    model.checkpoint = {
        k: ckpt.get(k)
        for k in (  # type: ignore[assignment]
            "architecture",
            "model_kwargs",
            "history",
            "epoch",
            "best_val_loss",
            "best_epoch",
            "config",
            "meta",
        )
    }
    return model
