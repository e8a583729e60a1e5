"""Method registry: every module in this package that defines ``METHOD`` is a method.

Adding a method to the comparison is adding one small file here.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from benchmarks.methods._cnn import CNNMethod
from benchmarks.methods.base import BlurLike, Method, MethodContext

# The order methods appear in tables (others follow alphabetically).
ORDER = [
    "identity",
    "wiener",
    "richardson-lucy",
    "nmf-coupled",
    "dnmf-coupled",
    "epll",
    "dnmf-prior",
    "convae",
    "convae-unet",
]


@lru_cache(maxsize=1)
def registry() -> dict[str, type[Method]]:
    """Name -> class for every discovered method adapter."""
    found: dict[str, type[Method]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except ImportError as exc:  # one broken adapter must not hide the others
            warnings.warn(f"method module {info.name!r} failed to import: {exc}", stacklevel=2)
            continue
        cls = getattr(module, "METHOD", None)
        if cls is not None:
            found[cls.name] = cls
    rank = {n: i for i, n in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0])))


def get_method(name: str) -> type[Method]:
    reg = registry()
    if name not in reg:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(reg)}")
    return reg[name]


def check_options(options: Mapping[str, Any], blur: BlurLike) -> None:
    """Let every registered method refuse ``options`` it could not honour with ``blur``.

    All of them, not only those a command runs: a flag value that some method refuses is
    refused in every command, instead of passing silently when that method is not run.
    """
    for cls in registry().values():
        cls.check_options(options, blur)


__all__ = [
    "CNNMethod",
    "Method",
    "MethodContext",
    "ORDER",
    "check_options",
    "get_method",
    "registry",
]
