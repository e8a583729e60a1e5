"""Conversion between the user's arrays and the solvers' tensors, for `dnmf`.

Inputs become float tensors without a copy when possible (`to_tensor`), sparse input a
`dnmf._solvers.sparse.SparseMatrix` (`to_sparse_matrix`, never densified) where the caller
keeps it sparse; results go back in the kind of the input (`as_output`: numpy for
numpy/scipy input, tensors for tensor input). Devices are checked here once, so a missing
CUDA device is a ``ValueError`` naming ``device`` rather than an assertion deep inside torch.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from ._memory import check_fits
from ._solvers.sparse import SparseMatrix

try:  # scipy is a hard dependency of the project, but keep dnmf importable without it
    import scipy.sparse as _sp
except ImportError:  # pragma: no cover
    _sp = None

_FLOAT_DTYPES = (torch.float32, torch.float64)


def as_kind(x: Any) -> str:
    """'torch' for tensors, else 'numpy' (results are returned in the kind of the input)."""
    return "torch" if isinstance(x, torch.Tensor) else "numpy"


def as_output(x: torch.Tensor, kind: str) -> Any:
    """``x`` itself for tensor input (``kind='torch'``), else a numpy array on the CPU."""
    return x if kind == "torch" else x.cpu().numpy()


def to_numpy(x: Any) -> np.ndarray:
    """A numpy array of a tensor (detached, on the CPU) or of anything ``np.asarray`` takes."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def parse_dtype(dtype: Any) -> torch.dtype | None:
    """Map None / numpy / torch / string dtypes to float32 or float64."""
    if dtype is None:
        return None
    out: torch.dtype | None
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
    """A usable ``torch.device`` (None stays None: compute where the input is).

    Raises ``ValueError`` naming ``device`` for a value torch cannot parse and for a device this
    machine does not have (no CUDA build or no GPU, an index past the GPU count).
    """
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be a torch device or a string such as 'cpu' or 'cuda', got {device!r}"
        ) from None
    _check_available(dev, device)
    return dev


def _check_available(dev: torch.device, given: Any) -> None:
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this torch is built without CUDA"
                if torch.version.cuda is None
                else "torch sees no CUDA device"
            )
            raise ValueError(f"device={str(given)!r} is not available: {why}; use device='cpu'")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"device={str(given)!r} is not available: torch sees {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
        return
    try:  # other backends (mps, xpu, ...): ask torch for an empty tensor there
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError, NotImplementedError) as exc:
        raise ValueError(f"device={str(given)!r} is not available: {exc}") from None


def split_masked(x: Any, mask: Any, name: str = "V") -> tuple[Any, Any]:
    """A numpy masked array's mask as ``mask=`` weights: masked entries get weight 0.

    Returns ``(data, mask)``: for a masked array, its data with the masked entries set to 0 and
    weights that are 0 where it is masked and 1 elsewhere (``None`` when nothing is masked);
    anything else comes back unchanged. A masked array together with ``mask`` is refused: the
    two could disagree about which entries are missing.
    """
    if not isinstance(x, np.ma.MaskedArray):
        return x, mask
    if mask is not None:
        raise ValueError(
            f"{name} is a numpy masked array and mask= is given too; give the missing entries "
            f"one way: as {name}'s mask, or as mask= with a plain array"
        )
    missing = np.ma.getmaskarray(x)
    data = x.filled(0)
    if not missing.any():
        return data, None
    return data, (~missing).astype(data.dtype if data.dtype.kind == "f" else np.float64)


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
        if t.layout != torch.strided:  # COO, CSR, CSC, BSR, BSC: densified where they are
            kind = f"torch sparse ({str(t.layout).removeprefix('torch.')})"
            _check_dense_fits(t.shape, t.dtype.itemsize, t.device, name, kind)
            t = t.to_dense()
    elif _sp is not None and _sp.issparse(x):
        t = torch.from_numpy(sparse_to_dense(x, name))
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
        dtype = _float_dtype(t.dtype)
    if device is None:
        device = t.device
    t = t.to(device=device, dtype=dtype)
    if not _is_blas_friendly(t):
        t = t.contiguous()
    return t


def is_sparse_input(x: Any) -> bool:
    """Whether ``x`` is a scipy sparse matrix (or array) or a torch sparse tensor."""
    if isinstance(x, torch.Tensor):
        return x.layout != torch.strided
    return _sp is not None and _sp.issparse(x)


