"""Input checking for :mod:`dnmf`, in one place.

Every public entry point funnels its arguments through these helpers, so each error names the
parameter, what was given and what is allowed. Nothing here copies ``V`` unless it has to
(a dtype or device change, a scipy sparse matrix, a non-strided layout).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

try:  # scipy is a hard dependency of the project, but keep dnmf importable without it
    import scipy.sparse as _sp
except ImportError:  # pragma: no cover
    _sp = None

BETA_NAMES = {"frobenius": 2.0, "kullback-leibler": 1.0, "itakura-saito": 0.0}
INITS = ("nndsvd", "nndsvda", "nndsvdar", "random", "custom")
_FLOAT_DTYPES = (torch.float32, torch.float64)


def as_kind(x: Any) -> str:
    """'torch' for tensors, else 'numpy' (results are returned in the kind of the input)."""
    return "torch" if isinstance(x, torch.Tensor) else "numpy"


def parse_dtype(dtype: Any) -> torch.dtype | None:
    """Map None / numpy / torch / string dtypes to float32 or float64."""
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        out = dtype
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
        out = {"float32": torch.float32, "float64": torch.float64}.get(name)
    if out not in _FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return out


def parse_device(device: Any) -> torch.device | None:
    if device is None:
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be a torch device or a string such as 'cpu' or 'cuda', got {device!r}"
        ) from None


def to_tensor(
    x: Any,
    name: str,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Convert ``x`` to a float tensor without copying when possible.

    float32/float64 are kept unless ``dtype`` asks otherwise; integer and boolean data become
    float64 (as scikit-learn does); complex, object and string data are refused.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif _sp is not None and _sp.issparse(x):
        t = torch.from_numpy(np.asarray(x.toarray()))
    else:
        if isinstance(x, (str, bytes)) or x is None:
            raise TypeError(
                f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}"
            )
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be a numpy array or a torch tensor: {exc}") from None
        if arr.dtype.kind not in "fiub":
            raise TypeError(
                f"{name} must hold real numbers (float32 or float64), got dtype {arr.dtype}"
            )
        if arr.dtype.kind == "f" and arr.dtype.itemsize == 2:
            arr = arr.astype(np.float32)
        if any(s < 0 for s in arr.strides):  # torch.from_numpy refuses negative strides
            arr = arr.copy()
        with warnings.catch_warnings():  # read-only arrays are fine: V is never written to
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = torch.from_numpy(arr)
    if t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if dtype is None:
        if t.dtype in _FLOAT_DTYPES:
            dtype = t.dtype
        elif t.dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32
        else:
            dtype = torch.float64
    if device is None:
        device = t.device
    t = t.to(device=device, dtype=dtype)
    if not _is_blas_friendly(t):
        t = t.contiguous()
    return t


def _is_blas_friendly(t: torch.Tensor) -> bool:
    """Row- or column-major in the last two dims (matmul takes both without a copy)."""
    if t.ndim < 2:
        return t.is_contiguous()
    s0, s1 = t.stride(-2), t.stride(-1)
    m, n = t.shape[-2], t.shape[-1]
    return (s1 == 1 and s0 >= max(n, 1)) or (s0 == 1 and s1 >= max(m, 1)) or t.is_contiguous()


def check_matrix(V: torch.Tensor, name: str = "V", *, allow_batch: bool = True) -> None:
    """Shape, finiteness and sign checks for a data matrix (or a batch of them)."""
    dims = "2-D (m, n) or 3-D (batch, m, n)" if allow_batch else "2-D (m, n)"
    if V.ndim not in ((2, 3) if allow_batch else (2,)):
        raise ValueError(f"{name} must be {dims}; got ndim={V.ndim} with shape {tuple(V.shape)}")
    if V.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(V.shape)}; every dimension must be >= 1")
    # One pass, no temporaries: NaN propagates into the min/max, infinities show up in them.
    vmin_t, vmax_t = torch.aminmax(V)
    vmin, vmax = float(vmin_t), float(vmax_t)
    if not (np.isfinite(vmin) and np.isfinite(vmax)):
        bad = int((~torch.isfinite(V)).sum())
        raise ValueError(
            f"{name} contains NaN or infinity ({bad} entries); factorization needs finite values"
        )
    if vmin < 0:
        count = int((V < 0).sum())
        raise ValueError(
            f"{name} must be nonnegative: found {count} negative entries (minimum {vmin:.6g})"
        )


def parse_beta(beta: Any, name: str = "beta") -> float:
    """Accept a real number or one of scikit-learn's names for 2, 1 and 0."""
    if isinstance(beta, str):
        if beta not in BETA_NAMES:
            raise ValueError(
                f"{name} must be a real number or one of {sorted(BETA_NAMES)}, got {beta!r}"
            )
        return BETA_NAMES[beta]
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not np.isfinite(beta):
        raise ValueError(
            f"{name} must be a real number or one of {sorted(BETA_NAMES)}, got {beta!r}"
        )
    return float(beta)


