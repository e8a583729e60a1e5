"""Subnormal numbers in long fits, and the floating-point state a fit must leave as found.

Multiplicative updates shrink an entry that should be zero geometrically and never reach 0, so
after many iterations some factor entries are subnormal. What that costs depends on the CPU
(some take a slow path for every subnormal operand; on the project's AMD CPU one sweep's
products were not measurably slower with up to 20 % of the entries subnormal, see
``python -m perf.subnormals``). Flushing them to zero (``torch.set_flush_denormal``) would
change state that outlives the fit, and it only reaches the calling thread: with two
intra-op threads, half of an elementwise result and half of a matrix product came out flushed.

The solvers instead keep factors out of the subnormal range by a floor (`raise_tiny_`):
a positive entry below `subnormal_floor` becomes the floor, and an exact zero stays
zero. This keeps the zero-lock of multiplicative updates exactly as it is (a zero entry stays
zero, a positive one stays positive and can grow back), changes the model by less than the
floor per entry (1e-31 in float32), and touches no global state; `flush_denormal_is_on`
lets tests check that.
"""

from __future__ import annotations

import torch


def subnormal_floor(dtype: torch.dtype) -> float:
    """The smallest normal number divided by the machine epsilon (1.0e-31 for float32,
    1.0e-292 for float64): an entry at the floor times any factor entry or data value above
    epsilon is still a normal number."""
    fi = torch.finfo(dtype)
    return float(fi.tiny / fi.eps)


def raise_tiny_(F: torch.Tensor) -> torch.Tensor:
    """In place: positive entries below `subnormal_floor` become the floor; zeros and
    everything else are kept. Returns ``F``."""
    f = subnormal_floor(F.dtype)
    F.masked_fill_((F < f) & (F > 0), f)
    return F


def flush_denormal_is_on() -> bool:
    """Whether the calling thread flushes subnormal floats to zero (probed, not stored)."""
    x = torch.tensor([1e-39], dtype=torch.float32)  # subnormal in float32
    return float((x * 1.0)[0]) == 0.0
