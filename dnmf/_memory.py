"""Will it fit? Memory estimates checked before dnmf allocates something large.

A rank far above the data's size (``init='random'`` allows ranks above ``min(m, n)``, as
scikit-learn does), or a large scipy/torch sparse matrix given to a function that densifies
it (`dnmf.select_ranks`, so also the search of ``ranks='auto'``, and
`dnmf.distributed.factorize_columns`; `dnmf.factorize`, `dnmf.solve_h` and `dnmf.DeepNMF` fit
sparse input without densifying it), would otherwise fail deep inside torch or numpy, after
minutes of swapping or with an allocation traceback. These helpers estimate the bytes from
shapes and dtypes and refuse, with a message that says what needs how much, when it exceeds
the memory available.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch

try:  # optional: the most accurate count of available memory where it is installed
    import psutil as _psutil
except ImportError:
    _psutil = None


class InsufficientMemoryError(ValueError, MemoryError):
    """Refused before allocating: what was asked for would not fit in the memory available.

    Both a ``ValueError`` (a request too large for this machine, caught with the other bad
    arguments) and a ``MemoryError``."""


def available_bytes(device: torch.device | None = None) -> int | None:
    """Memory that can still be allocated on ``device`` (default: the CPU), or None if unknown.

    CUDA: the device's free memory. CPU: psutil's available memory when psutil is installed,
    else ``MemAvailable`` of ``/proc/meminfo``, else the physical memory
    (``sysconf('SC_PHYS_PAGES') * sysconf('SC_PAGE_SIZE')``).
    """
    if device is not None and device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    if device is not None and device.type != "cpu":
        return None  # other backends report no free memory: do not guess
    if _psutil is not None:
        return int(_psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units (``7.45 GiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"  # pragma: no cover


def check_fits(nbytes: int, device: torch.device | None, what: str, advice: str) -> None:
    """Refuse (`InsufficientMemoryError`) when ``nbytes`` exceed the memory available on
    ``device``.

    ``what`` says what needs the memory, ``advice`` what to do instead; both go in the message.
    Nothing is refused where the available memory is unknown.
    """
    avail = available_bytes(device)
    if avail is None or nbytes <= avail:
        return
    where = "on the CPU" if device is None or device.type == "cpu" else f"on {device}"
    raise InsufficientMemoryError(
        f"{what} needs about {format_bytes(nbytes)}, more than the {format_bytes(avail)} of "
        f"memory available {where}; {advice}"
    )


def factor_bytes(
    batch: int, m: int, n: int, ranks: Sequence[int], itemsize: int, *, gram: bool
) -> int:
    """Bytes a fit of ``ranks`` allocates beyond ``V``: the factors ``W1 (m × r1) … H (rk × n)``
    per matrix, twice (each update builds a numerator and denominator of a factor's shape),
    plus an ``r × r`` Gram matrix per layer for the β = 2 solvers (``gram``) or two ``m × n``
    work buffers for the general masked solver."""
    dims = [m, *ranks, n]
    factors = sum(a * b for a, b in zip(dims, dims[1:]))
    extra = sum(r * r for r in ranks) if gram else 2 * m * n
    return math.prod((batch, itemsize)) * (2 * factors + extra)


__all__ = [
    "InsufficientMemoryError",
    "available_bytes",
    "check_fits",
    "factor_bytes",
    "format_bytes",
]
