"""The degradation, one object: blur kernel → additive Gaussian noise → 8 bits (→ JPEG).

`Degradation` is built once from a command's flags (`degradation_from_flags`; ``run``,
``train``, ``restore`` and ``sweep`` all use it), recorded whole in ``run.json`` and in every
CNN checkpoint's metadata (`Degradation.to_json` / `Degradation.from_json`), described in a
run's header (`Degradation.describe`), and applied to sharp images by `Degradation.apply`
(DESIGN §3: reflect boundary, noise before the 8-bit rounding, then the optional JPEG copies
of both images).

Kernels come by recipe (`Kernel`, ``--kernel SPEC``, see `KERNEL_SPECS`):

- ``gaussian:SIGMA``, ``gaussian:SX,SY,THETA`` (anisotropic, THETA in degrees);
- ``levin09:N``: Levin et al.'s eight recorded camera-shake kernels (a test set);
- ``motion:SEED[,LENGTH]``: a seeded random camera-shake trajectory (`motion_kernel`);
- ``psf:FILE`` (or ``--psf FILE``): a user PSF, recorded by path, SHA-256 of its normalised
  array and, when small, the array itself, so a run can be redone without the file.

`DegradationFamily` draws degradations at random (``train --kernels``: a generalist CNN);
it never contains the Levin kernels.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.blur import (
    DEFAULT_KERNEL_SIZE,
    DEFAULT_SIGMA,
    LEVIN09_COUNT,
    PSF_WITH_GAUSSIAN_FLAGS,
    BlurOperator,
    degrade,
    gaussian_kernel,
    gaussian_size,
    levin_kernel,
    load_psf,
)
from benchmarks.errors import UserError
from benchmarks.jpeg import jpeg_round_trip
from convae import MetaMismatchWarning

#: How ``--kernel`` values are written (for help texts and error messages).
KERNEL_SPECS = (
    "gaussian:SIGMA, gaussian:SX,SY,THETA, levin09:N (N = 1..8), motion:SEED[,LENGTH] or psf:FILE"
)
#: How ``train --kernels`` values are written.
FAMILY_SPECS = "gaussian:LO-HI, anisotropic:LO-HI, motion or motion:LO-HI, joined by '+'"
#: Side of a random camera-shake kernel unless ``--kernel-size`` says otherwise; the largest
#: Levin kernel is 27 px, and a trajectory is centred on its mean, so it needs some margin.
MOTION_SIZE = 31
#: Range of the longer side (px) of a random trajectory whose length the seed draws.
MOTION_LENGTHS = (6.0, 24.0)
#: A PSF with at most this many entries is embedded in ``run.json`` and checkpoints.
EMBED_MAX_ENTRIES = 2500
QUANTIZATION = "8-bit"


class DegradationMismatchWarning(MetaMismatchWarning):
    """A model is used on images degraded otherwise than the ones it was trained on."""


# --------------------------------------------------------------------------- kernels
def anisotropic_gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float, theta: float
) -> torch.Tensor:
    """Normalised ``(size, size)`` Gaussian with standard deviations ``sigma_x`` along the
    direction ``theta`` (degrees, counter-clockwise from the x axis) and ``sigma_y`` across
    it, centred on the middle of the grid; float64."""
    for name, v in (("sigma_x", sigma_x), ("sigma_y", sigma_y)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    if sigma_x == sigma_y:  # isotropic: exactly the separable kernel of `gaussian_kernel`
        return gaussian_kernel(size, sigma_x)
    t = math.radians(theta)
    c, s = math.cos(t), math.sin(t)
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    yy, xx = torch.meshgrid(-r, r, indexing="ij")  # y up, so theta turns counter-clockwise
    u = c * xx + s * yy
    v = -s * xx + c * yy
    k = torch.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return k / k.sum()


@functools.lru_cache(maxsize=64)
def _matern_cholesky(n: int, scale: float) -> np.ndarray:
    """Cholesky factor of the Matérn-3/2 covariance of ``n`` times in [0, 1]."""
    t = np.linspace(0.0, 1.0, n)
    r = math.sqrt(3.0) * np.abs(t[:, None] - t[None, :]) / scale
    cov = (1.0 + r) * np.exp(-r) + 1e-9 * np.eye(n)
    return np.linalg.cholesky(cov)


def motion_kernel(seed: int, size: int = MOTION_SIZE, length: float | None = None) -> torch.Tensor:
    """A random camera-shake kernel: a seeded trajectory, as in Schuler et al. (2016) and
    deepinv's ``MotionBlurGenerator``, rasterised onto a ``size × size`` grid.

    The camera path's x and y are independent draws of a Gaussian process over the exposure
    (Matérn-3/2 covariance, time scale drawn from [0.15, 0.6] of the exposure in steps of
    0.01: from a nearly straight sweep to a few turns), so the path is smooth and its speed
    varies (a slower stretch leaves a brighter trace, as in recorded kernels). It is centred
    on its mean position (the blur does not shift the image on average), scaled so that its
    longer side spans ``length`` px (drawn from `MOTION_LENGTHS` by the seed when None; the
    recorded Levin kernels span 7 to 22 px), shrunk if needed to stay inside the grid, and
    rasterised with bilinear weights at 8 samples per pixel of path. Returns a float64
    tensor, nonnegative, summing to 1; the same ``(seed, size, length)`` always gives the
    same kernel.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"motion kernel seed must be an integer >= 0, got {seed!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 5:
        raise ValueError(f"motion kernel size must be an integer >= 5, got {size!r}")
    rng = np.random.default_rng(int(seed))
    scale = round(float(rng.uniform(0.15, 0.6)), 2)  # 46 time scales, each factorised once
    drawn = rng.uniform(*MOTION_LENGTHS)
    if length is None:
        length = drawn
    if not (math.isfinite(length) and length > 0):
        raise ValueError(f"motion kernel length must be a finite number > 0, got {length!r}")
    path = _matern_cholesky(128, scale) @ rng.standard_normal((128, 2))
    path -= path.mean(axis=0)
    span = float((path.max(axis=0) - path.min(axis=0)).max())
    path *= length / max(span, 1e-12)
    limit = (size - 1) / 2.0 - 1.0  # bilinear weights reach one pixel further
    reach = float(np.abs(path).max())
    if reach > limit:
        path *= limit / reach
    # Densify the 128 samples so that neighbours are 1/8 px apart (no dotted traces).
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    n_fine = int(min(20000, max(256, 8 * steps.sum())))
    t = np.concatenate([[0.0], np.cumsum(np.ones_like(steps))])
    tf = np.linspace(0.0, t[-1], n_fine)
    pts = np.stack([np.interp(tf, t, path[:, i]) for i in (0, 1)], axis=1) + (size - 1) / 2.0
    k = np.zeros((size, size))
    x0, y0 = np.floor(pts[:, 0]).astype(int), np.floor(pts[:, 1]).astype(int)
    fx, fy = pts[:, 0] - x0, pts[:, 1] - y0
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            np.add.at(k, (y0 + dy, x0 + dx), wy * wx)
    return torch.from_numpy(k / k.sum())


