"""``dnmf.factorize``: Deep NMF ``V ≈ W1 W2 … Wk H`` with samples as the columns of ``V``."""

from __future__ import annotations

import io
import numbers
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import _validation as val
from ._init import init_layer, init_stack
from ._mu import EPSILON, MUOutcome, Penalties, run_hals_codes, run_mu

try:  # the one piece of scikit-learn dnmf uses: its warning class, so filters written for it work
    from sklearn.exceptions import ConvergenceWarning
except ImportError:  # pragma: no cover

    class ConvergenceWarning(UserWarning):
        """Raised when the iteration budget ends before the convergence test passes."""


FORMAT_VERSION = 1
Array = Any  # numpy.ndarray or torch.Tensor, following the input's kind


@dataclass
class FactorizationResult:
    """Factors and diagnostics of a (deep) NMF.

    ``Ws`` and ``H`` have the kind of the input (numpy arrays for numpy/scipy input, torch
    tensors on the computing device for tensor input). ``loss_history[i]`` is the objective
    (β-divergence + penalties) after ``loss_iters[i]`` joint iterations; for a batch it has one
    column per matrix, and ``n_iter``/``converged`` are arrays with one entry per matrix.
    """

    Ws: list[Array]
    H: Array
    loss_history: np.ndarray
    loss_iters: np.ndarray
    n_iter: int | np.ndarray
    converged: bool | np.ndarray
    beta: float
    ranks: tuple[int, ...]
    pretrain_loss_histories: list[np.ndarray] = field(default_factory=list)

    @property
    def loss(self) -> float | np.ndarray:
        """Final objective (one value per matrix for a batch)."""
        return self.loss_history[-1]

    def W(self) -> Array:
        """The product ``W1 W2 … Wk`` (the dictionary in data space)."""
        out = self.Ws[-1]
        for Wl in reversed(self.Ws[:-1]):
            out = Wl @ out
        return out

    def reconstruct(self) -> Array:
        """``W1 W2 … Wk H``, same kind (numpy/torch) and shape as the input."""
        return self.W() @ self.H

    def save(self, path: str | os.PathLike) -> None:
        """Write everything to one ``.npz`` file, atomically (read it back with ``dnmf.load``)."""
        arrays: dict[str, np.ndarray] = {
            "format_version": np.asarray(FORMAT_VERSION),
            "n_layers": np.asarray(len(self.Ws)),
            "H": _to_numpy(self.H),
            "loss_history": np.asarray(self.loss_history),
            "loss_iters": np.asarray(self.loss_iters),
            "n_iter": np.asarray(self.n_iter),
            "converged": np.asarray(self.converged),
            "beta": np.asarray(self.beta),
            "ranks": np.asarray(self.ranks, dtype=np.int64),
        }
        for l, Wl in enumerate(self.Ws):
            arrays[f"W{l + 1}"] = _to_numpy(Wl)
        for l, h in enumerate(self.pretrain_loss_histories):
            arrays[f"pretrain_loss_{l + 1}"] = np.asarray(h)
        path = os.fspath(path)
        tmp = f"{path}.tmp-{os.getpid()}"
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        with open(tmp, "wb") as fh:
            fh.write(buf.getvalue())
        os.replace(tmp, path)


def load(path: str | os.PathLike) -> FactorizationResult:
    """Read a result written by :meth:`FactorizationResult.save` (numpy arrays)."""
    with np.load(os.fspath(path), allow_pickle=False) as data:
        version = int(data["format_version"])
        if version > FORMAT_VERSION:
            raise ValueError(
                f"{path} has format version {version}; this dnmf reads <= {FORMAT_VERSION}"
            )
        k = int(data["n_layers"])
        n_iter = data["n_iter"]
        converged = data["converged"]
        return FactorizationResult(
            Ws=[data[f"W{l + 1}"] for l in range(k)],
            H=data["H"],
            loss_history=data["loss_history"],
            loss_iters=data["loss_iters"],
            n_iter=int(n_iter) if n_iter.ndim == 0 else n_iter,
            converged=bool(converged) if converged.ndim == 0 else converged,
            beta=float(data["beta"]),
            ranks=tuple(int(r) for r in data["ranks"]),
            pretrain_loss_histories=[
                data[f"pretrain_loss_{l + 1}"]
                for l in range(k)
                if f"pretrain_loss_{l + 1}" in data.files
            ],
        )


