"""``argparse`` ``type=`` functions shared by every subcommand.

A bad value fails at parse time with argparse's own message, which names the flag::

    deblur-bench run: error: argument --size: must be an integer >= 1, got '0'

so each check lives here once instead of in every command.
"""

from __future__ import annotations

import argparse
import math
import re

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes, epochs, thread counts, ranks)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def nonneg_int(text: str) -> int:
    """An integer >= 0 (seeds, counts where 0 means none or all)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


#: The largest seed of a ``--seed`` flag.  Seeds go to numpy, to torch's generators (which
#: stop at 2**64 - 1) and into derived seeds (``seed + 1``); 2**32 - 1, the range of
#: scikit-learn's ``random_state`` and numpy's legacy seeding, leaves room for all of them.
MAX_SEED = 2**32 - 1


def seed(text: str) -> int:
    """A random seed, an integer from 0 to `MAX_SEED` (every ``--seed`` flag)."""
    value = _int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"must be an integer >= 0 and <= {MAX_SEED} (2**32 - 1), got {text!r}"
        )
    return value


def finite_nonneg_float(text: str) -> float:
    """A finite number >= 0 (noise level); refuses ``nan`` and ``inf``."""
    value = _float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def finite_positive_float(text: str) -> float:
    """A finite number > 0 (blur sigma, time caps, learning rates, regularisation balance)."""
    value = _float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def device_name(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``; whether CUDA is present is checked when it is used."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, got {text!r}")
    return text


def jpeg_quality(text: str) -> int:
    """A JPEG quality from 1 to 95 (``--jpeg-quality``; the range Pillow's encoder honours)."""
    from benchmarks.jpeg import check_jpeg_quality

    try:
        value = int(text)
        check_jpeg_quality(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an integer from 1 to 95, got {text!r}") from None
    return value


def _checked(parse, text: str):  # type: ignore[no-untyped-def]
    """``parse(text, flag=None)``, its `UserError` as argparse's error (which names the flag)."""
    from benchmarks.errors import UserError

    try:
        return parse(text, flag=None)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def kernel_spec(text: str) -> str:
    """A ``--kernel`` value (`benchmarks.degradation.KERNEL_SPECS`), checked (a ``psf:FILE``
    is read); the text itself is kept, the command builds the kernel with ``--kernel-size``."""
    from benchmarks.degradation import parse_kernel

    _checked(parse_kernel, text)
    return text.strip()


def kernel_family(text: str) -> str:
    """A ``train --kernels`` value (`benchmarks.degradation.FAMILY_SPECS`), checked; the Levin
    kernels are refused (the sweep's test set)."""
    from benchmarks.degradation import parse_family

    _checked(parse_family, text)
    return text.strip()


def noise_range(text: str) -> tuple[float, float]:
    """``LO-HI``: a range of noise stds, both finite and >= 0 (or one number)."""
    from benchmarks.degradation import parse_noise_range

    return _checked(parse_noise_range, text)  # type: ignore[no-any-return]
