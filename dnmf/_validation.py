"""Input checking for `dnmf`, in one place.

Every public entry point funnels its arguments through these helpers, so each error names the
parameter, what was given and what is allowed. Nothing here copies ``V`` unless it has to
(a dtype or device change, a non-strided layout). Sparse input becomes a
`dnmf._solvers.sparse.SparseMatrix` where the entry point keeps it sparse (`check_data` with
``sparse=True``: `dnmf.factorize`, `dnmf.solve_h`, `dnmf.DeepNMF`), else it is densified.
Conversion helpers (``to_tensor``, ``parse_device``, ...) live in ``dnmf._convert`` and are
re-exported here.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any, Literal, overload

import numpy as np
import torch

from ._convert import as_kind as as_kind  # re-exported: callers use val.<name>
from ._convert import as_output as as_output
from ._convert import is_sparse_input as is_sparse_input
from ._convert import parse_device as parse_device
from ._convert import parse_dtype as parse_dtype
from ._convert import sparse_to_dense as sparse_to_dense
from ._convert import split_masked, to_sparse_matrix, to_tensor
from ._convert import to_numpy as to_numpy
from ._memory import check_fits, factor_bytes
from ._solvers import FitSettings, resolve_solver
from ._solvers.loss import Penalties
from ._solvers.sparse import SparseMatrix

#: What a tensor-or-sparse ``V`` is once checked: a dense tensor, or a `SparseMatrix` for the
#: entry points that keep sparse input sparse (`check_data(sparse=True)`).
Data = torch.Tensor | SparseMatrix
#: The β-divergences fitted on a sparse ``V`` (their loss has a closed form over the zeros).
SPARSE_BETAS = (2.0, 1.0)


def dense_hint(name: str = "V") -> str:
    """How to fit what a sparse ``name`` does not support yet."""
    return f"pass a dense array instead ({name}.toarray() for scipy, {name}.to_dense() for torch)"


class InvalidParameterError(ValueError, TypeError):
    """A parameter of the wrong kind or value (as scikit-learn's of the same name, it is both,
    so that callers catching either see it)."""


BETA_NAMES = {"frobenius": 2.0, "kullback-leibler": 1.0, "itakura-saito": 0.0}
INITS = ("nndsvd", "nndsvda", "nndsvdar", "random", "custom")


def check_matrix(V: Data, name: str = "V", *, allow_batch: bool = True) -> None:
    """Shape, finiteness and sign checks for a data matrix (or a batch of them; a sparse
    matrix: its stored values)."""
    dims = "2-D (m, n) or 3-D (batch, m, n)" if allow_batch else "2-D (m, n)"
    if V.ndim not in ((2, 3) if allow_batch else (2,)):
        raise ValueError(f"{name} must be {dims}; got ndim={V.ndim} with shape {tuple(V.shape)}")
    if V.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(V.shape)}; every dimension must be >= 1")
    if isinstance(V, SparseMatrix):
        V = V.values  # the zeros are fine
        if V.numel() == 0:
            return
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
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not np.isfinite(float(beta)):
        raise ValueError(
            f"{name} must be a real number or one of {sorted(BETA_NAMES)}, got {beta!r}"
        )
    return float(beta)


def check_sparse_beta(beta: float, name: str = "V", beta_name: str = "beta") -> None:
    """A sparse ``name`` is fitted for β = 2 or 1 only (`SPARSE_BETAS`)."""
    if beta in SPARSE_BETAS:
        return
    raise ValueError(
        f"{beta_name}={beta:g} is not supported with a sparse {name}: sparse data is fitted "
        "with beta=2 (Frobenius) or beta=1 (Kullback-Leibler); for another beta, "
        + dense_hint(name)
    )


def _sparse_mask_message(name: str) -> str:
    return (
        f"mask= is not supported with a sparse {name}; to fit with missing entries, "
        + dense_hint(name)
    )


def check_sparse_options(V: Any, mask: Any, beta: Any, name: str = "V") -> None:
    """What a sparse ``name`` cannot take (a mask, a β other than 2 and 1), refused before any
    work: ``ranks='auto'`` would otherwise run its whole search on a dense copy first."""
    if not is_sparse_input(V):
        return
    if mask is not None:
        raise ValueError(_sparse_mask_message(name))
    check_sparse_beta(parse_beta(beta), name)


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


def check_init_name(init: Any) -> str:
    """``init`` is one of `INITS`."""
    if not isinstance(init, str) or init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return init


def check_init(
    init: Any, ranks: list[int], shape: tuple[int, ...], *, n_sampled: int | None = None
) -> None:
    """Validate the init name and that nndsvd* can produce every requested rank.

    NNDSVD of layer ``l`` takes the leading singular vectors of its input (``V`` for the first
    layer, the previous layer's ``r(l-1) × n`` codes after it), so ``ranks[l]`` may not exceed
    either side of that input. ``n_sampled`` is for an SVD of only that many of the ``n``
    columns (``dnmf.distributed``'s ``init_sample``), which then bounds every rank.
    """
    check_init_name(init)
    if not init.startswith("nndsvd"):
        return
    m, n = shape[-2], shape[-1]
    cols = n if n_sampled is None else min(n_sampled, n)
    for l, r in enumerate(ranks):
        rows = m if l == 0 else ranks[l - 1]
        if r <= min(rows, cols):
            continue
        if cols < n:
            raise ValueError(
                f"init={init!r} needs ranks[{l}] <= min({rows}, sampled columns {cols}) = "
                f"{min(rows, cols)}, got {r}; lower the rank, raise init_sample, or use "
                "init='random'"
            )
        if l == 0:
            raise ValueError(
                f"init={init!r} needs the first rank <= min(m, n) = {min(m, n)} (V is {m} x {n}), "
                f"got ranks[0]={r}; lower the rank or use init='random'"
            )
        raise ValueError(
            f"init={init!r} initializes layer {l + 1} from the previous layer's {rows} x {n} "
            f"codes and needs ranks[{l}] <= {min(rows, n)}, got {r}; use init='random' for "
            "non-decreasing ranks"
        )


def check_factors_fit(V: Data, ranks: list[int], *, gram: bool, batch: int | None = None) -> None:
    """Refuse ranks whose factors would not fit in the memory of ``V``'s device, before any is
    allocated (`dnmf._memory.factor_bytes`; ``gram``: the solver keeps r × r Gram matrices;
    ``batch``: fits at once, default V's batch)."""
    if batch is None:
        batch = int(V.shape[0]) if V.ndim == 3 else 1
    m, n = int(V.shape[-2]), int(V.shape[-1])
    nbytes = factor_bytes(batch, m, n, ranks, V.element_size(), gram=gram)
    dtype = str(V.dtype).removeprefix("torch.")
    check_fits(
        nbytes,
        V.device,
        f"ranks {ranks} on V of shape {tuple(V.shape)} (the factors, their update buffers and "
        f"{'Gram matrices' if gram else 'work buffers'} in {dtype})",
        f"lower the ranks (min(m, n) is {min(m, n)}; ranks above it are overcomplete)",
    )


def warn_unused_factors(init: str, Ws: Any, H: Any) -> None:
    """``RuntimeWarning`` (at the caller of the caller) for ``Ws``/``H`` without 'custom'."""
    if init != "custom" and (Ws is not None or H is not None):
        warnings.warn(
            "Ws and H are only used with init='custom'; ignoring them.",
            RuntimeWarning,
            stacklevel=3,
        )


#: Seeds are ints from 0 to ``SEED_MAX``: what ``torch.Generator.manual_seed`` takes. (numpy's
#: legacy ``RandomState`` stops at 2**32 - 1, but `dnmf.select_ranks` hands its fits seeds up to
#: 2**62, which ``factorize`` must accept to reproduce them.)
SEED_MAX = 2**64 - 1


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """``seed`` is None or an int from 0 to `SEED_MAX` (numpy integers included)."""
    if seed is None:
        return None
    if (
        isinstance(seed, (bool, np.bool_))
        or not isinstance(seed, numbers.Integral)
        or not 0 <= int(seed) <= SEED_MAX
    ):
        raise ValueError(f"{name} must be None or an int from 0 to 2**64 - 1, got {seed!r}")
    return int(seed)


def check_callback(callback: Any) -> None:
    """``callback`` is None or a callable ``callback(n_iter, loss)`` (checked before any work)."""
    if callback is not None and not callable(callback):
        raise InvalidParameterError(
            f"callback must be None or a callable callback(n_iter, loss), got {callback!r} "
            f"of type {type(callback).__name__}"
        )


def check_solver_args(
    beta: Any, max_iter: Any, tol: Any, eps: Any, check_every: Any
) -> tuple[float, int, float, float, int]:
    """The arguments every solver takes: ``(beta, max_iter, tol, eps, check_every)``."""
    beta = parse_beta(beta)
    max_iter = check_positive_int(max_iter, "max_iter")
    tol = check_nonneg_float(tol, "tol")
    eps = check_nonneg_float(eps, "eps")
    if eps == 0:
        raise ValueError("eps must be a float > 0 (it floors divisions), got 0")
    check_every = check_positive_int(check_every, "check_every")
    return beta, max_iter, tol, eps, check_every


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


def parse_penalties(l1: Any, l2: Any, n_factors: int) -> Penalties:
    """``l1`` and ``l2`` (each a float or one value per factor) as `Penalties`."""
    return Penalties(parse_penalty(l1, "l1", n_factors), parse_penalty(l2, "l2", n_factors))


def check_fit_settings(
    V: Data,
    mask: torch.Tensor | None,
    ranks: list[int],
    *,
    beta: Any,
    max_iter: Any,
    tol: Any,
    eps: Any,
    check_every: Any,
    loss_every: Any,
    init: Any,
    pretrain: Any,
    solver: Any,
    l1: Any,
    l2: Any,
) -> FitSettings:
    """The settings of a fit of ``ranks`` to the checked ``V`` (and ``mask``), as given to
    `dnmf.factorize`: every keyword checked (against the data where it matters: the ranks
    NNDSVD can produce, zeros for β ≤ 0, the memory the factors take), ``solver`` resolved
    (`dnmf._solvers.resolve_solver`) and the penalties parsed, as one `FitSettings`."""
    beta_, max_iter_, tol_, eps_, check_every_ = check_solver_args(
        beta, max_iter, tol, eps, check_every
    )
    if loss_every is not None:
        loss_every = check_positive_int(loss_every, "loss_every")
    check_init(init, ranks, tuple(V.shape))
    pretrain_ = check_pretrain(pretrain)
    if isinstance(V, SparseMatrix):
        check_sparse_beta(beta_)
    else:
        check_beta_zeros(V, beta_, mask)
    solver_ = resolve_solver(solver, beta_, mask, len(ranks))
    # No m × n work buffers: the β = 2 solvers without a mask, and every sparse fit.
    gram = solver_ != "mu" or (beta_ == 2 and mask is None) or isinstance(V, SparseMatrix)
    check_factors_fit(V, ranks, gram=gram)
    return FitSettings(
        beta=beta_,
        max_iter=max_iter_,
        tol=tol_,
        eps=eps_,
        check_every=check_every_,
        loss_every=loss_every,
        penalties=parse_penalties(l1, l2, len(ranks) + 1),
        solver=solver_,
        init=init,
        pretrain=pretrain_,
    )


@overload
def check_data(
    V: Any,
    mask: Any,
    *,
    dtype: torch.dtype | None,
    device: torch.device | None,
    name: str = ...,
    allow_batch: bool = ...,
    sparse: Literal[False] = ...,
) -> tuple[torch.Tensor, torch.Tensor | None]: ...


@overload
def check_data(
    V: Any,
    mask: Any,
    *,
    dtype: torch.dtype | None,
    device: torch.device | None,
    name: str = ...,
    allow_batch: bool = ...,
    sparse: bool,
) -> tuple[Data, torch.Tensor | None]: ...


def check_data(
    V: Any,
    mask: Any,
    *,
    dtype: torch.dtype | None,
    device: torch.device | None,
    name: str = "V",
    allow_batch: bool = True,
    sparse: bool = False,
) -> tuple[Data, torch.Tensor | None]:
    """``V`` as a checked tensor and its mask (``None`` without one).

    A numpy masked array's mask becomes the mask (masked entries: weight 0); giving both a
    masked array and ``mask`` is an error (`dnmf._convert.split_masked`). With ``sparse``, a
    scipy sparse matrix or a torch sparse tensor becomes a `SparseMatrix` (never densified;
    it takes no mask); without it, it is densified (`dnmf._convert.to_tensor`).
    """
    V, mask = split_masked(V, mask, name)
    if sparse and is_sparse_input(V):
        if mask is not None:
            raise ValueError(_sparse_mask_message(name))
        Vs = to_sparse_matrix(V, name, dtype=dtype, device=device)
        check_matrix(Vs, name, allow_batch=allow_batch)
        return Vs, None
    Vt = to_tensor(V, name, dtype=dtype, device=device)
    check_matrix(Vt, name, allow_batch=allow_batch)
    return Vt, (check_mask(mask, Vt) if mask is not None else None)


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
    Ws: Any, H: Any, V: Data, ranks: list[int]
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
        check_factor(t, f"Ws[{l}]")
        out.append(t.contiguous())
    Ht = to_tensor(H, "H", dtype=V.dtype, device=V.device).clone()
    want = (*batch, ranks[-1], V.shape[-1])
    if tuple(Ht.shape) != want:
        raise ValueError(f"H must have shape {want}, got {tuple(Ht.shape)}")
    check_factor(Ht, "H")
    return out, Ht.contiguous()


def check_factor(t: torch.Tensor, name: str) -> None:
    """A factor is finite and nonnegative."""
    tmin, tmax = (float(x) for x in torch.aminmax(t))
    if not (np.isfinite(tmin) and np.isfinite(tmax)):
        raise ValueError(f"{name} contains NaN or infinity")
    if tmin < 0:
        raise ValueError(
            f"{name} must be nonnegative: found {int((t < 0).sum())} negative entries "
            f"(minimum {tmin:.6g})"
        )


def check_fixed_factors(Ws: Any, V: Data) -> list[torch.Tensor]:
    """The dictionary ``W1 … Wk`` of `dnmf.solve_h` on V's dtype and device (not copied
    when already there); 2-D factors of a batch are broadcast over it (expanded views)."""
    if isinstance(Ws, (np.ndarray, torch.Tensor)):
        Ws = [Ws]
    Wt = [to_tensor(W, f"Ws[{l}]", dtype=V.dtype, device=V.device) for l, W in enumerate(Ws)]
    if not Wt:
        raise ValueError("Ws must hold at least one factor")
    dims = [V.shape[-2]] + [W.shape[-1] for W in Wt]
    for l, W in enumerate(Wt):
        if W.ndim not in (2, V.ndim) or W.shape[-2] != dims[l] or float(W.min()) < 0:
            raise ValueError(
                f"Ws[{l}] must be nonnegative with {dims[l]} rows, got shape {tuple(W.shape)}"
            )
        check_factor(W, f"Ws[{l}]")
    if V.ndim == 3:  # broadcast shared factors over the batch (expanded views, no copies)
        Wt = [W.expand(V.shape[0], *W.shape[-2:]) if W.ndim == 2 else W for W in Wt]
    return Wt


def check_start_codes(H: Any, V: Data, rk: int) -> torch.Tensor:
    """A copy of the user's starting codes ``H`` (``rk × n`` per matrix), checked."""
    Ht = to_tensor(H, "H", dtype=V.dtype, device=V.device).clone()
    want = (*V.shape[:-2], rk, V.shape[-1])
    if tuple(Ht.shape) != want or float(Ht.min()) < 0:
        raise ValueError(f"H must be nonnegative with shape {want}, got {tuple(Ht.shape)}")
    check_factor(Ht, "H")
    return Ht


def check_pretrain(pretrain: Any) -> bool | int:
    """``pretrain`` (a bool or an int >= 1: iterations per layer, numpy's included) as a Python
    ``bool`` or ``int``: what every later test of it (``pretrain is True``, ``is not False``)
    takes, so ``np.True_`` pretrains ``max_iter`` iterations and ``np.False_`` none."""
    if isinstance(pretrain, (bool, np.bool_)):
        return bool(pretrain)
    if not isinstance(pretrain, numbers.Integral) or pretrain < 1:
        raise ValueError(
            f"pretrain must be a bool or an int >= 1 (iterations per layer), got {pretrain!r}"
        )
    return int(pretrain)


def check_positive_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    lo = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


def check_nonneg_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (float(value) >= 0):
        raise ValueError(f"{name} must be a float >= 0, got {value!r}")
    return float(value)
