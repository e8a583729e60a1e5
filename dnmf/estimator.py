"""``DeepNMF``: a scikit-learn estimator over `dnmf.factorize`.

scikit-learn's orientation: ``X`` is ``(n_samples, n_features)`` and the model is
``X ≈ H (W1 W2 … Wk)ᵀ``, i.e. ``V = Xᵀ ≈ W1 … Wk Hᵀ`` in `dnmf.factorize`'s terms.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted

from . import _validation as val
from ._solvers.loss import EPSILON, beta_divergence
from ._solvers.sparse import frobenius_loss, kl_loss
from .factorize import factorize, solve_h
from .select import auto_ranks, parse_candidates

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def _validate_data(est, X, **kw):
        return est._validate_data(X, **kw)


class CodesTransformerMixin:
    """What the Deep NMF estimators share in code space: ``inverse_transform`` (codes back
    to features through ``components_``), the output width and scikit-learn's tags
    (nonnegative input, sparse accepted, float32/float64 preserved)."""

    n_components_: int
    components_: np.ndarray

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Map codes (n_samples, rk) back to feature space: ``X @ components_``."""
        check_is_fitted(self)
        X = check_array(X, accept_sparse=("csr", "csc"), dtype=[np.float64, np.float32])
        if X.ndim != 2 or X.shape[1] != self.n_components_:
            raise ValueError(
                f"X must have shape (n_samples, {self.n_components_}) (the codes), got {X.shape}"
            )
        return np.asarray(X @ self.components_.astype(X.dtype, copy=False))

    @property
    def _n_features_out(self) -> int:
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()  # type: ignore[misc]  # the estimator base follows in the MRO
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class DeepNMF(
    CodesTransformerMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Deep NMF ``X ≈ H (W1 W2 … Wk)ᵀ`` with nonnegative factors (HALS or multiplicative updates).

    ``X`` may be a scipy sparse matrix: it is fitted through sparse products and never
    densified (β = 2 or 1; ``transform`` without a mask), as `dnmf.factorize` does.

    Parameters
    ----------
    n_components : int, sequence of int, 'auto' or None, default=None
        Ranks ``[r1, …, rk]`` of the layers (an int is one layer, i.e. plain NMF). ``None`` is one
        layer with ``n_features`` components, as scikit-learn's ``NMF``. The only parameter
        that may be given by position (``DeepNMF(4)``, as ``NMF(4)``); the others are
        keyword-only. 'auto' chooses them
        among ``rank_candidates`` by masked cross-validation (`dnmf.select_ranks`, with
        this estimator's settings) and keeps the search in ``cv_results_``.
    rank_candidates : sequence of int or of rank tuples, default=None
        Candidates of ``n_components='auto'`` (``None``: `dnmf.select.default_candidates`).
    beta_loss : float or {'frobenius', 'kullback-leibler', 'itakura-saito'}, default='frobenius'
        β-divergence minimized (2, 1, 0 or any real number).
    init : {None, 'nndsvd', 'nndsvda', 'nndsvdar', 'random'}, default=None
        ``None`` is 'nndsvda' when ``r1 <= min(n_samples, n_features)``, else 'random'.
    max_iter : int, default=200
        Joint iterations of fit (and of ``transform``'s solve for the codes).
    tol : float, default=1e-4
        Relative loss decrease under which the fit has converged (checked every 10 iterations).
        Codes (``transform``, and the final refinement in ``fit_transform``) are solved to
        ``tol / 100``: the loss is flat near the optimum, so a loose test would stop the codes
        early. For β = 2 they are solved by HALS (exact coordinate descent on the convex
        subproblem; with a mask, on the data filled in from the model), else by
        multiplicative updates.
    transform_max_iter : int or None, default=None
        Iteration budget for solving the codes with the factors fixed (``None``: 5 × max_iter).
        These iterations are cheap for β = 2 (no product with the data).
    pretrain : bool or int, default=True
        Layer-wise pretraining before the joint fine-tuning (int: iterations per layer).
    solver : {'auto', 'mu', 'mu-acc', 'hals', 'hals-acc', 'hals-acc-e'}, default='auto'
        How the factors are fitted, as in `dnmf.factorize`: 'auto' is, for the Frobenius
        loss, HALS (exact block-coordinate descent; accelerated and extrapolated for one
        layer) and multiplicative updates
        ('mu') for other β; one layer with 'hals' is scikit-learn's ``solver='cd'``.
    l1, l2 : float or sequence of k + 1 floats, default=0.0
        Penalty ``l1·ΣF + ½·l2·‖F‖²`` per factor (order W1, …, Wk, H), as in ``dnmf.factorize``.
        Unlike scikit-learn's ``alpha_W``, they are not scaled by the data's size.
    random_state : int, RandomState or None, default=None
        Seeds the initialization (an int from 0 to 2**64 - 1, as `dnmf.factorize`'s
        ``seed``).
    device : str or None, default=None
        Torch device to compute on ('cpu', 'cuda', …); fitted attributes are numpy arrays.
    verbose : int, default=0
        Print the loss at each convergence check.

    Attributes
    ----------
    components_ : ndarray of shape (rk, n_features)
        ``(W1 … Wk)ᵀ``: the atoms in feature space.
    Ws_ : list of ndarray
        The factors in `dnmf.factorize`'s orientation: ``W1`` is ``(n_features, r1)``,
        ``Wl`` is ``(r(l-1), rl)``.
    n_components_ : int
        ``rk``, the size of the codes.
    n_iter_ : int
        Joint iterations run by ``fit``.
    reconstruction_err_ : float
        ``sqrt(2 · D_β(X | H components_))`` (the Frobenius norm for β = 2), as scikit-learn's NMF.
    loss_history_ : ndarray
        Objective at the iterations listed in ``loss_iters_``.
    cv_results_ : dict of ndarray
        Only with ``n_components='auto'``: one entry per candidate (``candidate``,
        ``mean_heldout_loss``, ``std_heldout_loss``, ``mean_train_loss``, …,
        ``split<i>_heldout_loss``), as scikit-learn's search estimators keep it;
        ``pandas.DataFrame(cv_results_)`` makes it a table.
    n_features_in_, feature_names_in_ : see scikit-learn's glossary.
    """

    def __init__(
        self,
        n_components: Any = None,
        *,
        rank_candidates: Any = None,
        beta_loss: Any = "frobenius",
        init: str | None = None,
        max_iter: int = 200,
        tol: float = 1e-4,
        transform_max_iter: int | None = None,
        pretrain: Any = True,
        solver: str = "auto",
        l1: Any = 0.0,
        l2: Any = 0.0,
        random_state: Any = None,
        device: str | None = None,
        verbose: int = 0,
    ) -> None:
        self.n_components = n_components
        self.rank_candidates = rank_candidates
        self.beta_loss = beta_loss
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.transform_max_iter = transform_max_iter
        self.pretrain = pretrain
        self.solver = solver
        self.l1 = l1
        self.l2 = l2
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # -- helpers ---------------------------------------------------------------------------
    def _check_X(self, X: Any, reset: bool) -> Any:
        """``X`` checked: a numpy array, or a scipy CSR/CSC matrix kept sparse (fitted
        through sparse products, never densified; β = 2 or 1 only)."""
        X = _validate_data(
            self, X, accept_sparse=("csr", "csc"), dtype=[np.float64, np.float32], reset=reset
        )
        xmin = float(X.min()) if X.size else 0.0
        if xmin < 0:  # scikit-learn's checks look for "Negative values in data"
            raise ValueError(
                f"Negative values in data passed to DeepNMF (X): found {int((X < 0).sum())} "
                f"negative entries (minimum {xmin:.6g}); X must be nonnegative"
            )
        if val.is_sparse_input(X):
            val.check_sparse_beta(val.parse_beta(self.beta_loss, "beta_loss"), "X", "beta_loss")
        return X

    def _ranks(self, X: Any) -> list[int]:
        self.__dict__.pop("cv_results_", None)  # a search of an earlier fit no longer applies
        if self.n_components is None:
            return [X.shape[1]]
        return val.parse_ranks(self.n_components)

    def _searched_ranks(self, X: Any) -> list[int]:
        """``n_components='auto'``: the ranks masked cross-validation chooses (sets
        ``cv_results_``)."""
        init = self.init
        if init is None:  # as _init_name: NNDSVD where every candidate's r1 allows it
            cands = self.rank_candidates
            top = max(r[0] for r in parse_candidates(cands)[1]) if cands is not None else 1
            init = "nndsvda" if top <= min(X.shape) else "random"
        best, sel = auto_ranks(
            X.T, self.n_components, self.rank_candidates, init=init, **self._fit_keywords()
        )
        self.cv_results_ = sel.cv_results()
        return val.parse_ranks(best)

    def _init_name(self, ranks: list[int], X: Any) -> str:
        if self.init is None:
            return "nndsvda" if ranks[0] <= min(X.shape) else "random"
        if self.init == "custom" or self.init not in val.INITS:
            raise ValueError(
                "init must be one of (None, 'nndsvd', 'nndsvda', 'nndsvdar', 'random'), "
                f"got {self.init!r}"
            )
        if self.init.startswith("nndsvd") and ranks[0] > min(X.shape):
            # scikit-learn's check_fit2d_1sample looks for "n_samples = 1" in this message.
            raise ValueError(
                f"init={self.init!r} needs n_components <= min(n_samples, n_features) = "
                f"{min(X.shape)} (n_samples = {X.shape[0]}, n_features = {X.shape[1]}); "
                "use init='random' or fewer components"
            )
        return self.init

    def _fit_keywords(self) -> dict[str, Any]:
        """This estimator's parameters as the keywords of `dnmf.factorize` and of the rank
        search (`dnmf.select.auto_ranks`), which check them (scikit-learn checks parameters at
        fit time). The seed is drawn anew on each call (from a ``RandomState``)."""
        return dict(
            beta=self.beta_loss,
            max_iter=self.max_iter,
            tol=self.tol,
            pretrain=self.pretrain,
            l1=self.l1,
            l2=self.l2,
            seed=self._seed(),
            device=self.device,
        )

    def _code_keywords(self) -> dict[str, Any]:
        """The keywords of `dnmf.solve_h` for the codes of ``fit_transform`` and ``transform``:
        `_h_iter` iterations to ``tol / 100``, HALS wherever it applies."""
        return dict(max_iter=self._h_iter(), tol=self.tol / 100, device=self.device, solver="auto")

    def _h_iter(self) -> int:
        if self.transform_max_iter is None:
            return 5 * val.check_positive_int(self.max_iter, "max_iter")
        return val.check_positive_int(self.transform_max_iter, "transform_max_iter")

    def _seed(self) -> Any:  # None, an int (numpy ints too) or a derived int
        rs = self.random_state
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(np.iinfo(np.int32).max))
        if rs is None or (isinstance(rs, numbers.Integral) and not isinstance(rs, bool)):
            return val.check_seed(rs, "random_state")
        raise ValueError(
            f"random_state must be None, an int or a RandomState (ints from 0 to 2**64 - 1), "
            f"got {rs!r}"
        )

    # -- API -------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> DeepNMF:
        """Learn the factors from ``X`` (n_samples, n_features); ``y`` is ignored."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Learn the factors and return the codes ``H`` (n_samples, rk) of the training data.

        The codes are those of the joint fit, refined with the factors fixed (warm start), so
        they are what ``transform(X)`` converges to.
        """
        if isinstance(X, np.ma.MaskedArray):  # check_array would drop the mask silently
            raise ValueError(
                "DeepNMF.fit takes no missing entries, but X is a numpy masked array; fit "
                "plain data, or use dnmf.factorize(X.T, ..., mask=) for missing entries"
            )
        X = self._check_X(X, reset=True)
        ranks = self._searched_ranks(X) if isinstance(self.n_components, str) else self._ranks(X)
        init = self._init_name(ranks, X)
        res = factorize(
            X.T,  # a transposed view: no copy, matmul takes either layout
            ranks,
            init=init,
            solver=self.solver,
            verbose=bool(self.verbose),
            **self._fit_keywords(),
        )
        # The jointly fitted H lags one half-step behind the last Ws; polishing it with the Ws
        # fixed (warm start, same budget) makes fit_transform(X) agree with transform(X) and
        # can only lower the loss.
        polished = solve_h(X.T, res.Ws, beta=res.beta, H=res.H, warn=False, **self._code_keywords())
        res.H = polished.H
        self.Ws_ = [np.ascontiguousarray(W) for W in res.Ws]
        W = res.W()
        self.components_ = np.ascontiguousarray(W.T)
        self.n_components_ = int(self.components_.shape[0])
        self.ranks_ = tuple(ranks)
        self.n_iter_ = int(res.n_iter)
        self.loss_history_ = res.loss_history
        self.loss_iters_ = res.loss_iters
        self._beta = res.beta
        codes = np.ascontiguousarray(res.H.T)
        self.reconstruction_err_ = self._error(X, codes)
        return codes

    def _error(self, X: Any, codes: np.ndarray) -> float:
        if val.is_sparse_input(X):  # from the products, never the dense model
            Xs = val.to_sparse_matrix(X, "X")
            L, R = (torch.from_numpy(a).to(Xs.dtype) for a in (codes, self.components_))
            if self._beta == 2:
                div = float(frobenius_loss(Xs, L, R))
            else:
                div = float(kl_loss(Xs, L, R, EPSILON))
            return float(np.sqrt(2 * max(div, 0.0)))
        Xt = val.to_tensor(X, "X")  # read-only and Fortran-ordered arrays are fine
        L = val.to_tensor(codes @ self.components_, "X")
        div = float(beta_divergence(Xt, L, self._beta))
        return float(np.sqrt(2 * max(div, 0.0)))

    def transform(self, X: Any, mask: Any = None) -> np.ndarray:
        """Codes of ``X`` with the fitted factors fixed (``mask``: X-shaped weights in [0, 1]).

        A numpy masked array ``X`` brings its own mask (masked entries: weight 0); giving
        ``mask`` as well is an error.
        """
        check_is_fitted(self)
        X, mask = val.split_masked(X, mask, "X")
        X = self._check_X(X, reset=False)
        if mask is not None and val.is_sparse_input(X):
            raise ValueError(
                "transform(X, mask=) is not supported with a sparse X; to solve codes with "
                "missing entries, " + val.dense_hint("X")
            )
        if mask is not None:
            M = np.asarray(val.sparse_to_dense(mask, "mask") if hasattr(mask, "toarray") else mask)
            if M.shape != X.shape:
                raise ValueError(f"mask must have X's shape {X.shape}, got {M.shape}")
            mask = M.T
        res = solve_h(
            X.T,
            [W.astype(X.dtype, copy=False) for W in self.Ws_],
            beta=self._beta,
            mask=mask,
            verbose=bool(self.verbose),
            **self._code_keywords(),
        )
        return np.ascontiguousarray(res.H.T)
