"""``dnmf.factorize``: Deep NMF ``V ≈ W1 W2 … Wk H`` with samples as the columns of ``V``.

`factorize` fits every factor; `solve_h` fits the codes ``H`` of new columns with
the dictionary held fixed. Both check their arguments in one place (``dnmf._validation``), run
a solver of the registry ``dnmf._solvers`` (HALS or multiplicative updates), and return a
`FactorizationResult` (``dnmf._result``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from . import _validation as val
from ._fitting import ConvergenceWarning, initial_factors, pretrain_layers, warn_unconverged
from ._init import init_layer, make_generator
from ._result import FORMAT_VERSION, FactorizationResult, load
from ._solvers import FitSettings, resolve_solver, run_solver
from ._solvers.loss import EPSILON, Penalties
from .select import auto_ranks

__all__ = [
    "FORMAT_VERSION",
    "ConvergenceWarning",
    "FactorizationResult",
    "check_ranks",
    "factorize",
    "load",
    "make_generator",
    "pretrain_layers",
    "solve_h",
]


def factorize(
    V: Any,
    ranks: int | Sequence[int] | str,
    *,
    beta: float | str = 2,
    max_iter: int = 200,
    tol: float = 1e-4,
    init: str = "nndsvda",
    pretrain: bool | int = True,
    solver: str = "auto",
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
    rank_candidates: Any = None,
) -> FactorizationResult:
    """Deep NMF ``V ≈ W1 W2 … Wk H`` with nonnegative factors; samples are the columns of ``V``.

    Parameters
    ----------
    V : array (m, n) or (B, m, n)
        Nonnegative data, one sample per column (e.g. one flattened image per column). numpy
        arrays, torch tensors, scipy sparse matrices (any format) and 2-D torch sparse tensors
        (COO, CSR, CSC, BSR, BSC) are accepted; float32 and float64 are kept, other numbers
        become float64. Sparse input is never densified: it is read only through the sparse
        products ``V Hᵀ`` and ``Vᵀ W``, for β = 2 (every solver) and β = 1 (``'mu'``), without
        a mask, on the CPU or a GPU (memory ``O(nnz + (m + n)·r)``); other β and masks are
        refused (``ranks='auto'`` searches on a dense copy). A dense V at most 10 % nonzero
        takes its products with the HALS solvers on the CPU as CSR. A 3-D input factorizes
        ``B`` independent matrices at once; each converges on its own.
    ranks : int, sequence of int or 'auto'
        Inner ranks ``[r1, …, rk]``: ``W1`` is ``m × r1``, ``Wl`` is ``r(l-1) × rl`` and ``H`` is
        ``rk × n``. One rank is plain NMF. 'auto' chooses them among ``rank_candidates`` by
        masked cross-validation (`dnmf.select_ranks`, with this call's settings; 2-D
        ``V``; missing entries, from ``mask`` or a masked array, stay missing in the search);
        the result's ``rank_selection`` holds the search. Ranks above ``min(m, n)`` need
        ``init='random'`` (as scikit-learn's); ranks whose factors would not fit in the memory
        available are refused before anything is allocated.
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
    solver : {'auto', 'mu', 'mu-acc', 'hals', 'hals-acc', 'hals-acc-e'}
        How every layer (pretraining and the joint fit) is updated. 'mu': multiplicative
        updates (any β, masks); 'hals': exact block-coordinate descent for β = 2 (HALS on the
        columns of ``W1`` and the rows of ``H``, coordinate descent on the entries of middle
        layers; one layer is scikit-learn's ``solver='cd'``); '-acc': each block repeated per
        product with ``V`` (Gillis & Glineur 2012); 'hals-acc-e': 'hals-acc' with
        extrapolation (Ang & Gillis 2019) wherever a fit is one layer without penalties (a
        one-layer fit, each layer's pretraining). 'auto' is, for β = 2, 'hals-acc-e' for one
        layer and 'hals' for deep models (the fastest to an accurate answer at each depth;
        with a mask each block is updated against the data filled in from the model), and
        'mu' otherwise.
    mask : array of V's shape, optional
        Weights in [0, 1]; 0 marks a missing entry, ignored by the loss and the updates. A numpy
        masked array ``V`` brings its own: its masked entries are missing (weight 0, their
        values ignored); giving ``mask`` as well is an error.
    l1, l2 : float or sequence of k + 1 floats
        Penalty ``l1·ΣF + ½·l2·‖F‖²`` on each factor; a float applies to every factor, a
        sequence gives one weight per factor in the order (W1, …, Wk, H).
    eps : float
        Floor for Λ where it is divided by or raised to a negative power (β < 2).
    seed : int, optional
        Seeds initialization (the updates themselves are deterministic): an int from 0 to
        2**64 - 1 (numpy integers too), or a numpy ``RandomState``/``Generator`` or a
        ``torch.Generator`` to draw from.
    device, dtype : optional
        Where and in which precision to compute; default: the input's device and float dtype.
        A device this machine does not have (e.g. 'cuda' without a GPU) is a ``ValueError``.
    verbose : bool
        Print the loss at every convergence check.
    callback : callable, optional
        ``callback(n_iter, loss)`` after each recorded loss of the joint phase (``loss`` is a
        float, or for a 3-D ``V`` an array with one loss per matrix). A truthy return value
        (``True``, ``np.True_``, ``torch.tensor(True)``, ``loss < target``) stops the fit;
        ``None`` or a falsy one goes on. For a batch, an array of one truth value per matrix
        (``loss < target`` on the array) stops the matrices whose entry is true, as if they had
        converged (the others go on; ``n_iter`` records where each stopped); an array of any
        other size is a ``ValueError``. A value that is not callable is refused before any work.
    Ws, H : arrays, optional
        Initial factors for ``init='custom'``.
    check_every, loss_every : int
        Convergence-check period, and loss-recording period (default: every iteration for β = 2
        without a mask, where the loss is free; every check otherwise).
    rank_candidates : sequence of int or of rank tuples, optional
        The candidates of ``ranks='auto'`` (default: `dnmf.select.default_candidates`).

    Returns
    -------
    FactorizationResult
    """
    val.check_callback(callback)  # before a rank search or pretraining spends any time
    val.check_sparse_options(V, mask, beta)
    selection = None
    if isinstance(ranks, str):
        ranks, selection = auto_ranks(
            V,
            ranks,
            rank_candidates,
            mask=mask,
            init=init,
            beta=beta,
            max_iter=max_iter,
            tol=tol,
            pretrain=pretrain,
            l1=l1,
            l2=l2,
            eps=eps,
            seed=seed,
            device=device,
            dtype=dtype,
            check_every=check_every,
        )
    dev = val.parse_device(device)
    kind = val.as_kind(V)
    Vt, M = val.check_data(V, mask, dtype=val.parse_dtype(dtype), device=dev, sparse=True)
    ranks_ = val.parse_ranks(ranks)
    fit = val.check_fit_settings(
        Vt,
        M,
        ranks_,
        beta=beta,
        max_iter=max_iter,
        tol=tol,
        eps=eps,
        check_every=check_every,
        loss_every=loss_every,
        init=init,
        pretrain=pretrain,
        solver=solver,
        l1=l1,
        l2=l2,
    )
    val.warn_unused_factors(init, Ws, H)
    gen = make_generator(seed)
    with torch.no_grad():
        if init == "custom":
            Ws_, H_ = val.check_custom_factors(Ws, H, Vt, ranks_)
            pre_hist: list[np.ndarray] = []
        else:
            Ws_, H_, pre_hist = initial_factors(
                Vt, ranks_, lambda l, X, r: init_layer(X, r, init, gen), fit, mask=M
            )
        out = run_solver(Vt, Ws_, H_, fit, mask=M, callback=callback, verbose=verbose)
    warn_unconverged(out, fit, "dnmf.factorize")
    return FactorizationResult.from_outcome(
        out,
        Ws_,
        H_,
        kind=kind,
        beta=fit.beta,
        pretrain_loss_histories=pre_hist,
        rank_selection=selection,
    )


def check_ranks(ranks: int | Sequence[int], init: str, shape: Sequence[int]) -> list[int]:
    """The check `factorize` makes of ``ranks`` and ``init`` for data of ``shape``, alone.

    For a caller that wants `factorize`'s refusal before it starts other work (reading data,
    printing progress): ``ranks`` is an int or a non-empty sequence of positive ints, ``init``
    one of `factorize`'s, and with an NNDSVD init every rank is at most the smaller side of its
    layer's input (``V``, ``m × n``, for the first; the previous layer's ``r(l-1) × n`` codes
    after it). ``shape`` is ``V``'s, ``(m, n)`` or ``(B, m, n)``.

    Returns the ranks as a list of ints; raises ``ValueError`` (``TypeError`` for a rank that is
    not an integer) with the message `factorize` would give.
    """
    ranks_ = val.parse_ranks(ranks)
    val.check_init(init, ranks_, tuple(shape))
    return ranks_


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

    Parameters
    ----------
    V : array (m, n) or (B, m, n)
        Nonnegative data, samples as columns (as `factorize`; sparse input is kept sparse,
        for β = 2 or 1 without a mask).
    Ws : array or sequence of arrays
        The fitted factors ``W1 … Wk`` (finite, nonnegative; never modified). A batch may share
        2-D factors, which are then broadcast.
    beta : float or str
        As `factorize`.
    H : array (rk, n) or (B, rk, n), optional
        Starting codes (copied); by default a constant matched to the data's scale.
    mask : array of V's shape, optional
        As `factorize` (a numpy masked array ``V`` brings its own).
    max_iter, tol, eps, check_every, verbose, device, dtype
        As `factorize`.
    l1, l2 : float
        Penalty ``l1·ΣH + ½·l2·‖H‖²`` on the codes only.
    warn : bool
        Raise ``ConvergenceWarning`` when ``max_iter`` ends the run.
    solver : {'mu', 'hals', 'auto', 'mu-acc', 'hals-acc', 'hals-acc-e'}
        'mu' runs multiplicative updates (any β, masks); 'hals' solves the convex β = 2
        subproblem by exact row-wise coordinate descent (no mask; the ``H`` update of
        `factorize`'s HALS), which converges much faster on ill-conditioned
        dictionaries; 'auto' picks HALS where it applies. With ``Ws`` fixed there is no product
        with ``V`` to save, so the accelerated names run their plain solver (and there is one
        factor, so nothing to extrapolate).

    Returns
    -------
    FactorizationResult
        ``Ws`` as used (on the computing device), the codes ``H`` and the run's records.
    """
    dev = val.parse_device(device)
    kind = val.as_kind(V)
    Vt, M = val.check_data(V, mask, dtype=val.parse_dtype(dtype), device=dev, sparse=True)
    beta_, max_iter, tol, eps, check_every = val.check_solver_args(
        beta, max_iter, tol, eps, check_every
    )
    if isinstance(Vt, torch.Tensor):
        val.check_beta_zeros(Vt, beta_, M)
    else:
        val.check_sparse_beta(beta_)
    use_hals = resolve_solver(solver, beta_, M).startswith("hals")
    Wt = val.check_fixed_factors(Ws, Vt)
    rk = int(Wt[-1].shape[-1])
    Ht = _constant_codes(Vt, Wt, M, eps) if H is None else val.check_start_codes(H, Vt, rk)
    l1_ = val.check_nonneg_float(l1, "l1")
    l2_ = val.check_nonneg_float(l2, "l2")
    k = len(Wt)
    # With W1…Wk fixed there is no product with V to save: the accelerated names run their
    # plain solver, and there is one factor, so nothing to extrapolate.
    fit = FitSettings(
        beta=beta_,
        max_iter=max_iter,
        tol=tol,
        eps=eps,
        check_every=check_every,
        penalties=Penalties.codes_only(k, l1_, l2_),
        solver="hals" if use_hals else "mu",
    )
    with torch.no_grad():  # H alone, updated in place
        out = run_solver(Vt, Wt, Ht, fit, mask=M, update=[False] * k + [True], verbose=verbose)
    if warn:
        warn_unconverged(out, fit, "dnmf.solve_h")
    return FactorizationResult.from_outcome(out, Wt, Ht, kind=kind, beta=beta_)


def _constant_codes(
    V: val.Data, Ws: list[torch.Tensor], mask: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """A constant start whose reconstruction has the data's mean: MU keeps the scale it starts
    at only up to a slow drift, so starting at the right one saves iterations."""
    P = Ws[0]
    for W in Ws[1:]:
        P = P @ W
    if mask is None:
        vmean = V.mean(dim=(-2, -1), keepdim=True)
    else:
        # the mean of the observed entries only: masked values must not matter
        assert isinstance(V, torch.Tensor)  # (a sparse V takes no mask)
        vmean = (mask * V).sum(dim=(-2, -1), keepdim=True) / mask.sum(dim=(-2, -1), keepdim=True)
    pmean = P.sum(dim=-1).mean(dim=-1, keepdim=True).unsqueeze(-1)
    scale = vmean / pmean.clamp_min(eps)
    return scale.expand(*V.shape[:-2], Ws[-1].shape[-1], V.shape[-1]).contiguous()