def kernel_sha256(kernel: torch.Tensor | np.ndarray) -> str:
    """SHA-256 of a normalised kernel: its shape, then its float64 values (C order)."""
    a = np.ascontiguousarray(np.asarray(kernel, dtype=np.float64))
    return hashlib.sha256(f"{a.shape[0]}x{a.shape[1]}:".encode() + a.tobytes()).hexdigest()


def _where(flag: str | None, spec: str) -> str:
    """How an error names the value: ``--kernel 'x'`` (argparse's own messages name the flag
    already, so its type functions pass no ``flag``)."""
    return f"{flag} {spec!r}" if flag else repr(spec)


def _number(text: str, what: str, where: str, *, positive: bool = True) -> float:
    try:
        v = float(text)
    except ValueError:
        raise UserError(f"{where}: {what} must be a number, got {text!r}") from None
    if not math.isfinite(v) or (v <= 0 if positive else v < 0):
        bound = "> 0" if positive else ">= 0"
        raise UserError(f"{where}: {what} must be a finite number {bound}, got {text!r}")
    return v


def _integer(text: str, what: str, where: str, lo: int, hi: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise UserError(f"{where}: {what} must be an integer, got {text!r}") from None
    if not lo <= v <= hi:
        raise UserError(f"{where}: {what} must be from {lo} to {hi}, got {v}")
    return v


@dataclass(frozen=True)
class Kernel:
    """A blur kernel by its recipe; `tensor` builds it (cached), `spec` writes it back.

    ``family`` is ``"gaussian"`` (``sigma_x``, ``sigma_y``, ``theta`` in degrees; isotropic
    when the two sigmas are equal), ``"levin09"`` (``index``), ``"motion"`` (``seed``,
    ``length``: None lets the seed draw it) or ``"psf"`` (``path``, ``sha256`` of the
    normalised array, and the ``array``, which `to_json` embeds when small). ``size`` is the
    side of a Gaussian or motion kernel.
    """

    family: str = "gaussian"
    sigma_x: float | None = DEFAULT_SIGMA
    sigma_y: float | None = DEFAULT_SIGMA
    theta: float | None = 0.0
    size: int | None = DEFAULT_KERNEL_SIZE
    index: int | None = None
    seed: int | None = None
    length: float | None = None
    path: str | None = None
    sha256: str | None = None
    array: tuple[tuple[float, ...], ...] | None = None

    # -- constructors ----------------------------------------------------------------
    @classmethod
    def gaussian(
        cls,
        sigma_x: float,
        sigma_y: float | None = None,
        theta: float = 0.0,
        size: int | None = None,
    ) -> Kernel:
        sy = sigma_x if sigma_y is None else sigma_y
        iso = sy == sigma_x
        side = size if size is not None else gaussian_size(max(sigma_x, sy))
        return cls(
            "gaussian", float(sigma_x), float(sy), 0.0 if iso else float(theta) % 180.0, int(side)
        )

    @classmethod
    def levin(cls, index: int) -> Kernel:
        levin_kernel(index)  # a bad index fails here, with the names of the shipped kernels
        return cls("levin09", None, None, None, None, index=int(index))

    @classmethod
    def motion(cls, seed: int, length: float | None = None, size: int | None = None) -> Kernel:
        k = cls(
            "motion",
            None,
            None,
            None,
            int(MOTION_SIZE if size is None else size),
            seed=int(seed),
            length=None if length is None else float(length),
        )
        k.tensor()  # bad values fail now
        return k

    @classmethod
    def from_array(cls, kernel: torch.Tensor | np.ndarray, path: str | None = None) -> Kernel:
        """A PSF given as an array (read from ``path`` when given), normalised to sum 1."""
        a = np.asarray(kernel, dtype=np.float64)
        if a.ndim != 2 or not np.all(np.isfinite(a)) or (a < 0).any() or a.sum() <= 0:
            raise ValueError("a PSF must be a finite, nonnegative 2-D array with positive sum")
        a = a / a.sum()
        array = tuple(tuple(float(v) for v in row) for row in a)
        return cls("psf", None, None, None, None, path=path, sha256=kernel_sha256(a), array=array)

    @classmethod
    def psf_file(cls, path: str | Path) -> Kernel:
        return cls.from_array(load_psf(path).numpy(), path=str(path))

    # -- what it is ------------------------------------------------------------------
    @property
    def isotropic(self) -> bool:
        return self.family == "gaussian" and self.sigma_x == self.sigma_y

    @property
    def sigma(self) -> float | None:
        """The sigma of an isotropic Gaussian, else None."""
        return self.sigma_x if self.isotropic else None

    @property
    def spec(self) -> str:
        """The ``--kernel`` text of this kernel (``psf:`` + its file name for a PSF)."""
        if self.family == "gaussian":
            if self.isotropic:
                return f"gaussian:{self.sigma_x:g}"
            return f"gaussian:{self.sigma_x:g},{self.sigma_y:g},{self.theta:g}"
        if self.family == "levin09":
            return f"levin09:{self.index}"
        if self.family == "motion":
            return f"motion:{self.seed}" + ("" if self.length is None else f",{self.length:g}")
        return f"psf:{Path(self.path).name if self.path else 'array-' + str(self.sha256)[:12]}"

    @property
    def slug(self) -> str:
        """`spec` as a file-name part (letters, digits, ``.``, ``-``, ``_``), unique per recipe;
        with the size when it is not the default."""
        if self.family == "psf":
            base = f"psf-{str(self.sha256)[:12]}"
        else:
            base = re.sub(r"[^A-Za-z0-9.]+", "-", self.spec)
        if self.family == "gaussian" and self.size != gaussian_size(
            max(self.sigma_x or 0, self.sigma_y or 0)
        ):
            base += f"-s{self.size}"
        if self.family == "motion" and self.size != MOTION_SIZE:
            base += f"-s{self.size}"
        return base

    def describe(self) -> str:
        """In words, for a run's header."""
        shape = "×".join(str(s) for s in self.shape)
        if self.family == "gaussian":
            if self.isotropic:
                return f"Gaussian blur, sigma {self.sigma_x:g} ({shape} kernel)"
            return (
                f"anisotropic Gaussian blur, sigma {self.sigma_x:g} along {self.theta:g}° and "
                f"{self.sigma_y:g} across ({shape} kernel)"
            )
        if self.family == "levin09":
            return f"Levin et al. (2009) camera-shake kernel {self.index} ({shape})"
        if self.family == "motion":
            length = "" if self.length is None else f", {self.length:g} px long"
            return f"random camera-shake kernel, seed {self.seed}{length} ({shape})"
        where = f"PSF file {self.path}" if self.path else "PSF array"
        return f"{where} ({shape}, SHA-256 {str(self.sha256)[:12]}…)"

    @property
    def shape(self) -> tuple[int, int]:
        if self.family in ("gaussian", "motion"):
            return (int(self.size or 0), int(self.size or 0))
        return tuple(self.tensor().shape)  # type: ignore[return-value]

    # -- the kernel itself -----------------------------------------------------------
    def tensor(self) -> torch.Tensor:
        """The kernel, float64, summing to 1 (built once per recipe)."""
        return _kernel_tensor(self).clone()

    def digest(self) -> str:
        """SHA-256 of the normalised kernel (`kernel_sha256`): equal kernels, equal digests."""
        if self.family == "psf" and self.sha256:
            return self.sha256
        return kernel_sha256(_kernel_tensor(self))

    def operator(self) -> BlurOperator:
        """The reflect-boundary blur by this kernel (one per recipe, its FFT plans kept)."""
        return _kernel_operator(self)

    # -- records -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"family": self.family}
        if self.family == "gaussian":
            if self.isotropic:
                d["sigma"] = self.sigma_x
            else:
                d.update(sigma_x=self.sigma_x, sigma_y=self.sigma_y, theta=self.theta)
            d["size"] = self.size
        elif self.family == "levin09":
            d["index"] = self.index
        elif self.family == "motion":
            d.update(seed=self.seed, length=self.length, size=self.size)
        else:
            d.update(path=self.path, sha256=self.sha256)
            if self.array is not None and len(self.array) * len(self.array[0]) <= EMBED_MAX_ENTRIES:
                d["array"] = [list(row) for row in self.array]
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Kernel:
        """The kernel `to_json` wrote; a record that is not one is a `UserError`."""
        try:
            family = d["family"]
            if family == "gaussian":
                sx = float(d["sigma"] if "sigma" in d else d["sigma_x"])
                sy = float(d["sigma"] if "sigma" in d else d["sigma_y"])
                return cls.gaussian(sx, sy, float(d.get("theta") or 0.0), int(d["size"]))
            if family == "levin09":
                return cls.levin(int(d["index"]))
            if family == "motion":
                length = d.get("length")
                return cls.motion(
                    int(d["seed"]), None if length is None else float(length), int(d["size"])
                )
            if family == "psf":
                arr = d.get("array")
                array = None if arr is None else tuple(tuple(float(v) for v in r) for r in arr)
                k = cls(
                    "psf",
                    None,
                    None,
                    None,
                    None,
                    path=d.get("path"),
                    sha256=str(d["sha256"]),
                    array=array,
                )
                if array is not None and kernel_sha256(np.asarray(array)) != k.sha256:
                    raise UserError("the embedded PSF array does not match its SHA-256")
                return k
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"not a kernel record: {dict(d)!r} ({exc})") from None
        raise UserError(f"not a kernel record: unknown family {family!r}")