def to_sparse_matrix(
    x: Any,
    name: str,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> SparseMatrix:
    """A scipy sparse matrix (any format) or a 2-D torch sparse tensor (COO, CSR, CSC, BSR,
    BSC) as a `dnmf._solvers.sparse.SparseMatrix`, never densified: duplicates summed,
    explicit zeros dropped. The dtype rules of `to_tensor` apply (float32/float64 kept,
    integers and booleans become float64); ``device`` defaults to the input's (the CPU for
    scipy). Memory: ``O(nnz + m + n)``."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.ndim != 2 or t.dense_dim() != 0:
            raise ValueError(
                f"{name} is a torch sparse tensor of shape {tuple(t.shape)}; sparse input must "
                f"be one 2-D matrix (m, n): fit a batch one matrix at a time, or pass "
                f"{name}.to_dense()"
            )
        coo = (t if t.layout == torch.sparse_coo else t.to_sparse()).coalesce()
        rows, cols = coo.indices()
        values = coo.values()
        shape = tuple(int(s) for s in t.shape)
    else:
        if x.ndim != 2:
            raise ValueError(f"{name} must be a 2-D sparse matrix, got shape {x.shape}")
        csr = _sp.csr_matrix(x, copy=True)  # ours to sum duplicates and sort in place
        csr.sum_duplicates()  # also sorts the column indices of every row
        csr.eliminate_zeros()
        rows = torch.from_numpy(
            np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
        )
        cols = torch.from_numpy(csr.indices.astype(np.int64))
        values = torch.from_numpy(_real_values(np.asarray(csr.data), name))
        shape = tuple(int(s) for s in csr.shape)
    if values.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {values.dtype}")
    if dtype is None:
        dtype = _float_dtype(values.dtype)
    dev = values.device if device is None else device
    if isinstance(x, torch.Tensor) and bool((values == 0).any()):  # explicit zeros: no work
        keep = values != 0
        rows, cols, values = rows[keep], cols[keep], values[keep]
    return SparseMatrix.from_coo(
        rows.to(dev), cols.to(dev), values.to(device=dev, dtype=dtype), shape
    )


def _real_values(arr: np.ndarray, name: str) -> np.ndarray:
    """Stored values of a scipy matrix that torch takes: real numbers, float16 as float32."""
    if arr.dtype.kind not in "fiub":
        raise TypeError(
            f"{name} must hold real numbers (float32 or float64), got dtype {arr.dtype}"
        )
    if arr.dtype.kind == "f" and arr.dtype.itemsize == 2:
        return arr.astype(np.float32)
    return arr


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32/float64 kept, half precision as float32, anything else float64."""
    if dtype in _FLOAT_DTYPES:
        return dtype
    if dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return torch.float64


def sparse_to_dense(x: Any, name: str) -> np.ndarray:
    """A scipy sparse matrix as a dense numpy array, after checking that it fits in memory.

    For the functions that densify sparse input (`dnmf.select_ranks`, the distributed
    solver): ``m × n`` values, refused with `dnmf._memory.InsufficientMemoryError` when they
    exceed the memory available.
    """
    kind = f"scipy sparse ({x.format})"
    _check_dense_fits(x.shape, np.dtype(x.dtype).itemsize, None, name, kind)
    return np.asarray(x.toarray())


def _check_dense_fits(
    shape: Any, itemsize: int, device: torch.device | None, name: str, kind: str
) -> None:
    dims = tuple(int(s) for s in shape)
    nbytes = int(np.prod(dims, dtype=np.float64)) * itemsize
    check_fits(
        nbytes,
        device,
        f"{name} is a {kind} matrix of shape {dims}: this function densifies it, which",
        "factorize a smaller matrix or a dense part of it, or use dnmf.factorize, "
        "dnmf.solve_h or dnmf.DeepNMF, which keep sparse input sparse",
    )


def _is_blas_friendly(t: torch.Tensor) -> bool:
    """Row- or column-major in the last two dims (matmul takes both without a copy)."""
    if t.ndim < 2:
        return t.is_contiguous()
    s0, s1 = t.stride(-2), t.stride(-1)
    m, n = t.shape[-2], t.shape[-1]
    return (s1 == 1 and s0 >= max(n, 1)) or (s0 == 1 and s1 >= max(m, 1)) or t.is_contiguous()
