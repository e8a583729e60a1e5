"""What a ``deblur-bench sweep`` is asked to do: the grid of degradations (`expand_grid`), the
method rows, `SweepPlan` (the checked configuration, `benchmarks.sweep_cmd.prepare_sweep`'s
result) and `Fitted` (one row after its fit). `benchmarks.sweep_cmd` runs the cells and
`benchmarks.sweep_outputs` writes the files; both import these from here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.degradation import Degradation, DegradationFamily, parse_kernel
from benchmarks.errors import UserError
from benchmarks.methods import Method, MethodContext, get_method
from benchmarks.presets import Preset

FORMAT_VERSION = 1
STATE = "sweep.json"
#: The full matrix (every preset but ``fast`` and ``smoke``): Gaussian sigmas, the eight Levin
#: kernels (``levin09`` names all eight), each at every noise level.
FULL_GRID = (
    "gaussian:1",
    "gaussian:1.5",
    "gaussian:2",
    "gaussian:3",
    "gaussian:4",
    "gaussian:5",
    "levin09",
)
FULL_NOISE = (0.0, 0.01, 0.03)
#: Smaller grids: ``fast`` fits a 2-core CPU in minutes (the Levin kernels with noise only:
#: the exact solves of the non-blind methods are slowest without noise), ``smoke`` is a test.
PRESET_GRIDS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "fast": (
        (
            "gaussian:1",
            "gaussian:2",
            "gaussian:3",
            "gaussian:5",
            "levin09:1@0.01",
            "levin09:4@0.01",
            "levin09:8@0.01",
        ),
        (0.0, 0.01),
    ),
    "smoke": (("gaussian:1", "gaussian:3", "levin09:5@0.01"), (0.0,)),
}
#: ``--grid full`` (the matrix above), ``--grid fast``, ``--grid smoke``.
NAMED_GRIDS = {"full": (FULL_GRID, FULL_NOISE), **PRESET_GRIDS}
#: The methods of a preset's sweep when ``--methods`` is not given (others: every method). The
#: fast preset keeps one method of each kind within its 10 minutes: the blurred input, Wiener,
#: the Deep NMF prior and the U-Net (Richardson–Lucy and EPLL cost minutes per cell there).
PRESET_METHODS: dict[str, tuple[str, ...]] = {
    "fast": ("identity", "wiener", "dnmf-prior", "convae-unet"),
    "smoke": ("identity", "wiener", "convae-unet"),
}
#: Test images scored per cell when ``--test-images`` is not given (None: every test image).
PRESET_TEST_IMAGES: dict[str, int] = {"fast": 40}
#: Validation images a non-blind method is re-tuned on in each cell (``--tune-images``).
DEFAULT_TUNE_IMAGES = 10
PRESET_TUNE_IMAGES: dict[str, int] = {"fast": 5, "smoke": 3}
_LABEL = re.compile(r"^([a-z0-9][a-z0-9-]*)(@[A-Za-z0-9_.-]+)?$")


# --------------------------------------------------------------------------- the grid
def expand_grid(
    items: list[str] | tuple[str, ...], noise: list[float] | tuple[float, ...], jpeg: int | None
) -> list[Degradation]:
    """The degradations of ``--grid`` items (``KERNEL`` at every ``noise`` level, or
    ``KERNEL@N1,N2``; ``levin09`` alone names the eight Levin kernels; ``full``, ``fast`` and
    ``smoke`` name the preset grids, each with its own noise levels), in order, each once."""
    out: list[Degradation] = []
    for item in items:
        if item in NAMED_GRIDS:
            for d in expand_grid(*NAMED_GRIDS[item], jpeg):
                if d not in out:
                    out.append(d)
            continue
        spec, at, levels = str(item).partition("@")
        if at:
            try:
                noises = [float(v) for v in levels.split(",")]
            except ValueError:
                raise UserError(
                    f"--grid {item!r}: after '@' come noise levels, e.g. levin09:4@0.01,0.03"
                ) from None
        else:
            noises = list(noise)
        specs = [f"levin09:{i}" for i in range(1, 9)] if spec.strip() == "levin09" else [spec]
        for s in specs:
            kernel = parse_kernel(s, flag="--grid")
            for n in noises:
                if not (n >= 0 and n == n and n != float("inf")):
                    raise UserError(f"--grid {item!r}: noise levels are finite numbers >= 0")
                d = Degradation(kernel, float(n), jpeg)
                if d not in out:
                    out.append(d)
    if not out:
        raise UserError("--grid names no degradation")
    return out


def parse_label(label: str) -> str:
    """The method of a row label ``METHOD`` or ``METHOD@TAG`` (checked against the registry)."""
    m = _LABEL.match(label)
    if not m:
        raise UserError(
            f"--methods {label!r}: write METHOD or METHOD@TAG (TAG: letters, digits, . _ -)"
        )
    get_method(m.group(1))
    return m.group(1)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cell_seed(seed: int, degradation: Degradation, part: str) -> int:
    """The noise seed of ``part`` (``val``/``test``) under ``degradation``: fixed by the run's
    seed and the degradation, whatever order the cells are computed in."""
    raw = hashlib.sha256(f"{seed}/{degradation.slug}/{part}".encode()).digest()
    return int.from_bytes(raw[:8], "little") >> 1


# --------------------------------------------------------------------------- the plan
@dataclass
class SweepPlan:
    """What `prepare_sweep` decided: everything a sweep needs besides its data."""

    args: argparse.Namespace
    preset: Preset
    device: torch.device
    base: Degradation
    grid: list[Degradation]
    labels: list[str]
    methods: dict[str, str]  # label -> method name
    checkpoints: dict[str, str]
    options: dict[str, Any]
    tune_images: int
    test_images: int | None
    baseline: str
    quiet: bool = False
    checkpoint_sha256: dict[str, str] = field(default_factory=dict)
    #: rows trained as generalists (``--generalist LABEL=FAMILY``)
    families: dict[str, DegradationFamily] = field(default_factory=dict)

    def cls(self, label: str) -> type[Method]:
        return get_method(self.methods[label])

    def context(self, label: str, out: Path) -> MethodContext:
        """A row's context: fitted on the base degradation, or a generalist on its family."""
        family = self.families.get(label)
        options = dict(self.options) if family is None else {**self.options, "family": family}
        return MethodContext(
            preset=self.preset,
            device=self.device,
            seed=self.args.seed,
            work_dir=out / "methods" / label,
            quiet=self.quiet,
            blur_meta=self.base.meta() if family is None else family.meta(),
            options=options,
            noise=float(self.base.noise or 0.0),
        )

    def config(self) -> dict[str, Any]:
        """What a cell's numbers depend on besides its method and degradation (compared by
        ``--resume``)."""
        return {
            "format_version": FORMAT_VERSION,
            "preset": self.preset.to_dict(),
            "data_dir": self.args.data_dir,
            "seed": self.args.seed,
            "base": self.base.to_json(),
            "tune_images": self.tune_images,
            "test_images": self.test_images,
            "options": self.options,
        }

    def method_record(self, label: str) -> dict[str, Any]:
        return {
            "method": self.methods[label],
            "checkpoint": self.checkpoints.get(label),
            "checkpoint_sha256": self.checkpoint_sha256.get(label),
            "generalist": self.families[label].to_json() if label in self.families else None,
        }

    def cell_key(self, label: str) -> str:
        return _digest({"config": self.config(), "method": self.method_record(label)})


@dataclass
class Fitted:
    """A method row after `fit_once`: the instance (blind rows restore with it) and the file
    a non-blind row is reloaded from for each cell."""

    label: str
    method: Method
    file: Path | None
    record: dict[str, Any]


def cell_path(folder: Path, label: str, degradation: Degradation) -> Path:
    return folder / "cells" / label / f"{degradation.slug}.json"
