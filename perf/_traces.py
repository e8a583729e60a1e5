"""Loss-versus-time traces of one fit of each library, for ``perf.time_to_target``.

Every fit is the library's public call with its defaults (except ``tol``, and a budget large
enough to reach the target), and is stopped once its loss reaches the target or its time cap.
The clock starts before the call (validation and initialisation count) and is paused while
the trace's own loss evaluation runs:

* scikit-learn ``NMF`` (``cd`` and ``mu``) and torchnmf: their per-iteration update functions
  are wrapped for the duration of the call, and after each iteration the exact loss of the
  current factors is computed in float64 with the clock paused;
* ``MiniBatchNMF``: the same after every pass over the samples (its running ``W`` and ``H``
  are the model it returns);
* dnmf: its own loss, which every β = 2 solver computes each iteration anyway, through
  ``callback`` (no pause needed); the exact loss of the final factors is kept next to it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.decomposition import NMF, MiniBatchNMF
from sklearn.decomposition import _nmf as skn

import dnmf


def exact_loss(V: Any, W: np.ndarray, H: np.ndarray) -> float:
    """½‖V − W H‖² in float64 (dense by blocks of rows; sparse from its nonzeros and Grams)."""
    W, H = np.asarray(W, dtype=np.float64), np.asarray(H, dtype=np.float64)
    if sp.issparse(V):
        V = V.tocsr()
        cross = 0.0
        for i in range(0, V.shape[0], 1024):
            blk = V[i : i + 1024]
            cross += float(blk.multiply(W[i : i + 1024] @ H).sum())
        vv = float(V.data.astype(np.float64) @ V.data.astype(np.float64))
        return 0.5 * max(vv - 2 * cross + float(np.sum((W.T @ W) * (H @ H.T))), 0.0)
    total = 0.0
    for i in range(0, V.shape[0], 512):
        R = np.asarray(V[i : i + 512], dtype=np.float64) - W[i : i + 512] @ H
        total += float(np.einsum("ij,ij->", R, R))
    return 0.5 * total


def sklearn_fits(Xs: Any, rank: int, random_state: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(W, H)`` of scikit-learn's default ``NMF(rank)`` on each matrix of ``Xs``, in a loop
    (warnings silenced: most of these small fits end at ``max_iter``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = []
        for X in Xs:
            est = NMF(n_components=rank, random_state=random_state)
            fits.append((est.fit_transform(X), est.components_))
    return fits


def exact_losses(Xs: Any, fits: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """`exact_loss` of each matrix's ``(W, H)``."""
    return np.array([exact_loss(X, W, H) for X, (W, H) in zip(Xs, fits)])


class Stop(Exception):
    """Raised from inside a wrapped update to end a fit at its target or time cap."""


@dataclass
class Trace:
    """(seconds since the call, iteration, loss) of every recorded iteration of one fit."""

    seconds: list[float] = field(default_factory=list)
    iters: list[int] = field(default_factory=list)
    losses: list[Any] = field(default_factory=list)  # floats, or per-matrix arrays
    stop: str = "budget"  # 'target', 'cap' or 'budget' (the fit ended by itself)
    extra: dict = field(default_factory=dict)


class Recorder:
    """A trace under construction, and the decision to stop it."""

    def __init__(self, target: Any, cap_s: float, offset_s: float = 0.0) -> None:
        """``offset_s``: seconds spent before the clock starts that count as the fit's (a
        start computed outside the library)."""
        self.target = np.asarray(target, dtype=np.float64)
        self.cap_s = cap_s
        self.offset_s = offset_s
        self.trace = Trace()
        self.paused = 0.0
        self.t0 = time.perf_counter()

    def start(self) -> None:
        """Start the clock (called right before the library's fit)."""
        self.paused = 0.0
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0 - self.paused + self.offset_s

    def point(self, it: int, loss: Any | Callable[[], Any]) -> bool:
        """Record iteration ``it`` (``loss`` may be a function, evaluated with the clock
        paused); returns whether the fit should stop."""
        now = self.elapsed()
        if callable(loss):
            t = time.perf_counter()
            loss = loss()
            self.paused += time.perf_counter() - t
        loss = np.asarray(loss, dtype=np.float64)
        self.trace.seconds.append(now)
        self.trace.iters.append(int(it))
        self.trace.losses.append(loss.tolist())
        if bool(np.all(loss <= self.target)):
            self.trace.stop = "target"
        elif now > self.cap_s:
            self.trace.stop = "cap"
        else:
            return False
        return True


@contextmanager
def _patched(module: Any, name: str, wrapper_factory: Callable[[Any], Any]):
    original = getattr(module, name)
    setattr(module, name, wrapper_factory(original))
    try:
        yield
    finally:
        setattr(module, name, original)