@functools.lru_cache(maxsize=256)
def _kernel_tensor(k: Kernel) -> torch.Tensor:
    if k.family == "gaussian":
        return anisotropic_gaussian_kernel(
            int(k.size or 0), float(k.sigma_x or 0), float(k.sigma_y or 0), float(k.theta or 0)
        )
    if k.family == "levin09":
        return levin_kernel(int(k.index or 0))
    if k.family == "motion":
        return motion_kernel(int(k.seed or 0), int(k.size or 0), k.length)
    if k.family == "psf":
        if k.array is not None:
            return torch.tensor(k.array, dtype=torch.float64)
        if not k.path:
            raise UserError("this PSF was recorded without its array or file: it cannot be rebuilt")
        t = load_psf(k.path)
        if kernel_sha256(t) != k.sha256:
            raise UserError(
                f"the PSF file {k.path} changed since it was recorded (SHA-256 "
                f"{kernel_sha256(t)[:12]}… instead of {str(k.sha256)[:12]}…)"
            )
        return t
    raise ValueError(f"unknown kernel family {k.family!r}")


@functools.lru_cache(maxsize=64)
def _kernel_operator(k: Kernel) -> BlurOperator:
    if k.isotropic:  # named and described as before (checkpoints compare these fields)
        return BlurOperator.gaussian(int(k.size or 0), float(k.sigma_x or 0))
    if k.family == "levin09":
        return BlurOperator.named(k.spec)
    if k.family == "psf":
        name = f"psf:{Path(k.path).name}" if k.path else "custom"
        return BlurOperator(_kernel_tensor(k), name=name)
    return BlurOperator(_kernel_tensor(k), name=k.spec)