def _to_numpy(x: Array) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _out(x: torch.Tensor, kind: str) -> Array:
    return x if kind == "torch" else x.cpu().numpy()


def make_generator(seed: Any) -> torch.Generator:
    """A CPU generator from an int seed (None draws one from torch's global RNG)."""
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)))
    elif isinstance(seed, np.random.RandomState):
        seed = int(seed.randint(np.iinfo(np.int32).max))
    elif isinstance(seed, np.random.Generator):
        seed = int(seed.integers(2**62))
    elif isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
    return torch.Generator().manual_seed(int(seed))


def _check_common(beta, max_iter, tol, eps, check_every):
    beta = val.parse_beta(beta)
    max_iter = val.check_positive_int(max_iter, "max_iter")
    tol = val.check_nonneg_float(tol, "tol")
    eps = val.check_nonneg_float(eps, "eps")
    if eps == 0:
        raise ValueError("eps must be a float > 0 (it floors divisions), got 0")
    check_every = val.check_positive_int(check_every, "check_every")
    return beta, max_iter, tol, eps, check_every


def _warn_unconverged(out: MUOutcome, max_iter: int, tol: float, what: str) -> None:
    if tol <= 0 or out.stopped_by_callback or bool(np.all(out.converged)):
        return
    n_bad = int(np.sum(~np.asarray(out.converged)))
    extra = (
        f" for {n_bad} of {np.asarray(out.converged).size} matrices"
        if np.ndim(out.converged)
        else ""
    )
    warnings.warn(
        f"{what}: maximum number of iterations {max_iter} reached{extra} before the relative "
        f"loss decrease fell below tol={tol:g}. Increase max_iter to improve convergence.",
        ConvergenceWarning,
        stacklevel=3,
    )


def pretrain_layers(
    V: torch.Tensor,
    ranks: Sequence[int],
    init_fn: Callable[[int, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]],
    *,
    beta: float,
    max_iter: int,
    tol: float,
    penalties: Penalties,
    eps: float,
    check_every: int,
    mask: torch.Tensor | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor, list[np.ndarray]]:
    """Layer-wise pretraining ``V ≈ W1 H1``, ``H1 ≈ W2 H2``, …: returns ``(Ws, H, histories)``.

    ``init_fn(l, X, r)`` initialises layer ``l`` on its input ``X``; layer ``l`` gets the
    penalties of ``Wl`` and of ``H``. ``mask`` applies to the first layer only, and ``reduce``
    (column shards, see :func:`run_mu`) to every layer.
    """
    k = len(ranks)
    Ws, hist, X, Mk = [], [], V, mask
    for l, r in enumerate(ranks):
        W_l, H_l = init_fn(l, X, r)
        out = run_mu(
            X,
            [W_l],
            H_l,
            beta=beta,
            mask=Mk,
            max_iter=max_iter,
            tol=tol,
            penalties=Penalties(
                [penalties.l1[l], penalties.l1[k]], [penalties.l2[l], penalties.l2[k]]
            ),
            eps=eps,
            check_every=check_every,
            reduce=reduce,
        )
        hist.append(out.loss_history)
        Ws.append(W_l)
        # β ≤ 0 cannot fit zeros: the next layer sees the codes floored at eps.
        X, Mk = (H_l.clamp_min(eps) if beta <= 0 else H_l), None
    return Ws, H_l, hist


