"""The fixed degradation: blur (reflect boundary) -> optional noise -> 8 bits.

The blur is a linear operator object with ``A`` and an exact ``A_adjoint`` so that non-blind
methods receive the operator, never the clean image.  ``A = S ∘ C ∘ P`` where ``P`` pads
with reflection (the edge pixel is not repeated: numpy/torch ``reflect``, OpenCV
``BORDER_REFLECT_101``), ``C`` is a circular convolution on the padded grid (done by FFT) and
``S`` keeps the valid window, so the adjoint is ``Pᵀ Cᵀ Sᵀ`` exactly.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.errors import UserError


def gaussian_kernel(size: int = 25, sigma: float = 3.0) -> torch.Tensor:
    """Normalised 2-D Gaussian kernel ``(size, size)`` in float64, as cv2.getGaussianKernel."""
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"kernel size must be a positive integer, got {size!r}")
    if not (sigma > 0 and np.isfinite(sigma)):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    return torch.outer(g, g)


def load_psf(path: str | Path) -> torch.Tensor:
    """Read a user PSF from a ``.npy`` array or a grayscale image, normalised to sum 1."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PSF file not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # truncated, text, pickled objects
            raise UserError(f"cannot read PSF {path}: not a valid .npy array ({exc})") from None
    else:
        from PIL import Image

        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("F"), dtype=np.float64)
        except Exception as exc:  # PIL raises many types for bad files
            raise UserError(f"cannot read PSF image {path}: {exc}") from None
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise UserError(f"PSF in {path} must hold real numbers, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"PSF must be a 2-D array, got shape {arr.shape} from {path}")
    if not np.all(np.isfinite(arr)) or (arr < 0).any():
        raise ValueError(f"PSF in {path} must be finite and nonnegative")
    total = arr.sum()
    if total <= 0:
        raise ValueError(f"PSF in {path} sums to {total}; it needs positive mass")
    return torch.from_numpy(arr / total)


#: The kernels that ship with the package: Levin, Weiss, Durand & Freeman (CVPR 2009)'s eight
#: recorded camera-shake kernels (13 to 27 px, not symmetric); source and citation in
#: ``data/kernels/levin09/SOURCE.txt``. They are a test set: nothing is tuned or trained on them.
KERNELS_DIR = Path(__file__).resolve().parent / "data" / "kernels"
LEVIN09_COUNT = 8
#: ``named_kernel`` names, e.g. ``"levin09:4"``.
KERNEL_NAMES = tuple(f"levin09:{i}" for i in range(1, LEVIN09_COUNT + 1))


def levin_kernel(index: int) -> torch.Tensor:
    """Levin et al.'s camera-shake kernel ``index`` (1 to 8, the order of their file and of
    DPIR's ``Levin09.mat``) as a float64 tensor that sums to 1."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise UserError(f"Levin kernel index must be an integer from 1 to {LEVIN09_COUNT}, "
                        f"got {index!r}")  # fmt: skip
    if not 1 <= int(index) <= LEVIN09_COUNT:
        raise UserError(
            f"Levin kernel index must be from 1 to {LEVIN09_COUNT}, got {index} "
            f"(the names are {', '.join(KERNEL_NAMES)})"
        )
    path = KERNELS_DIR / "levin09" / f"levin09_{int(index)}.npy"
    if not path.is_file():
        raise FileNotFoundError(f"the shipped kernel file {path} is missing: reinstall the package")
    return load_psf(path)


def named_kernel(name: str) -> torch.Tensor:
    """A shipped kernel by name (`KERNEL_NAMES`: ``"levin09:1"`` … ``"levin09:8"``), as a
    float64 tensor that sums to 1."""
    family, sep, index = str(name).strip().partition(":")
    if family.lower() != "levin09" or not sep:
        raise UserError(
            f"unknown kernel name {name!r}: the shipped kernels are {', '.join(KERNEL_NAMES)}"
        )
    try:
        number = int(index)
    except ValueError:
        raise UserError(
            f"unknown kernel name {name!r}: after 'levin09:' comes a number from 1 to "
            f"{LEVIN09_COUNT} (e.g. levin09:4)"
        ) from None
    if not 1 <= number <= LEVIN09_COUNT:
        raise UserError(
            f"unknown kernel name {name!r}: the shipped kernels are {', '.join(KERNEL_NAMES)}"
        )
    return levin_kernel(number)


def _reflect_index(n: int, lo: int, hi: int) -> torch.Tensor:
    """Indices into a length-``n`` axis that reflect-pad it by ``lo``/``hi`` (edge not repeated)."""
    if lo >= n or hi >= n:
        raise ValueError(
            f"image side {n} px is too small for this kernel: reflect padding needs more than "
            f"{max(lo, hi)} px (use images larger than half the kernel)"
        )
    idx = torch.arange(-lo, n + hi)
    idx = torch.where(idx < 0, -idx, idx)
    idx = torch.where(idx > n - 1, 2 * (n - 1) - idx, idx)
    return idx


def is_symmetric_kernel(kernel: torch.Tensor, rtol: float = 1e-9) -> bool:
    """Whether ``kernel`` is symmetric about the pixel `BlurOperator` centres it on (index
    ``k // 2`` per axis): ``k[c + d] = k[c − d]`` for every offset ``d`` (a Gaussian, a box of
    odd size). Only then is the reflect-boundary blur diagonalised by the FFT of the
    symmetric extension; an even-sized kernel is symmetric only if its first row and column
    are zero (otherwise it is centred between pixels)."""
    k = torch.as_tensor(kernel, dtype=torch.float64)
    kh, kw = k.shape
    full = k.new_zeros(2 * (kh // 2) + 1, 2 * (kw // 2) + 1)
    full[:kh, :kw] = k
    return float((full - full.flip(0, 1)).abs().max()) <= rtol * float(k.abs().max())


class BlurOperator:
    """Convolution by ``kernel`` with reflect boundary, for batches ``(N, C, H, W)``.

    ``A(x)`` has the shape of ``x``; ``A_adjoint(y)`` is its exact adjoint.  Works on any
    device and float dtype (the kernel follows the input).
    """

    def __init__(self, kernel: torch.Tensor, *, name: str = "custom", sigma: float | None = None):
        kernel = torch.as_tensor(kernel, dtype=torch.float64)
        if kernel.ndim != 2:
            raise ValueError(f"kernel must be 2-D, got shape {tuple(kernel.shape)}")
        if (kernel < 0).any() or not torch.isfinite(kernel).all():
            raise ValueError("kernel must be finite and nonnegative")
        self.kernel = kernel / kernel.sum()
        self.name = name
        self.sigma = sigma
        kh, kw = self.kernel.shape
        # Same-size convolution centred as scipy.ndimage.convolve (also for even kernels).
        self.pad = ((kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2)
        self._cache: dict[tuple, Any] = {}

    @property
    def symmetric(self) -> bool:
        """Whether the kernel is symmetric about its centre pixel (`is_symmetric_kernel`)."""
        return is_symmetric_kernel(self.kernel)

    def check_image_size(self, height: int, width: int, what: str = "image") -> None:
        """Refuse an image the reflect padding cannot handle (not larger than half the kernel)."""
        t, b, l, r = self.pad
        need_h, need_w = max(t, b), max(l, r)
        if height <= need_h or width <= need_w:
            kh, kw = self.kernel.shape
            raise UserError(
                f"{what} of {width}x{height} px is too small for this {kw}x{kh} kernel: reflect "
                f"padding needs more than {need_w} px across and {need_h} px down"
            )

    # -- constructors -------------------------------------------------------------
    @classmethod
    def gaussian(cls, kernel_size: int = 25, sigma: float = 3.0) -> BlurOperator:
        return cls(gaussian_kernel(kernel_size, sigma), name="gaussian", sigma=sigma)

    @classmethod
    def named(cls, name: str) -> BlurOperator:
        """A shipped kernel by name, e.g. ``BlurOperator.named("levin09:4")`` (`named_kernel`)."""
        kernel = named_kernel(name)
        return cls(kernel, name=str(name).strip().lower())

    @classmethod
    def from_file(cls, path: str | Path) -> BlurOperator:
        op = cls(load_psf(path), name=f"psf:{Path(path).name}")
        return op

    # -- description ---------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """JSON-able description; two operators with equal ``meta`` blur identically."""
        digest = hashlib.sha1(self.kernel.numpy().tobytes()).hexdigest()[:12]
        return {
            "kind": self.name,
            "kernel_shape": list(self.kernel.shape),
            "sigma": self.sigma,
            "kernel_sha1": digest,
        }

    # -- FFT plumbing ----------------------------------------------------------------
    def _plan(self, h: int, w: int, device: torch.device, dtype: torch.dtype):
        key = (h, w, str(device), dtype)
        if key not in self._cache:
            t, b, l, r = self.pad
            iy = _reflect_index(h, t, b).to(device)
            ix = _reflect_index(w, l, r).to(device)
            ph, pw = h + t + b, w + l + r
            kh, kw = self.kernel.shape
            k = torch.zeros(ph, pw, dtype=torch.float64)
            k[:kh, :kw] = self.kernel
            # Circular conv with the kernel at the origin puts valid outputs at [kh-1:, kw-1:].
            khat = torch.fft.rfft2(k).to(
                device=device, dtype=torch.complex64 if dtype != torch.float64 else torch.complex128
            )
            self._cache[key] = (iy, ix, ph, pw, khat)
        return self._cache[key]

    def _check(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(
                f"expected a (N, C, H, W) tensor, got "
                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)}"
            )

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """Blur ``x`` (N, C, H, W) with reflect boundary; output has the same shape."""
        self._check(x)
        h, w = x.shape[-2:]
        iy, ix, ph, pw, khat = self._plan(h, w, x.device, x.dtype)
        z = x.index_select(-2, iy).index_select(-1, ix)
        out = torch.fft.irfft2(torch.fft.rfft2(z) * khat, s=(ph, pw))
        kh, kw = self.kernel.shape
        return out[..., kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w].contiguous()

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Exact adjoint of `A`: ⟨A x, y⟩ = ⟨x, A_adjoint y⟩."""
        self._check(y)
        h, w = y.shape[-2:]
        iy, ix, ph, pw, khat = self._plan(h, w, y.device, y.dtype)
        kh, kw = self.kernel.shape
        z = y.new_zeros(*y.shape[:-2], ph, pw)
        z[..., kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w] = y
        z = torch.fft.irfft2(torch.fft.rfft2(z) * khat.conj(), s=(ph, pw))
        # Adjoint of the reflect pad: fold every padded row/column back onto its source.
        out = y.new_zeros(*y.shape[:-2], h, pw).index_add_(-2, iy, z)
        return out.new_zeros(*y.shape[:-2], h, w).index_add_(-1, ix, out)

    __call__ = A


def quantize8(x: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to multiples of 1/255, as a saved 8-bit photo would be."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def degrade(
    x: torch.Tensor,
    blur: BlurOperator,
    *,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Blur, add Gaussian noise of std ``noise`` (on the [0, 1] scale), quantize to 8 bits."""
    if not (noise >= 0 and np.isfinite(noise)):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    y = blur.A(x)
    if noise > 0:
        y = y + noise * torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
    return quantize8(y)


DEFAULT_KERNEL_SIZE = 25
DEFAULT_SIGMA = 3.0
#: The refusal of ``--psf`` together with the Gaussian's flags (one wording everywhere).
PSF_WITH_GAUSSIAN_FLAGS = "--sigma and --kernel-size do not apply with --psf: drop them"


def gaussian_size(sigma: float) -> int:
    """The default side of a Gaussian kernel: 25 px (the reference protocol), or more for a
    wide one, so that the kernel reaches 3 sigma either side (``2 ceil(3 sigma) + 1``)."""
    return max(DEFAULT_KERNEL_SIZE, 2 * math.ceil(3.0 * sigma) + 1)


def make_blur(
    *, kernel_size: int | None = None, sigma: float | None = None, psf: str | Path | None = None
) -> BlurOperator:
    """The operator the CLI options describe: ``--psf FILE``, or the Gaussian (sigma 3 unless
    given, `gaussian_size` px unless given).  ``kernel_size``/``sigma`` describe the Gaussian
    only, so they are refused together with ``psf`` rather than silently ignored.  The
    commands build the whole degradation (kernel, noise, 8 bits, JPEG) instead:
    `benchmarks.degradation.degradation_from_flags`."""
    if psf is not None:
        if kernel_size is not None or sigma is not None:
            raise UserError(PSF_WITH_GAUSSIAN_FLAGS)
        return BlurOperator.from_file(psf)
    s = DEFAULT_SIGMA if sigma is None else sigma
    return BlurOperator.gaussian(gaussian_size(s) if kernel_size is None else kernel_size, s)