def parse_kernel(text: str, *, size: int | None = None, flag: str | None = "--kernel") -> Kernel:
    """The `Kernel` a ``--kernel`` value names (`KERNEL_SPECS`); ``size`` is
    ``--kernel-size`` (Gaussian and motion kernels only). Errors name ``flag`` and the value."""
    spec = str(text).strip()
    where = _where(flag, spec)
    family, sep, rest = spec.partition(":")
    family = family.strip().lower()
    if not sep or not rest.strip():
        if family == "levin09":
            raise UserError(f"{where}: name one kernel, levin09:1 to levin09:{LEVIN09_COUNT}")
        raise UserError(f"{where}: write it as {KERNEL_SPECS}")
    if family in ("levin09", "psf") and size is not None:
        raise UserError(
            f"--kernel-size does not apply to {where} (its kernel has a fixed size): drop it"
        )
    if family == "gaussian":
        parts = [p.strip() for p in rest.split(",")]
        if len(parts) == 1:
            s = _number(parts[0], "SIGMA", where)
            return Kernel.gaussian(s, size=size)
        if len(parts) in (2, 3):
            sx = _number(parts[0], "SX", where)
            sy = _number(parts[1], "SY", where)
            th = _number(parts[2], "THETA", where, positive=False) if len(parts) == 3 else 0.0
            return Kernel.gaussian(sx, sy, th, size=size)
        raise UserError(f"{where}: write gaussian:SIGMA or gaussian:SX,SY,THETA")
    if family == "levin09":
        return Kernel.levin(_integer(rest.strip(), "N", where, 1, LEVIN09_COUNT))
    if family == "motion":
        parts = [p.strip() for p in rest.split(",")]
        if len(parts) > 2:
            raise UserError(f"{where}: write motion:SEED or motion:SEED,LENGTH")
        seed = _integer(parts[0], "SEED", where, 0, 2**32 - 1)
        length = _number(parts[1], "LENGTH", where) if len(parts) == 2 else None
        if size is not None and size < 5:
            raise UserError(f"--kernel-size must be at least 5 for {where}, got {size}")
        return Kernel.motion(seed, length, size)
    if family == "psf":
        try:
            return Kernel.psf_file(rest.strip())
        except FileNotFoundError as exc:
            raise UserError(f"{where}: {exc}") from None
    raise UserError(f"{where}: unknown kernel family {family!r}; write {KERNEL_SPECS}")