def factorize(
    V: Any,
    ranks: int | Sequence[int],
    *,
    beta: float | str = 2,
    max_iter: int = 200,
    tol: float = 1e-4,
    init: str = "nndsvda",
    pretrain: bool | int = True,
    mask: Any = None,
    l1: float | Sequence[float] = 0.0,
    l2: float | Sequence[float] = 0.0,
    eps: float = EPSILON,
    seed: int | None = None,
    device: Any = None,
    dtype: Any = None,
    verbose: bool = False,
    callback: Callable[[int, Any], Any] | None = None,
    Ws: Sequence[Any] | None = None,
    H: Any = None,
    check_every: int = 10,
    loss_every: int | None = None,
) -> FactorizationResult:
    """Deep NMF ``V ≈ W1 W2 … Wk H`` by multiplicative updates; samples are the columns of ``V``.

    Parameters
    ----------
    V : array (m, n) or (B, m, n)
        Nonnegative data, one sample per column (e.g. one flattened image per column). numpy
        arrays, torch tensors and scipy sparse matrices (densified) are accepted; float32 and
        float64 are kept, other numbers become float64. A 3-D input factorizes ``B``
        independent matrices at once; each converges on its own.
    ranks : int or sequence of int
        Inner ranks ``[r1, …, rk]``: ``W1`` is ``m × r1``, ``Wl`` is ``r(l-1) × rl`` and ``H`` is
        ``rk × n``. One rank is plain NMF.
    beta : float or {'frobenius', 'kullback-leibler', 'itakura-saito'}
        β of the β-divergence: 2 is ½‖V − WH‖², 1 Kullback–Leibler, 0 Itakura–Saito (β ≤ 0
        needs V > 0 wherever observed).
    max_iter : int
        Joint iterations (one iteration updates W1, …, Wk, then H).
    tol : float
        Converged when the loss fell by less than ``tol`` (relative) since the previous check,
        made every ``check_every`` iterations. ``tol=0`` runs exactly ``max_iter`` iterations.
        Reaching ``max_iter`` with ``tol > 0`` raises scikit-learn's ``ConvergenceWarning``.
    init : {'nndsvda', 'nndsvd', 'nndsvdar', 'random', 'custom'}
        Initialization of every layer (layer ``l`` is initialized from layer ``l-1``'s codes).
        'custom' takes ``Ws`` and ``H`` (copied, never modified) and skips pretraining.
    pretrain : bool or int
        Layer-wise pretraining (``V ≈ W1 H1``, ``H1 ≈ W2 H2``, …) before joint fine-tuning;
        an int sets the iterations per layer (``True``: ``max_iter``). Ignored for one layer.
    mask : array of V's shape, optional
        Weights in [0, 1]; 0 marks a missing entry, ignored by the loss and the updates.
    l1, l2 : float or sequence of k + 1 floats
        Penalty ``l1·ΣF + ½·l2·‖F‖²`` on each factor; a float applies to every factor, a
        sequence gives one weight per factor in the order (W1, …, Wk, H).
    eps : float
        Floor for Λ where it is divided by or raised to a negative power (β < 2).
    seed : int, optional
        Seeds initialization (the updates themselves are deterministic).
    device, dtype : optional
        Where and in which precision to compute; default: the input's device and float dtype.
    verbose : bool
        Print the loss at every convergence check.
    callback : callable, optional
        ``callback(n_iter, loss)`` after each recorded loss of the joint phase; return ``True``
        to stop early.
    Ws, H : arrays, optional
        Initial factors for ``init='custom'``.
    check_every, loss_every : int
        Convergence-check period, and loss-recording period (default: every iteration for β = 2
        without a mask, where the loss is free; every check otherwise).

    Returns
    -------
    FactorizationResult
    """
    dt = val.parse_dtype(dtype)
    dev = val.parse_device(device)
    kind = val.as_kind(V)
    Vt = val.to_tensor(V, "V", dtype=dt, device=dev)
    val.check_matrix(Vt, "V")
    ranks_ = val.parse_ranks(ranks)
    beta_, max_iter, tol, eps, check_every = _check_common(beta, max_iter, tol, eps, check_every)
    if loss_every is not None:
        loss_every = val.check_positive_int(loss_every, "loss_every")
    if not isinstance(init, str):
        raise ValueError(f"init must be one of {val.INITS}, got {init!r}")
    val.check_init(init, ranks_, tuple(Vt.shape))
    val.check_pretrain(pretrain)
    M = val.check_mask(mask, Vt) if mask is not None else None
    val.check_beta_zeros(Vt, beta_, M)
    k = len(ranks_)
    pen = Penalties(val.parse_penalty(l1, "l1", k + 1), val.parse_penalty(l2, "l2", k + 1))
    if init != "custom" and (Ws is not None or H is not None):
        warnings.warn(
            "Ws and H are only used with init='custom'; ignoring them.",
            RuntimeWarning,
            stacklevel=2,
        )
    gen = make_generator(seed)

    pre_hist: list[np.ndarray] = []
    with torch.no_grad():
        if init == "custom":
            Ws_, H_ = val.check_custom_factors(Ws, H, Vt, ranks_)
        elif pretrain is not False and k > 1:
            Ws_, H_, pre_hist = pretrain_layers(
                Vt,
                ranks_,
                lambda l, X, r: init_layer(X, r, init, gen),
                beta=beta_,
                mask=M,
                max_iter=max_iter if pretrain is True else int(pretrain),
                tol=tol,
                penalties=pen,
                eps=eps,
                check_every=check_every,
            )
        else:
            Ws_, H_ = init_stack(Vt, ranks_, init, gen)

        out = run_mu(
            Vt,
            Ws_,
            H_,
            beta=beta_,
            mask=M,
            max_iter=max_iter,
            tol=tol,
            penalties=pen,
            eps=eps,
            check_every=check_every,
            loss_every=loss_every,
            callback=callback,
            verbose=verbose,
        )
    _warn_unconverged(out, max_iter, tol, "dnmf.factorize")
    return FactorizationResult(
        Ws=[_out(W, kind) for W in Ws_],
        H=_out(H_, kind),
        loss_history=out.loss_history,
        loss_iters=out.loss_iters,
        n_iter=int(out.n_iter) if out.n_iter.ndim == 0 else out.n_iter,
        converged=bool(out.converged) if out.converged.ndim == 0 else out.converged,
        beta=beta_,
        ranks=tuple(ranks_),
        pretrain_loss_histories=pre_hist,
    )