def check_beta_zeros(
    V: torch.Tensor, beta: float, mask: torch.Tensor | None, name: str = "V"
) -> None:
    """beta <= 0 divides by V (Itakura-Saito's V/Λ - log(V/Λ)): zeros make the loss infinite."""
    if beta > 0:
        return
    zeros = V == 0
    if mask is not None:
        zeros &= mask > 0
    count = int(zeros.sum())
    if count:
        raise ValueError(
            f"beta={beta:g} needs {name} > 0 wherever it is observed, but it has {count} zero "
            "entries; add a small offset to the data, mask them out, or use beta > 0 "
            "(2: Frobenius, 1: Kullback-Leibler)"
        )


def parse_ranks(ranks: Any) -> list[int]:
    """An int or a non-empty sequence of positive ints."""
    seq = [ranks] if isinstance(ranks, numbers.Integral) or _is_int_scalar(ranks) else ranks
    if isinstance(seq, (str, bytes)) or not isinstance(seq, (Sequence, np.ndarray, torch.Tensor)):
        raise TypeError(
            f"ranks must be a positive int or a sequence of positive ints, got {ranks!r}"
        )
    out = []
    for r in list(seq):
        if isinstance(r, bool) or not (isinstance(r, numbers.Integral) or _is_int_scalar(r)):
            raise TypeError(
                f"ranks must be a positive int or a sequence of positive ints, got {ranks!r}"
            )
        if int(r) < 1:
            raise ValueError(f"ranks must be positive ints (>= 1), got {list(seq)!r}")
        out.append(int(r))
    if not out:
        raise ValueError("ranks must hold at least one positive int, got an empty sequence")
    return out


