"""What ``run``, ``train``, ``restore`` and ``factorize`` share about a run: the device it asks
for, where its folder goes by default, and the facts its ``run.json``/``train.json`` records
(versions, git commit, peak memory)."""

from __future__ import annotations

import datetime as _dt
import platform
import resource
import subprocess
from pathlib import Path

import torch

from benchmarks import __version__
from benchmarks.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda[:k]``, with a clear error when CUDA is asked for but absent."""
    try:
        dev = torch.device(name)
    except RuntimeError:  # torch's message for a malformed device string
        raise UserError(f"--device must be cpu, cuda or cuda:N, got {name!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {name!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"--device {name}: no CUDA device is available here (this torch "
            f"{'has no CUDA support' if torch.version.cuda is None else 'finds no GPU'}); "
            f"use --device cpu"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(
            f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible"
        )
    return dev


def data_folder(data_dir: str | Path | None) -> Path | None:
    """The folder a ``--data-dir`` value reads (the shipped faces for builtin:/None)."""
    from benchmarks.faces import SHIPPED_FACES

    if data_dir is None or str(data_dir) == "builtin:faces":
        return SHIPPED_FACES
    return None if str(data_dir).startswith("builtin:") else Path(data_dir)


def default_out(label: str) -> Path:
    """``results/<date-time>-<label>``: a command's run folder when ``--out`` is not given."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{stamp}-{label}"


def git_commit() -> str | None:
    """The checkout's commit (``-dirty`` with uncommitted changes), None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
        return (sha + ("-dirty" if dirty.strip() else "")) if sha else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    """Versions of Python, the numeric libraries and this toolkit, and the platform."""
    import numpy
    import scipy
    import skimage
    import sklearn

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-image": skimage.__version__,
        "scikit-learn": sklearn.__version__,
        "deblur-toolkit": __version__,
        "platform": platform.platform(),
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