# --------------------------------------------------------------------------- the degradation
def degrade_pair(
    sharp: torch.Tensor,
    blur: BlurOperator,
    *,
    noise: float = 0.0,
    jpeg_quality: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(blurred, sharp)`` by the protocol: `benchmarks.blur.degrade` (blur, noise drawn from
    ``generator``, 8 bits), then with ``jpeg_quality`` the JPEG copies of both images."""
    y = degrade(sharp, blur, noise=noise, generator=generator)
    if jpeg_quality is None:
        return y, sharp
    return jpeg_round_trip(y, jpeg_quality), jpeg_round_trip(sharp, jpeg_quality)


@dataclass(frozen=True)
class Degradation:
    """Blur by ``kernel`` (reflect boundary) → Gaussian noise of std ``noise`` on the [0, 1]
    scale → 8-bit rounding → with ``jpeg_quality``, JPEG copies of the blurred and of the
    sharp image (the source's protocol). ``noise=None`` means "not known" (``restore``:
    the user's images); such a degradation describes and compares but is never applied."""

    kernel: Kernel = Kernel()
    noise: float | None = 0.0
    jpeg_quality: int | None = None

    def __post_init__(self) -> None:
        if self.noise is not None and not (math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0, got {self.noise!r}")

    @property
    def blur(self) -> BlurOperator:
        """The blur operator non-blind methods receive."""
        return self.kernel.operator()

    def with_(self, **changes: Any) -> Degradation:
        return replace(self, **changes)

    def apply(
        self, sharp: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(blurred, sharp)`` of the images ``sharp`` (N, C, H, W) in [0, 1]: the blurred
        ones, and the sharp ones as the protocol keeps them (their JPEG copies with
        ``jpeg_quality``, else themselves). The noise is drawn from ``generator``."""
        if self.noise is None:
            raise ValueError("a degradation with an unknown noise level cannot be applied")
        return degrade_pair(
            sharp, self.blur, noise=self.noise, jpeg_quality=self.jpeg_quality, generator=generator
        )

    # -- words and records -------------------------------------------------------------
    @property
    def label(self) -> str:
        """Short: ``levin09:4, noise 0.01`` (tables, figure titles)."""
        noise = "?" if self.noise is None else f"{self.noise:g}"
        jpeg = f", JPEG {self.jpeg_quality}" if self.jpeg_quality else ""
        return f"{self.kernel.spec}, noise {noise}{jpeg}"

    @property
    def slug(self) -> str:
        """A file-name part naming this degradation (``levin09-4_n0.01``)."""
        noise = "unknown" if self.noise is None else f"{self.noise:g}"
        return f"{self.kernel.slug}_n{noise}" + (
            f"_q{self.jpeg_quality}" if self.jpeg_quality else ""
        )

    def describe(self) -> str:
        """In words, for a run's header and for warnings."""
        if self.noise is None:
            noise = "noise level not known"
        else:
            noise = f"Gaussian noise std {self.noise:g}" if self.noise else "no noise"
        jpeg = (
            f", then sharp and blurred images both saved as JPEG (quality {self.jpeg_quality})"
            if self.jpeg_quality
            else ""
        )
        return f"{self.kernel.describe()}, reflect boundary, {noise}, 8-bit{jpeg}"

    def to_json(self) -> dict[str, Any]:
        """The whole degradation as JSON types (`from_json` reads it back)."""
        return {
            "kernel": self.kernel.to_json(),
            "noise": self.noise,
            "quantization": QUANTIZATION,
            "jpeg_quality": self.jpeg_quality,
            "spec": self.kernel.spec,
            "kernel_shape": list(self.kernel.shape),
            "kernel_sha256": self.kernel.digest(),
            "description": self.describe(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Degradation:
        if not isinstance(d, Mapping) or not isinstance(d.get("kernel"), Mapping):
            raise UserError(f"not a degradation record: {d!r}")
        noise = d.get("noise")
        jpeg = d.get("jpeg_quality")
        try:
            return cls(
                Kernel.from_json(d["kernel"]),
                None if noise is None else float(noise),
                None if jpeg is None else int(jpeg),
            )
        except (TypeError, ValueError) as exc:
            raise UserError(f"not a degradation record: {exc}") from None

    def blur_fields(self) -> dict[str, Any]:
        """The blur operator's fields, noise and quantization: what runs and checkpoints
        recorded before the whole degradation was (``run.json``'s ``blur``)."""
        return {**self.blur.meta(), "noise": self.noise, "quantization": QUANTIZATION}

    def meta(self) -> dict[str, Any]:
        """What a model trained on this degradation records (``ctx.blur_meta``, a CNN
        checkpoint's ``meta``): `blur_fields` (earlier checkpoints are compared on those) and
        the whole record under ``"degradation"``."""
        return {**self.blur_fields(), "degradation": self.to_json()}

    def same_as(self, other: Degradation) -> bool:
        """The same kernel (by its values), noise (an unknown one matches any) and JPEG."""
        noise_ok = self.noise is None or other.noise is None or self.noise == other.noise
        return (
            noise_ok
            and self.jpeg_quality == other.jpeg_quality
            and self.kernel.digest() == other.kernel.digest()
        )


def degradation_from_flags(source: Any, *, jpeg_quality: int | None = None) -> Degradation:
    """The degradation of a command's flags (or of a `RunConfig`: the same names):
    ``--kernel`` or ``--psf`` or the Gaussian of ``--sigma``/``--kernel-size`` (25 px, sigma
    3 by default), ``--noise`` (absent: not known, as in ``restore``), and ``jpeg_quality``
    (the preset's, after ``--jpeg-quality``). Contradicting flags are refused by name."""
    spec = getattr(source, "kernel", None)
    sigma = getattr(source, "sigma", None)
    size = getattr(source, "kernel_size", None)
    psf = getattr(source, "psf", None)
    noise = getattr(source, "noise", None)
    if spec is not None and psf is not None:
        raise UserError("--kernel and --psf both name the kernel: give one of them")
    if psf is not None:
        if sigma is not None or size is not None:
            raise UserError(PSF_WITH_GAUSSIAN_FLAGS)
        kernel = Kernel.psf_file(psf)
    elif spec is not None:
        if sigma is not None:
            raise UserError(
                f"--sigma describes the default Gaussian; with --kernel {spec} drop it "
                f"(a Gaussian of sigma S is --kernel gaussian:S)"
            )
        kernel = parse_kernel(spec, size=size)
    else:
        s = DEFAULT_SIGMA if sigma is None else float(sigma)
        kernel = Kernel.gaussian(s, size=size)
    return Degradation(kernel, None if noise is None else float(noise), jpeg_quality)


# --------------------------------------------------------------------------- families
@dataclass(frozen=True)
class FamilyPart:
    """One kind of kernel a `DegradationFamily` draws: ``gaussian`` (sigma uniform in
    [low, high]), ``anisotropic`` (both sigmas uniform in [low, high], any angle) or
    ``motion`` (`motion_kernel` of a random seed; length uniform in [low, high] when given)."""

    kind: str
    low: float | None = None
    high: float | None = None

    @property
    def spec(self) -> str:
        if self.low is None:
            return self.kind
        if self.low == self.high:
            return f"{self.kind}:{self.low:g}"
        return f"{self.kind}:{self.low:g}-{self.high:g}"

    def sample(self, rng: np.random.Generator) -> Kernel:
        lo, hi = self.low, self.high
        if self.kind == "gaussian":
            return Kernel.gaussian(float(rng.uniform(lo, hi)))
        if self.kind == "anisotropic":
            sx, sy = (float(v) for v in rng.uniform(lo, hi, size=2))
            return Kernel.gaussian(sx, sy, float(rng.uniform(0.0, 180.0)))
        seed = int(rng.integers(0, 2**32))
        return Kernel.motion(seed, None if lo is None else float(rng.uniform(lo, hi)))

    def contains(self, k: Kernel) -> bool:
        if self.kind == "motion":
            if k.family != "motion":
                return False
            return self.low is None or (
                k.length is not None and self.low <= k.length <= (self.high or self.low)
            )
        if k.family != "gaussian" or (self.kind == "gaussian" and not k.isotropic):
            return False
        lo, hi = float(self.low or 0), float(self.high or 0)
        return lo <= float(k.sigma_x or 0) <= hi and lo <= float(k.sigma_y or 0) <= hi


def _range(text: str, what: str, where: str) -> tuple[float, float]:
    lo_s, sep, hi_s = text.partition("-")
    lo = _number(lo_s.strip(), f"the lower {what}", where)
    hi = _number(hi_s.strip(), f"the upper {what}", where) if sep else lo
    if hi < lo:
        raise UserError(f"{where}: the range {text} runs backwards (write LO-HI, LO <= HI)")
    return lo, hi


def parse_family(text: str, *, flag: str | None = "--kernels") -> tuple[FamilyPart, ...]:
    """The kernel kinds a ``--kernels`` value names (`FAMILY_SPECS`). The Levin kernels and
    PSF files are refused: the former are the sweep's test set, the latter one fixed kernel."""
    spec = str(text).strip()
    where = _where(flag, spec)
    parts: list[FamilyPart] = []
    for item in spec.split("+"):
        kind, sep, rest = item.strip().partition(":")
        kind = kind.strip().lower()
        if kind == "levin09":
            raise UserError(
                f"{where}: the Levin kernels are the test set of `deblur-bench sweep`; "
                f"nothing is trained on them. Train on {FAMILY_SPECS}"
            )
        if kind in ("gaussian", "anisotropic"):
            if not sep:
                raise UserError(f"{where}: give the sigma range, e.g. {kind}:0.5-5")
            parts.append(FamilyPart(kind, *_range(rest, "sigma", where)))
        elif kind == "motion":
            lo_hi = _range(rest, "length", where) if sep else (None, None)
            parts.append(FamilyPart("motion", *lo_hi))
        else:
            raise UserError(f"{where}: unknown kernel kind {kind!r}; write {FAMILY_SPECS}")
    return tuple(parts)


@dataclass(frozen=True)
class DegradationFamily:
    """Degradations drawn at random (``train --kernels``): a kernel kind picked uniformly
    among ``parts``, its kernel drawn from it, the noise std uniform in ``noise``, the 8-bit
    rounding, and the fixed ``jpeg_quality``."""

    parts: tuple[FamilyPart, ...]
    noise: tuple[float, float] = (0.0, 0.0)
    jpeg_quality: int | None = None

    @property
    def spec(self) -> str:
        return "+".join(p.spec for p in self.parts)

    def sample(self, rng: np.random.Generator) -> Degradation:
        part = self.parts[int(rng.integers(len(self.parts)))]
        kernel = part.sample(rng)
        lo, hi = self.noise
        noise = lo if lo == hi else float(rng.uniform(lo, hi))
        return Degradation(kernel, noise, self.jpeg_quality)

    def contains(self, d: Degradation) -> bool:
        """Whether ``d`` is one this family draws (an unknown noise level counts as inside)."""
        lo, hi = self.noise
        noise_ok = d.noise is None or lo <= d.noise <= hi
        return (
            noise_ok
            and d.jpeg_quality == self.jpeg_quality
            and any(p.contains(d.kernel) for p in self.parts)
        )

    def describe(self) -> str:
        lo, hi = self.noise
        noise = f"noise std {lo:g}" if lo == hi else f"noise std uniform in [{lo:g}, {hi:g}]"
        jpeg = f", JPEG quality {self.jpeg_quality}" if self.jpeg_quality else ""
        return f"random kernels {self.spec} (one per image and epoch), {noise}, 8-bit{jpeg}"

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "parts": [{"kind": p.kind, "low": p.low, "high": p.high} for p in self.parts],
            "noise": list(self.noise),
            "quantization": QUANTIZATION,
            "jpeg_quality": self.jpeg_quality,
            "description": self.describe(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DegradationFamily:
        try:
            parts = tuple(
                FamilyPart(str(p["kind"]), p.get("low"), p.get("high")) for p in d["parts"]
            )
            lo, hi = (float(v) for v in d["noise"])
            jpeg = d.get("jpeg_quality")
            return cls(parts, (lo, hi), None if jpeg is None else int(jpeg))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"not a degradation family record: {exc}") from None

    def meta(self) -> dict[str, Any]:
        """A generalist checkpoint's ``meta``: the family under ``"family"``."""
        return {"family": self.to_json(), "quantization": QUANTIZATION}


def parse_noise_range(text: str, flag: str | None = "--noise-range") -> tuple[float, float]:
    """``LO-HI`` (or one number) of noise stds on the [0, 1] scale, each finite and >= 0."""
    where = _where(flag, str(text).strip())
    lo_s, sep, hi_s = str(text).strip().partition("-")
    lo = _number(lo_s.strip(), "LO", where, positive=False)
    hi = _number(hi_s.strip(), "HI", where, positive=False) if sep else lo
    if hi < lo:
        raise UserError(f"{where}: the range runs backwards (write LO-HI, LO <= HI)")
    return lo, hi


# --------------------------------------------------------------------------- checks
def trained_on(meta: Mapping[str, Any] | None) -> Degradation | DegradationFamily | None:
    """What a checkpoint's ``meta`` says its model was trained on (None for a checkpoint
    made before the degradation was recorded whole)."""
    if not meta:
        return None
    if isinstance(meta.get("family"), Mapping):
        return DegradationFamily.from_json(meta["family"])
    if isinstance(meta.get("degradation"), Mapping):
        return Degradation.from_json(meta["degradation"])
    return None


def check_trained_degradation(
    ckpt_meta: Mapping[str, Any] | None, expected: Mapping[str, Any] | None, path: Any
) -> bool:
    """Warn (`DegradationMismatchWarning`) when the model in ``path`` was trained on another
    degradation than ``expected`` (a `Degradation.meta`): another kernel, noise level or JPEG
    quality, or, for a generalist, a degradation outside its family. Records made before the
    whole degradation was kept are compared on the blur fields both have. True when they agree.
    """
    if not expected:
        return True
    want_d = trained_on(expected)
    have = trained_on(ckpt_meta)
    if isinstance(want_d, Degradation) and have is not None:
        ok = have.contains(want_d) if isinstance(have, DegradationFamily) else have.same_as(want_d)
        if not ok:
            what = "the family" if isinstance(have, DegradationFamily) else ""
            warnings.warn(
                f"checkpoint {path} was trained on {what + ' ' if what else ''}{have.describe()}; "
                f"the images here: {want_d.describe()}",
                DegradationMismatchWarning,
                stacklevel=3,
            )
        return ok
    # An earlier checkpoint: the operator's fields (kind, shape, sigma, digest) and the noise.
    have_m = dict(ckpt_meta or {})
    diffs = [
        f"{k}: checkpoint {have_m.get(k, '<missing>')!r} vs expected {v!r}"
        for k, v in sorted(expected.items())
        if k not in ("degradation", "family") and v is not None and have_m.get(k, "<missing>") != v
    ]
    if diffs:
        warnings.warn(
            f"checkpoint {path} was trained with other settings (blur) than expected: "
            f"{'; '.join(diffs)}",
            DegradationMismatchWarning,
            stacklevel=3,
        )
    return not diffs