def _is_int_scalar(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return x.ndim == 0 and not x.is_floating_point() and x.dtype != torch.bool
    return isinstance(x, np.integer)


def check_init(init: str, ranks: list[int], shape: tuple[int, ...]) -> None:
    """Validate the init name and that nndsvd* can produce the requested first rank."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    m, n = shape[-2], shape[-1]
    if init.startswith("nndsvd") and ranks[0] > min(m, n):
        raise ValueError(
            f"init={init!r} needs the first rank <= min(m, n) = {min(m, n)} (V is {m} x {n}), "
            f"got ranks[0]={ranks[0]}; lower the rank or use init='random'"
        )
    if init.startswith("nndsvd"):
        for l in range(1, len(ranks)):
            if ranks[l] > min(ranks[l - 1], n):
                raise ValueError(
                    f"init={init!r} initializes layer {l + 1} from the previous layer's "
                    f"{ranks[l - 1]} x {n} codes and needs ranks[{l}] <= {min(ranks[l - 1], n)}, "
                    f"got {ranks[l]}; use init='random' for non-decreasing ranks"
                )


def parse_penalty(value: Any, name: str, n_factors: int) -> list[float]:
    """A float for every factor, or one value per factor in the order (W1, ..., Wk, H)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        vals = [float(value)] * n_factors
    elif isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
        vals = [float(v) for v in value]
        if len(vals) != n_factors:
            raise ValueError(
                f"{name} must be a float or a sequence of {n_factors} floats "
                f"(one per factor W1..W{n_factors - 1}, H), got {len(vals)} values"
            )
    else:
        raise TypeError(f"{name} must be a float or a sequence of floats, got {value!r}")
    if any(not np.isfinite(v) or v < 0 for v in vals):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return vals


def check_mask(mask: Any, V: torch.Tensor) -> torch.Tensor:
    """Weights in [0, 1] of V's shape, converted to V's dtype and device."""
    M = to_tensor(mask, "mask", dtype=V.dtype, device=V.device)
    if tuple(M.shape) != tuple(V.shape):
        raise ValueError(f"mask must have V's shape {tuple(V.shape)}, got {tuple(M.shape)}")
    if not bool(torch.isfinite(M).all()) or float(M.min()) < 0 or float(M.max()) > 1:
        raise ValueError("mask must hold weights in [0, 1] (0 = missing, 1 = observed)")
    observed = M.sum(dim=(-2, -1))
    if bool((observed == 0).any()):
        raise ValueError("mask must observe at least one entry of every matrix (all weights are 0)")
    return M


def check_custom_factors(
    Ws: Any, H: Any, V: torch.Tensor, ranks: list[int]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Copy user factors to V's dtype/device and check their shapes and signs."""
    if Ws is None or H is None:
        raise ValueError("init='custom' needs both Ws (a list of k factors) and H")
    if isinstance(Ws, (torch.Tensor, np.ndarray)) and Ws.ndim in (2, 3) and len(ranks) == 1:
        Ws = [Ws]
    if not isinstance(Ws, (list, tuple)) or len(Ws) != len(ranks):
        raise ValueError(f"Ws must be a list of {len(ranks)} factors for ranks {ranks}")
    batch = tuple(V.shape[:-2])
    dims = [V.shape[-2], *ranks]
    out = []
    for l, W in enumerate(Ws):
        t = to_tensor(W, f"Ws[{l}]", dtype=V.dtype, device=V.device).clone()
        want = (*batch, dims[l], dims[l + 1])
        if tuple(t.shape) != want:
            raise ValueError(f"Ws[{l}] must have shape {want}, got {tuple(t.shape)}")
        _check_factor(t, f"Ws[{l}]")
        out.append(t.contiguous())
    Ht = to_tensor(H, "H", dtype=V.dtype, device=V.device).clone()
    want = (*batch, ranks[-1], V.shape[-1])
    if tuple(Ht.shape) != want:
        raise ValueError(f"H must have shape {want}, got {tuple(Ht.shape)}")
    _check_factor(Ht, "H")
    return out, Ht.contiguous()


def _check_factor(t: torch.Tensor, name: str) -> None:
    tmin, tmax = (float(x) for x in torch.aminmax(t))
    if not (np.isfinite(tmin) and np.isfinite(tmax)):
        raise ValueError(f"{name} contains NaN or infinity")
    if tmin < 0:
        raise ValueError(
            f"{name} must be nonnegative: found {int((t < 0).sum())} negative entries "
            f"(minimum {tmin:.6g})"
        )


def check_pretrain(pretrain: Any) -> None:
    """``pretrain`` is a bool or an int >= 1 (iterations per layer)."""
    is_bool = isinstance(pretrain, (bool, np.bool_))
    if not (is_bool or isinstance(pretrain, numbers.Integral)) or (not is_bool and pretrain < 1):
        raise ValueError(
            f"pretrain must be a bool or an int >= 1 (iterations per layer), got {pretrain!r}"
        )


def check_positive_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    lo = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


def check_nonneg_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (value >= 0):
        raise ValueError(f"{name} must be a float >= 0, got {value!r}")
    return float(value)