def sklearn_nmf(X: Any, rank: int, rec: Recorder, solver: str = "cd") -> Trace:
    """scikit-learn's ``NMF(rank, solver=solver)`` (nndsvda, its default init), every
    iteration traced."""
    count = [0]
    if solver == "cd":  # W, then H: two calls per iteration; the second has (Xᵀ, Hᵀ, W)
        name = "_update_coordinate_descent"

        def factory(orig):
            def wrapped(Xa, A, B, *args, **kw):
                out = orig(Xa, A, B, *args, **kw)
                count[0] += 1
                if count[0] % 2 == 0 and rec.point(count[0] // 2, lambda: exact_loss(X, B, A.T)):
                    raise Stop
                return out

            return wrapped
    else:  # one H update per iteration, after W's: (X, W, H, ...) -> new H
        name = "_multiplicative_update_h"

        def factory(orig):
            def wrapped(Xa, W, H, *args, **kw):
                Hn = orig(Xa, W, H, *args, **kw)
                count[0] += 1
                if rec.point(count[0], lambda: exact_loss(X, W, Hn)):
                    raise Stop
                return Hn

            return wrapped

    est = NMF(n_components=rank, solver=solver, random_state=0, max_iter=10**7, tol=0)
    with _patched(skn, name, factory):
        return _fit_until_stop(est, X, rec)


def _fit_until_stop(est: Any, X: Any, rec: Recorder) -> Trace:
    """``est.fit_transform(X)`` from the recorder's start, warnings silenced, until it ends or
    the recorder stops it (its traced step raises `Stop`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec.start()
        try:
            est.fit_transform(X)
        except Stop:
            pass
    return rec.trace


def sklearn_minibatch(X: Any, rank: int, rec: Recorder) -> Trace:
    """scikit-learn's ``MiniBatchNMF(rank)`` (its defaults; no early stopping), traced after
    every pass over the samples."""
    est = MiniBatchNMF(
        n_components=rank, random_state=0, max_iter=10**7, tol=0, max_no_improvement=None
    )
    steps_per_pass = int(np.ceil(X.shape[0] / est.batch_size))
    count = [0]
    orig = est._minibatch_step

    def step(Xb, Wb, H, update_H):
        out = orig(Xb, Wb, H, update_H)
        count[0] += 1
        W = Wb.base if Wb.base is not None else Wb  # the full running W (batches are slices)
        if count[0] % steps_per_pass == 0 and W.shape[0] == X.shape[0]:
            if rec.point(count[0] // steps_per_pass, lambda: exact_loss(X, W, H)):
                raise Stop
        return out

    est._minibatch_step = step  # type: ignore[method-assign]
    return _fit_until_stop(est, X, rec)


def torchnmf_fit(X: Any, rank: int, rec: Recorder) -> Trace:
    """torchnmf's ``NMF(X.shape, rank).fit(X, beta=2)`` (its random init), traced after every
    iteration (``X ≈ H Wᵀ`` in its notation; torch sparse input for a scipy sparse ``X``)."""
    import torchnmf.nmf as tn  # the optional extra (imported before the clock starts)

    if sp.issparse(X):
        coo = X.tocoo()
        idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        Xt = torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data), X.shape).coalesce()
    else:
        Xt = torch.from_numpy(np.ascontiguousarray(X))
    rec.start()  # the model's (random) initialisation is part of the fit
    torch.manual_seed(0)
    model = tn.NMF(tuple(X.shape), rank=rank)
    count = [0]

    def factory(orig):
        def wrapped(*args, **kw):
            out = orig(*args, **kw)
            count[0] += 1
            if count[0] % 2 == 0:
                Hn, Wn = model.H.detach().numpy(), model.W.detach().numpy()
                if rec.point(count[0] // 2, lambda: exact_loss(X, Hn, Wn.T)):
                    raise Stop
            return out

        return wrapped

    # the dense and the sparse path each make two update calls per iteration (W, then H)
    with (
        _patched(tn, "_double_backward_update", factory),
        _patched(tn, "_sp_double_backward_update", factory),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        try:
            model.fit(Xt, beta=2, tol=0, max_iter=10**7)
        except Stop:
            pass
    return rec.trace


def dnmf_fit(V: Any, ranks: list[int], rec: Recorder, solver: str, **kw: Any) -> Trace:
    """``dnmf.factorize(V, ranks, solver=solver, **kw)`` traced by its ``callback``; the exact
    loss of the returned factors is kept in ``extra['exact_final_loss']`` (2-D ``V``)."""

    def cb(it, loss):
        return rec.point(it, loss)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec.start()
        res = dnmf.factorize(
            V, ranks, solver=solver, max_iter=10**7, tol=0, seed=0, callback=cb, **kw
        )
    if np.ndim(res.loss) == 0:
        rec.trace.extra["exact_final_loss"] = exact_loss(V, res.W(), res.H)
    return rec.trace
