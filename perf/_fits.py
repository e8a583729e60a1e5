"""Fixed-iteration fits of each library from given factors, as zero-argument callables to time.

Every fit runs the multiplicative updates (``solver="mu"``, ``tol=0``) for ``n_iter``
iterations from the same initial factors, so the libraries do the same work and their times
per iteration compare (``perf.nmf_speed``, ``perf.fused_pass_ab``). Each callable returns what
its library returns; the caller reads the factors from it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import dnmf


def dnmf_mu(
    V: Any, Ws0: list[np.ndarray], H0: np.ndarray, n_iter: int, device: torch.device
) -> Callable[[], Any]:
    """``dnmf.factorize`` (``init="custom"``) of ``V`` from ``Ws0``, ``H0`` on ``device``."""

    def run():
        return dnmf.factorize(
            V,
            [W.shape[-1] for W in Ws0],
            init="custom",
            Ws=Ws0,
            H=H0,
            max_iter=n_iter,
            tol=0,
            solver="mu",
            device=device,
        )

    return run


def sklearn_mu(V: np.ndarray, W0: np.ndarray, H0: np.ndarray, n_iter: int) -> Callable[[], Any]:
    """scikit-learn's ``NMF(solver="mu", init="custom")``; returns ``(W, H, n_iter_)``."""
    from sklearn.decomposition import NMF  # optional: imported when this fit is asked for

    def run():
        est = NMF(n_components=W0.shape[1], solver="mu", init="custom", max_iter=n_iter, tol=0)
        W = est.fit_transform(V, W=W0.copy(), H=H0.copy())
        return W, est.components_, est.n_iter_

    return run


def torchnmf_mu(
    V: np.ndarray, W0: np.ndarray, H0: np.ndarray, n_iter: int, device: torch.device
) -> Callable[[], Any]:
    """torchnmf's ``NMF.fit`` (β = 2) on ``device``; returns ``(W, H, n_iter)`` in dnmf's
    orientation."""
    from torchnmf.nmf import NMF  # torchnmf writes V ≈ H Wᵀ: its H is our W, its W our Hᵀ

    Vt = torch.from_numpy(V).to(device)

    def run():
        model = NMF(
            W=torch.from_numpy(H0.T.copy()).to(device), H=torch.from_numpy(W0.copy()).to(device)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n = model.fit(Vt, beta=2, tol=0, max_iter=n_iter)
        return model.H.detach(), model.W.detach().T, n

    return run