def solve_h(
    V: Any,
    Ws: Sequence[Any],
    *,
    beta: float | str = 2,
    H: Any = None,
    mask: Any = None,
    max_iter: int = 200,
    tol: float = 1e-4,
    l1: float = 0.0,
    l2: float = 0.0,
    eps: float = EPSILON,
    device: Any = None,
    dtype: Any = None,
    check_every: int = 10,
    verbose: bool = False,
    warn: bool = True,
    solver: str = "mu",
) -> FactorizationResult:
    """Codes ``H ≥ 0`` for new columns of ``V`` with the dictionary ``W1…Wk`` held fixed.

    ``V`` is ``(m, n)`` or ``(B, m, n)`` (samples as columns), ``Ws`` the fitted factors (a
    batch may share 2-D factors, which are then broadcast). ``H`` is an optional starting point;
    by default a constant matched to the data's scale. ``l1``/``l2`` penalize ``H`` only.
    ``solver='mu'`` runs multiplicative updates (any β, masks); ``'hals'`` solves the convex
    β = 2 subproblem by exact row-wise coordinate descent (no mask), which converges much
    faster on ill-conditioned dictionaries; ``'auto'`` picks HALS where it applies.
    """
    dt = val.parse_dtype(dtype)
    dev = val.parse_device(device)
    kind = val.as_kind(V)
    Vt = val.to_tensor(V, "V", dtype=dt, device=dev)
    val.check_matrix(Vt, "V")
    beta_, max_iter, tol, eps, check_every = _check_common(beta, max_iter, tol, eps, check_every)
    M = val.check_mask(mask, Vt) if mask is not None else None
    val.check_beta_zeros(Vt, beta_, M)
    if solver not in ("mu", "hals", "auto"):
        raise ValueError(f"solver must be one of ('mu', 'hals', 'auto'), got {solver!r}")
    if solver == "hals" and (beta_ != 2 or M is not None):
        raise ValueError("solver='hals' solves beta=2 without a mask; use solver='mu' (or 'auto')")
    use_hals = solver == "hals" or (solver == "auto" and beta_ == 2 and M is None)
    if isinstance(Ws, (np.ndarray, torch.Tensor)):
        Ws = [Ws]
    Wt = [val.to_tensor(W, f"Ws[{l}]", dtype=Vt.dtype, device=Vt.device) for l, W in enumerate(Ws)]
    if not Wt:
        raise ValueError("Ws must hold at least one factor")
    dims = [Vt.shape[-2]] + [W.shape[-1] for W in Wt]
    for l, W in enumerate(Wt):
        if W.ndim not in (2, Vt.ndim) or W.shape[-2] != dims[l] or float(W.min()) < 0:
            raise ValueError(
                f"Ws[{l}] must be nonnegative with {dims[l]} rows, got shape {tuple(W.shape)}"
            )
    if Vt.ndim == 3:  # broadcast shared factors over the batch (expanded views, no copies)
        Wt = [W.expand(Vt.shape[0], *W.shape[-2:]) if W.ndim == 2 else W for W in Wt]
    rk = dims[-1]
    if H is None:
        P = Wt[0]
        for W in Wt[1:]:
            P = P @ W
        if M is None:
            vmean = Vt.mean(dim=(-2, -1), keepdim=True)
        else:  # the mean of the observed entries only: masked values must not matter
            vmean = (M * Vt).sum(dim=(-2, -1), keepdim=True) / M.sum(dim=(-2, -1), keepdim=True)
        # A constant start whose reconstruction has the data's mean: MU keeps the scale it starts at
        # only up to a slow drift, so starting at the right one saves iterations.
        pmean = P.sum(dim=-1).mean(dim=-1, keepdim=True).unsqueeze(-1)
        scale = vmean / pmean.clamp_min(eps)
        Ht = scale.expand(*Vt.shape[:-2], rk, Vt.shape[-1]).contiguous()
    else:
        Ht = val.to_tensor(H, "H", dtype=Vt.dtype, device=Vt.device).clone()
        want = (*Vt.shape[:-2], rk, Vt.shape[-1])
        if tuple(Ht.shape) != want or float(Ht.min()) < 0:
            raise ValueError(f"H must be nonnegative with shape {want}, got {tuple(Ht.shape)}")
    l1_ = val.check_nonneg_float(l1, "l1")
    l2_ = val.check_nonneg_float(l2, "l2")
    k = len(Wt)
    pen = Penalties([0.0] * k + [l1_], [0.0] * k + [l2_])
    with torch.no_grad():
        if use_hals:
            out = run_hals_codes(
                Vt,
                Wt,
                Ht,
                max_iter=max_iter,
                tol=tol,
                l1=l1_,
                l2=l2_,
                check_every=check_every,
                verbose=verbose,
            )
        else:
            out = run_mu(
                Vt,
                Wt,
                Ht,
                beta=beta_,
                mask=M,
                max_iter=max_iter,
                tol=tol,
                penalties=pen,
                eps=eps,
                update=[False] * k + [True],
                check_every=check_every,
                verbose=verbose,
            )
    if warn:
        _warn_unconverged(out, max_iter, tol, "dnmf.solve_h")
    return FactorizationResult(
        Ws=[_out(W, kind) for W in Wt],
        H=_out(Ht, kind),
        loss_history=out.loss_history,
        loss_iters=out.loss_iters,
        n_iter=int(out.n_iter) if out.n_iter.ndim == 0 else out.n_iter,
        converged=bool(out.converged) if out.converged.ndim == 0 else out.converged,
        beta=beta_,
        ranks=tuple(int(W.shape[-1]) for W in Wt),
    )
