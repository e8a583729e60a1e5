"""Architecture registry: name -> model class, so checkpoints can rebuild their model.

Every model class registered here follows one small contract:

* it lives in a module of the ``convae`` package (found automatically) and is decorated
  with `register` (which sets the class attribute ``arch_name``);
* its ``__init__`` takes keyword arguments only, including ``in_channels``;
* it stores those keyword arguments, JSON-able, in ``self.init_kwargs`` and the channel
  count in ``self.in_channels``.

With that, a checkpoint needs only ``(arch_name, init_kwargs, state_dict)`` to rebuild the
model (`build_model`, `convae.checkpoint.load_model`), and the training loop in
`convae.train` works for every registered model unchanged.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

_REGISTRY: dict[str, type[nn.Module]] = {}

M = TypeVar("M", bound=type[nn.Module])


def register(name: str) -> Callable[[M], M]:
    """Class decorator: register a model class under ``name`` (sets ``cls.arch_name``)."""

    def deco(cls: M) -> M:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(
                f"architecture name {name!r} is already registered "
                f"to {_REGISTRY[name].__qualname__}"
            )
        cls.arch_name = name  # type: ignore[attr-defined]
        _REGISTRY[name] = cls
        return cls

    return deco


_DISCOVERED = False


def _discover() -> None:
    """Import every module of the ``convae`` package once, so that a model file only needs
    the `register` decorator to be found (no list to keep in sync)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    # The package's folder from this file, not `import convae`: the package's __init__
    # imports this module, and the registry must not import its package back.
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.name.startswith("_"):
            importlib.import_module(f"convae.{info.name}")


def available_architectures() -> list[str]:
    """Names accepted by `build_model`."""
    _discover()
    return sorted(_REGISTRY)


def get_architecture(name: str) -> type[nn.Module]:
    """The class registered under ``name``, with an error listing the valid names."""
    if name not in _REGISTRY:
        _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture {name!r}; choose one of {available_architectures()}"
        ) from None


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the architecture registered as ``name`` with keyword arguments."""
    return get_architecture(name)(**kwargs)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside a ``torch.compile`` / ``DistributedDataParallel`` wrapper."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def architecture_of(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """``(arch_name, init_kwargs)`` of a registered model (wrappers are looked through)."""
    m = unwrap_model(model)
    name = getattr(type(m), "arch_name", None)
    if name is None or _REGISTRY.get(name) is not type(m):
        raise TypeError(
            f"{type(m).__qualname__} is not a registered convae architecture; "
            f"decorate it with @convae.models.register('name')"
        )
    kwargs = getattr(m, "init_kwargs", None)
    if not isinstance(kwargs, dict):
        raise TypeError(
            f"{type(m).__qualname__} must store its constructor keyword "
            f"arguments in self.init_kwargs"
        )
    return name, dict(kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in unwrap_model(model).parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass on one image of shape ``(C, H, W)``.

    Counts ``Conv2d``, ``ConvTranspose2d`` and ``Linear`` layers (what dominates these
    models); elementwise operations are ignored.  Runs one forward pass on zeros.
    """
    m = unwrap_model(model)
    total = 0

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total += out.numel() // out.shape[0] * k
        elif isinstance(mod, nn.ConvTranspose2d):
            # every input element scatters into kH*kW*out/groups outputs
            x = inp[0]
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.out_channels // mod.groups)
            total += x.numel() // x.shape[0] * k
        elif isinstance(mod, nn.Linear):
            total += out.numel() // out.shape[0] * mod.in_features

    handles = [
        mod.register_forward_hook(hook)
        for mod in m.modules()
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    try:
        p = next(m.parameters())
        was_training = m.training
        m.eval()
        with torch.no_grad():
            m(torch.zeros((1, *input_shape), dtype=p.dtype, device=p.device))
        m.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return int(total)
