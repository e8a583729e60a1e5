"""``MiniBatchDeepNMF``: Deep NMF fitted online, one minibatch of rows at a time.

scikit-learn's orientation, as `dnmf.DeepNMF`: ``X`` is ``(n_samples, n_features)`` and the
model is ``X ≈ H (W1 … Wk)ᵀ``; a minibatch of rows ``Xc`` is a block of columns
``Vc = Xcᵀ`` of `dnmf.factorize`'s ``V``. One online step (`MiniBatchDeepNMF.partial_fit`;
`fit` runs one per minibatch):

1. the minibatch's codes ``Hc`` (``rk × b``) with the dictionary ``W1…Wk`` fixed: from the
   constant start of `dnmf.solve_h`, at most ``code_max_iter`` iterations of the code
   solver of the registry (HALS for β = 2, multiplicative updates for β = 1), stopped once
   the loss falls by less than ``tol / 100`` between checks (every 10 iterations);
2. the statistics of the minibatches so far, the earlier ones weighted by ``ρ``, and the
   dictionary moved on them (`dnmf._solvers.online`: ``A ← ρA + Hc Hcᵀ``,
   ``B ← ρB + Vc Hcᵀ`` and one HALS / coordinate-descent pass over the layers for β = 2;
   each layer's numerator and denominator of the multiplicative update for β = 1).

The rows are read a minibatch at a time from anything with a 2-D ``shape`` and row slicing
(a numpy array, a memory-mapped ``.npy`` from ``np.load(path, mmap_mode='r')``, an HDF5 or
zarr dataset), from a scipy sparse matrix (kept sparse) or, through
`MiniBatchDeepNMF.fit_chunks`, from an iterable of chunks; only the current minibatch is
converted and moved to ``device``.
"""

from __future__ import annotations

import mmap
import numbers
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import _validation as val
from ._fitting import ConvergenceWarning, initial_factors
from ._init import init_layer, make_generator
from ._solvers import FitSettings, run_solver
from ._solvers.linalg import _mT, _prod
from ._solvers.loss import EPSILON, Penalties
from ._solvers.online import FrobeniusStatistics, KLStatistics
from ._solvers.sparse import Data
from .estimator import CodesTransformerMixin
from .factorize import _constant_codes

try:  # scipy is a hard dependency of the project, but keep dnmf importable without it
    import scipy.sparse as _sp
except ImportError:  # pragma: no cover
    _sp = None

#: The solvers of `MiniBatchDeepNMF` (``'auto'``: ``'hals'`` for β = 2, ``'mu'`` for β = 1).
ONLINE_SOLVERS = ("auto", "hals", "mu")
#: Iterations between the convergence checks of a minibatch's code solve.
CODE_CHECK_EVERY = 10
_INITS = (None, "nndsvd", "nndsvda", "nndsvdar", "random", "custom")
_NAME = "MiniBatchDeepNMF"


def _is_scipy_sparse(x: Any) -> bool:
    return _sp is not None and _sp.issparse(x)


class _Rows:
    """The minibatches of a matrix ``X``, read a block of rows at a time (``X[i:j]``)."""

    def __init__(self, X: Any, name: str = "X") -> None:
        if isinstance(X, torch.Tensor) and X.layout != torch.strided:
            raise TypeError(
                f"{name} is a torch sparse tensor; {_NAME} streams sparse rows from a scipy "
                "sparse matrix (e.g. scipy.sparse.csr_matrix) or a dense tensor"
            )
        if _is_scipy_sparse(X):
            X = X if X.format == "csr" else X.tocsr()  # row slices of CSR stay CSR, O(nnz)
        elif isinstance(X, Iterator) and not hasattr(X, "shape"):
            raise TypeError(
                f"{name} is an iterator; {_NAME}.fit takes a matrix, and fit_chunks(chunks) "
                "an iterable of chunks"
            )
        elif not (hasattr(X, "shape") and hasattr(X, "__getitem__")):
            X = np.asarray(X)  # lists and the like: in memory already
        shape = tuple(X.shape)
        if len(shape) != 2:
            raise ValueError(
                f"{name} must be 2-D (n_samples, n_features), got shape {shape}; "
                "for a sequence of chunks use fit_chunks"
            )
        if shape[0] == 0 or shape[1] == 0:
            raise ValueError(f"{name} is empty: shape {shape}; every dimension must be >= 1")
        self.X, self.n, self.name = X, int(shape[0]), name
        self.width = int(shape[1])
        self.one_shot = False
        self.mapping = _shared_mapping(X)

    def batches(self, size: int) -> Iterator[tuple[Any, str]]:
        """``(X[i:j], name)`` for every block of ``size`` rows; the pages of a memory-mapped
        block are released once the caller is done with it (asks for the next one, or
        stops)."""
        for i in range(0, self.n, size):
            j = min(i + size, self.n)
            block = self.X[i:j]
            try:
                yield block, f"{self.name}[{i}:{j}]"
            finally:
                if self.mapping is not None:
                    _release(self.mapping, block)


def _shared_mapping(X: Any) -> mmap.mmap | None:
    """The file mapping under a memory-mapped ``X`` whose pages `_release` may drop: shared
    mappings only (``np.memmap`` modes 'r' and 'r+'; a copy-on-write 'c' mapping holds the
    user's edits in its pages), where the platform has ``madvise``."""
    if not isinstance(X, np.memmap) or X.mode == "c" or not hasattr(mmap, "MADV_DONTNEED"):
        return None
    base = X.base
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base


def _release(mapping: mmap.mmap, block: np.ndarray) -> None:
    """Drop the pages of ``block`` (a view into ``mapping``) from this process's resident
    memory: the pages a mapping has read stay resident (and count in its RSS) until the
    mapping closes, so a pass over a memory-mapped file would otherwise end with the whole
    file resident. Reading them again faults them back in from the page cache."""
    if block.size == 0:
        return
    whole = np.frombuffer(mapping, dtype=np.uint8)
    start = block.ctypes.data - whole.ctypes.data
    del whole  # no buffer export may outlive this call (the mapping could not close)
    reach = [(d - 1) * st for d, st in zip(block.shape, block.strides)]  # per axis, signed
    low = max(0, start + sum(r for r in reach if r < 0))
    end = min(len(mapping), start + sum(r for r in reach if r > 0) + block.itemsize)
    low -= low % mmap.PAGESIZE
    if end > low:
        mapping.madvise(mmap.MADV_DONTNEED, low, end - low)


class _Chunks:
    """The minibatches of an iterable of chunks, each cut into blocks of at most ``size``
    rows. A one-shot iterator (``iter(chunks) is chunks``) is read once; anything else is
    iterated anew on every pass."""

    def __init__(self, chunks: Any) -> None:
        if isinstance(chunks, (np.ndarray, torch.Tensor)) or _is_scipy_sparse(chunks):
            raise TypeError(
                f"chunks is one matrix ({type(chunks).__name__}); use {_NAME}.fit(X) for a "
                "matrix, fit_chunks for an iterable of matrices"
            )
        if not isinstance(chunks, Iterable):
            raise TypeError(
                f"chunks must be an iterable of (rows, n_features) matrices, got "
                f"{type(chunks).__name__}"
            )
        self.chunks = chunks
        self.one_shot = iter(chunks) is chunks
        self.n: int | None = None  # rows of one pass, once a pass has ended
        self.width: int | None = None

    def batches(self, size: int) -> Iterator[tuple[Any, str]]:
        for c, chunk in enumerate(self.chunks):
            rows = _Rows(chunk, f"chunks[{c}]")
            yield from rows.batches(size)


class MiniBatchDeepNMF(
    CodesTransformerMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Deep NMF ``X ≈ H (W1 … Wk)ᵀ`` fitted online from minibatches of rows (out of core).

    The estimator API of scikit-learn's ``MiniBatchNMF``: `fit` passes over ``X`` a
    minibatch at a time, `partial_fit` takes one chunk as one online step, `transform`
    solves codes with the dictionary fixed. Each step solves the minibatch's codes, adds
    its statistics to those kept (the earlier ones weighted by ``ρ``) and moves the
    dictionary on them (`dnmf.online`, `dnmf._solvers.online`).

    Parameters
    ----------
    n_components : int, sequence of int or None, default=None
        Ranks ``[r1, …, rk]`` (an int is one layer, plain NMF; ``None``: one layer of
        ``n_features``). The dictionary is the product ``W1 … Wk`` (``n_features × rk``).
    init : {None, 'nndsvd', 'nndsvda', 'nndsvdar', 'random', 'custom'}, default=None
        Initialization of the dictionary from the first minibatch (layer ``l`` from the
        codes of layer ``l - 1``, as `dnmf.factorize` without pretraining). ``None``:
        'nndsvda' where the first minibatch allows the ranks, else 'random'. 'custom' takes
        ``Ws=`` of `fit`/`partial_fit` (e.g. a `dnmf.DeepNMF`'s ``Ws_``).
    batch_size : int, default=1024
        Rows per minibatch of `fit`, `fit_chunks` and `transform` (`partial_fit` takes its
        chunk whole).
    beta_loss : {2, 1, 'frobenius', 'kullback-leibler'}, default='frobenius'
        β-divergence minimized: 2 (½‖·‖²) or 1 (generalized Kullback–Leibler).
    tol : float, default=1e-4
        `fit` stops once a step changes the dictionary ``W1…Wk`` by at most ``tol``
        (relative, Frobenius norm; not at the first step), as scikit-learn's. Codes are
        solved to ``tol / 100`` (relative loss decrease between checks). ``tol=0`` runs
        every step and every code iteration.
    max_no_improvement : int or None, default=10
        `fit` stops after this many steps without a new minimum of the smoothed cost per
        row (an exponentially weighted average of the minibatches' costs, as
        scikit-learn's); ``None`` turns this off.
    max_iter : int, default=200
        Passes (epochs) of `fit` over the data. A ``ConvergenceWarning`` is raised when
        they all run with ``tol > 0``.
    forget_factor : float in [0, 1], default=0.7
        Weight of the statistics so far at each step: ``ρ = forget_factor ** (b / n)`` for a
        minibatch of ``b`` rows in `fit` (``n``: the rows of one pass; during the first pass
        of `fit_chunks`, the rows seen so far), so one pass's statistics decay by
        ``forget_factor``; ``ρ = forget_factor`` at each `partial_fit`. 0 keeps only the
        current minibatch (one minibatch of all rows is then alternating minimization), 1
        forgets nothing.
    code_max_iter : int, default=30
        Iterations of each minibatch's code solve in `fit` and `partial_fit`.
    transform_max_iter : int, default=200
        Iterations of the code solve of `transform` (and `fit_transform`'s codes).
    solver : {'auto', 'hals', 'mu'}, default='auto'
        'hals' (β = 2): codes by HALS, the dictionary by one HALS pass on ``W1`` and one
        pass of coordinate descent on each later layer per step. 'mu': multiplicative
        updates for the codes and the dictionary (β = 2 or 1). 'auto': 'hals' for β = 2,
        'mu' for β = 1.
    random_state : int, RandomState or None, default=None
        Seeds the initialization (an int from 0 to 2**64 - 1).
    device : str or None, default=None
        Torch device of the computation ('cpu', 'cuda', …; ``None``: the CPU). Each
        minibatch is moved there on its own; fitted attributes are numpy arrays.
    verbose : int, default=0
        Print the smoothed cost after every pass of `fit`.

    Attributes
    ----------
    components_ : ndarray of shape (rk, n_features)
        ``(W1 … Wk)ᵀ``.
    Ws_ : list of ndarray
        The factors in `dnmf.factorize`'s orientation (``W1``: ``(n_features, r1)``).
    n_components_ : int
        ``rk``.
    ranks_ : tuple of int
    n_features_in_ : int
    n_steps_ : int
        Online steps (minibatches) so far, `partial_fit`'s included.
    n_iter_ : int
        Passes over the data started by the last `fit` / `fit_chunks`.
    reconstruction_err_ : float
        Only after `fit_transform`: ``sqrt(2 · D_β(X | codes · components_))``.
    """

    # The checked parameters (`_check_params`) and the online state (`_start`): private,
    # set by fit and by the first partial_fit.
    _ranks: list[int] | None
    _batch: int
    _beta: float
    _tol: float
    _mni: int | None
    _max_iter: int
    _ff: float
    _code_iter: int
    _transform_iter: int
    _rule: str
    _seed_value: int | None
    _dev: torch.device
    _dtype: torch.dtype
    _Ws: list[torch.Tensor]
    _stats: FrobeniusStatistics | KLStatistics

    def __init__(
        self,
        n_components: Any = None,
        *,
        init: str | None = None,
        batch_size: int = 1024,
        beta_loss: Any = "frobenius",
        tol: float = 1e-4,
        max_no_improvement: int | None = 10,
        max_iter: int = 200,
        forget_factor: float = 0.7,
        code_max_iter: int = 30,
        transform_max_iter: int = 200,
        solver: str = "auto",
        random_state: Any = None,
        device: str | None = None,
        verbose: int = 0,
    ) -> None:
        self.n_components = n_components
        self.init = init
        self.batch_size = batch_size
        self.beta_loss = beta_loss
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.max_iter = max_iter
        self.forget_factor = forget_factor
        self.code_max_iter = code_max_iter
        self.transform_max_iter = transform_max_iter
        self.solver = solver
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # -- parameters ------------------------------------------------------------------------
    def _check_params(self) -> None:
        """Every parameter checked (at fit time, as scikit-learn's), kept for the steps."""
        if isinstance(self.n_components, str):
            raise ValueError(
                f"n_components must be an int, a sequence of ints or None for {_NAME}, got "
                f"{self.n_components!r} (rank search: dnmf.select_ranks or DeepNMF)"
            )
        self._ranks = None if self.n_components is None else val.parse_ranks(self.n_components)
        if self.init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {self.init!r}")
        self._batch = val.check_positive_int(self.batch_size, "batch_size")
        beta = val.parse_beta(self.beta_loss, "beta_loss")
        if beta not in (1.0, 2.0):
            raise ValueError(
                f"beta_loss must be 2 ('frobenius') or 1 ('kullback-leibler') for {_NAME}, "
                f"got {self.beta_loss!r}; fit other β with dnmf.DeepNMF"
            )
        self._beta = beta
        self._tol = val.check_nonneg_float(self.tol, "tol")
        mni = self.max_no_improvement
        self._mni = None if mni is None else val.check_positive_int(mni, "max_no_improvement")
        self._max_iter = val.check_positive_int(self.max_iter, "max_iter")
        ff = self.forget_factor
        if isinstance(ff, bool) or not isinstance(ff, numbers.Real) or not 0 <= float(ff) <= 1:
            raise ValueError(f"forget_factor must be a float in [0, 1], got {ff!r}")
        self._ff = float(ff)
        self._code_iter = val.check_positive_int(self.code_max_iter, "code_max_iter")
        self._transform_iter = val.check_positive_int(self.transform_max_iter, "transform_max_iter")
        if not isinstance(self.solver, str) or self.solver not in ONLINE_SOLVERS:
            raise ValueError(f"solver must be one of {ONLINE_SOLVERS}, got {self.solver!r}")
        if self.solver == "hals" and beta != 2:
            raise ValueError(
                "solver='hals' solves beta_loss=2, got beta_loss=1; use solver='mu' (or "
                "'auto', which picks it there)"
            )
        self._rule = (
            "hals" if (self.solver == "hals" or (self.solver == "auto" and beta == 2)) else "mu"
        )
        self._seed_value = _seed(self.random_state)
        dev = val.parse_device(self.device)
        self._dev = torch.device("cpu") if dev is None else dev

    # -- minibatches -----------------------------------------------------------------------
    def _data(self, chunk: Any, where: str, dtype: torch.dtype | None) -> Data:
        """A minibatch of rows as ``Vc = Xcᵀ`` on the device: checked (width, finite,
        nonnegative), kept sparse if it is sparse, never more than this block converted."""
        width = getattr(self, "n_features_in_", None)
        if _is_scipy_sparse(chunk):
            cols = int(chunk.shape[1])
            self._check_width(cols, width, where)
            Xc = chunk if chunk.format == "csr" else chunk.tocsr()
            data = val.to_tensor(np.asarray(Xc.data), where, dtype=dtype)
            _check_values(data, where)
            return val.to_sparse_matrix(Xc.T, where, dtype=dtype, device=self._dev)
        if isinstance(chunk, torch.Tensor) and chunk.layout != torch.strided:
            raise TypeError(
                f"{where} is a torch sparse tensor; pass sparse chunks as scipy sparse "
                "matrices (e.g. scipy.sparse.csr_matrix)"
            )
        t = val.to_tensor(
            chunk if isinstance(chunk, torch.Tensor) else np.asarray(chunk), where, dtype=dtype
        )
        if t.ndim != 2:
            raise ValueError(f"{where} must be 2-D (rows, n_features), got shape {tuple(t.shape)}")
        self._check_width(int(t.shape[1]), width, where)
        _check_values(t, where)
        return _mT(t.to(self._dev))

    @staticmethod
    def _check_width(cols: int, width: int | None, where: str) -> None:
        if width is not None and cols != width:
            raise ValueError(
                f"{where} has {cols} features, but {_NAME} is expecting {width} features as "
                "input (n_features_in_)"
            )

    def _codes(self, V: Data, max_iter: int, Ws: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
        """The minibatch's codes with ``Ws`` fixed (step 1 of the module docstring) and its
        loss ``D_β(Vc | W1…Wk Hc)``."""
        k = len(Ws)
        H = _constant_codes(V, Ws, None, EPSILON)
        fit = FitSettings(
            beta=self._beta,
            max_iter=max_iter,
            tol=self._tol / 100,
            eps=EPSILON,
            check_every=CODE_CHECK_EVERY,
            penalties=Penalties.none(k + 1),
            solver=self._rule,
        )
        out = run_solver(V, Ws, H, fit, update=[False] * k + [True])
        return H, float(out.loss)

    def _start(self, V: Data, Ws: Any) -> None:
        """The dictionary and empty statistics, from the first minibatch ``V`` (or ``Ws``)."""
        m, b = int(V.shape[0]), int(V.shape[1])
        self.n_features_in_ = m
        if self.init == "custom":
            Ws_ = self._custom(Ws, m, V.dtype)
        else:
            if Ws is not None:
                raise ValueError(f"Ws is only used with init='custom', got init={self.init!r}")
            ranks = [m] if self._ranks is None else self._ranks
            init = self._init_name(ranks, m, b)
            gen = make_generator(self._seed_value)
            start = FitSettings(
                beta=self._beta,
                max_iter=1,
                tol=0.0,
                eps=EPSILON,
                check_every=1,
                penalties=Penalties.none(len(ranks) + 1),
                solver=self._rule,
                init=init,
                pretrain=False,
            )
            Ws_, _, _ = initial_factors(
                V, ranks, lambda l, X, r: init_layer(X, r, init, gen), start
            )
            Ws_ = [W.contiguous() for W in Ws_]
        self._Ws = Ws_
        self._stats = FrobeniusStatistics(Ws_, self._rule) if self._beta == 2 else KLStatistics(Ws_)
        self._dtype = V.dtype
        self.n_steps_ = 0

    def _init_name(self, ranks: list[int], m: int, b: int) -> str:
        if self.init is None:
            try:
                val.check_init("nndsvda", ranks, (m, b))
            except ValueError:
                return "random"
            return "nndsvda"
        try:
            val.check_init(self.init, ranks, (m, b))
        except ValueError as exc:
            raise ValueError(
                f"{exc} ({_NAME} initializes from its first minibatch: V is its transpose, "
                f"{m} features x {b} rows; raise batch_size or use init='random')"
            ) from None
        return str(self.init)

    def _custom(self, Ws: Any, m: int, dtype: torch.dtype) -> list[torch.Tensor]:
        if Ws is None:
            raise ValueError("init='custom' needs Ws=, the starting factors [W1, …, Wk]")
        if isinstance(Ws, (np.ndarray, torch.Tensor)):
            Ws = [Ws]
        out = []
        rows = m
        for l, W in enumerate(Ws):
            t = val.to_tensor(W, f"Ws[{l}]", dtype=dtype, device=self._dev).clone()
            if t.ndim != 2 or t.shape[0] != rows:
                raise ValueError(
                    f"Ws[{l}] must be 2-D with {rows} rows, got shape {tuple(t.shape)}"
                )
            val.check_factor(t, f"Ws[{l}]")
            out.append(t.contiguous())
            rows = int(t.shape[1])
        ranks = [int(W.shape[1]) for W in out]
        if not out or (self._ranks is not None and self._ranks != ranks):
            raise ValueError(f"Ws have ranks {ranks}, but n_components asks for {self._ranks}")
        return out

    def _online_step(self, V: Data, rho: float) -> tuple[float, float]:
        """One online step on ``V``: its loss before the dictionary moved, and the relative
        change of ``W1…Wk``."""
        H, loss = self._codes(V, self._code_iter, self._Ws)
        before = _prod(self._Ws).clone()
        self._stats.step(V, self._Ws, H, rho)
        after = _prod(self._Ws)
        norm = float(torch.linalg.vector_norm(after))
        change = float(torch.linalg.vector_norm(after - before)) / max(norm, 1e-300)
        self.n_steps_ += 1
        return loss, change

    def _publish(self) -> None:
        self.Ws_ = [np.ascontiguousarray(W.cpu().numpy()) for W in self._Ws]
        self.components_ = np.ascontiguousarray(_prod(self._Ws).T.cpu().numpy())
        self.n_components_ = int(self.components_.shape[0])
        self.ranks_ = tuple(int(W.shape[1]) for W in self._Ws)

    # -- API -------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, Ws: Any = None) -> MiniBatchDeepNMF:
        """Learn the dictionary from ``X`` (n_samples, n_features), ``max_iter`` passes of
        minibatches of ``batch_size`` rows, read one at a time: a numpy array, a
        memory-mapped array, any object with a 2-D ``shape`` and row slicing, or a scipy
        sparse matrix (kept sparse; CSR, other formats converted once). ``y`` is ignored;
        ``Ws``: the starting factors of ``init='custom'``."""
        self._check_params()
        self._fit(_Rows(X), Ws)
        return self

    def fit_chunks(self, chunks: Iterable[Any], Ws: Any = None) -> MiniBatchDeepNMF:
        """Learn the dictionary from an iterable of chunks of rows (numpy arrays, dense
        torch tensors or scipy sparse matrices, all with the same ``n_features``), each cut
        into minibatches of at most ``batch_size`` rows. A list, or any object whose
        ``__iter__`` starts over, is passed over ``max_iter`` times; a one-shot iterator (a
        generator) once, whatever ``max_iter``."""
        self._check_params()
        self._fit(_Chunks(chunks), Ws)
        return self

    _FITTED = (
        "n_features_in_",
        "components_",
        "Ws_",
        "n_components_",
        "ranks_",
        "n_steps_",
        "n_iter_",
        "reconstruction_err_",
        "_stats",
        "_Ws",
        "_dtype",
    )

    def _forget(self) -> None:
        """Drop the fitted state: a new fit starts over, and a fit that failed part of the
        way through (a bad chunk) leaves the estimator unfitted."""
        for name in self._FITTED:
            self.__dict__.pop(name, None)

    def _fit(self, source: _Rows | _Chunks, Ws: Any) -> None:
        self._forget()
        try:
            self._passes(source, Ws)
        except BaseException:
            self._forget()
            raise

    def _passes(self, source: _Rows | _Chunks, Ws: Any) -> None:
        monitor = _Monitor(self._tol, self._mni)
        dtype: torch.dtype | None = None  # the first minibatch's, then every one's
        epochs, stopped = 0, False
        while epochs < self._max_iter and not stopped:
            rows = 0
            for chunk, where in source.batches(self._batch):
                V = self._data(chunk, where, dtype)
                if dtype is None:
                    self._start(V, Ws)
                    dtype = self._dtype
                if rows == 0:
                    epochs += 1
                b = int(V.shape[1])
                rows += b
                n = rows if source.n is None else source.n  # first pass of chunks: rows so far
                loss, change = self._online_step(V, self._ff ** (b / n))
                if monitor.stop(loss / b, b, n, change, self.n_steps_):
                    stopped = True
                    break
            if rows == 0:
                if epochs == 0:
                    raise ValueError("chunks holds no rows: nothing to fit")
                break  # a re-iterable source that came back empty
            if not stopped:
                source.n = rows
            if self.verbose:
                print(
                    f"{_NAME} pass {epochs}: {self.n_steps_} steps, smoothed cost per row "
                    f"{monitor.ewa:.6e}"
                )
            if source.one_shot:
                break
        self.n_iter_ = epochs
        self._publish()
        if not stopped and self._tol > 0 and epochs == self._max_iter:
            warnings.warn(
                f"{_NAME}: maximum number of iterations {self._max_iter} reached before the "
                f"dictionary changed by less than tol={self._tol:g}. Increase max_iter to "
                "improve convergence.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def partial_fit(self, X: Any, y: Any = None, Ws: Any = None) -> MiniBatchDeepNMF:
        """One online step on the chunk ``X`` (rows, n_features): the whole chunk is one
        minibatch, the statistics so far are weighted by ``ρ = forget_factor``. The first
        call (on an unfitted estimator) checks the parameters and initializes the dictionary
        from ``X`` (``Ws``: the starting factors of ``init='custom'``); later calls continue
        from the state of the last `fit` or `partial_fit`."""
        first = "_stats" not in self.__dict__
        if first:
            self._check_params()
        rows = _Rows(X)
        V = self._data(rows.X, "X", None if first else self._dtype)
        if not first:
            if Ws is not None:
                raise ValueError("Ws is only used by the first partial_fit (init='custom')")
            self._online_step(V, self._ff)
            self._publish()
            return self
        try:
            self._start(V, Ws)
            self._online_step(V, self._ff)
        except BaseException:
            self._forget()
            raise
        self._publish()
        return self

    def fit_transform(self, X: Any, y: Any = None, Ws: Any = None) -> np.ndarray:
        """`fit`, then the codes of ``X`` (n_samples, rk) with the fitted dictionary (a second
        pass, a minibatch at a time, as `transform`); sets ``reconstruction_err_``."""
        self.fit(X, Ws=Ws)
        codes, loss = self._transform(X)
        self.reconstruction_err_ = float(np.sqrt(2 * max(loss, 0.0)))
        return codes

    def transform(self, X: Any) -> np.ndarray:
        """Codes (n_samples, rk) of ``X`` with the dictionary fixed, a minibatch of
        ``batch_size`` rows at a time (inputs as `fit`), each solved from the constant start
        for ``transform_max_iter`` iterations at most (to ``tol / 100``)."""
        check_is_fitted(self)
        return self._transform(X)[0]

    def _transform(self, X: Any) -> tuple[np.ndarray, float]:
        source = _Rows(X)
        parts, total, dtype = [], 0.0, None
        Ws: list[torch.Tensor] = []
        for chunk, where in source.batches(self._batch):
            V = self._data(chunk, where, dtype)
            if dtype is None:
                dtype = V.dtype
                Ws = [W.to(dtype) for W in self._Ws]
            H, loss = self._codes(V, self._transform_iter, Ws)
            parts.append(H.T.cpu().numpy())
            total += loss
        return np.ascontiguousarray(np.concatenate(parts)), total


class _Monitor:
    """scikit-learn's early stopping of ``MiniBatchNMF``: the dictionary's relative change at
    most ``tol`` (not at the first step), or ``max_no_improvement`` steps without a new
    minimum of the exponentially weighted average of the cost per row."""

    def __init__(self, tol: float, max_no_improvement: int | None) -> None:
        self.tol, self.mni = tol, max_no_improvement
        self.ewa: float = float("nan")
        self.best: float | None = None
        self.flat = 0

    def stop(self, cost: float, b: int, n: int, change: float, step: int) -> bool:
        if step == 1:  # scikit-learn skips its first step too
            return False
        if self.best is None:
            self.ewa = cost
        else:
            alpha = min(b / (n + 1), 1.0)
            self.ewa = self.ewa * (1 - alpha) + cost * alpha
        if self.tol > 0 and change <= self.tol:
            return True
        if self.best is None or self.ewa < self.best:
            self.best, self.flat = self.ewa, 0
        else:
            self.flat += 1
        return self.mni is not None and self.flat >= self.mni


def _check_values(t: torch.Tensor, where: str) -> None:
    """Finite and nonnegative (the values of a sparse chunk, or a dense one)."""
    if t.numel() == 0:
        return
    lo, hi = (float(x) for x in torch.aminmax(t))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(
            f"{where} contains NaN or infinity ({bad} entries); {_NAME} needs finite values"
        )
    if lo < 0:
        raise ValueError(
            f"Negative values in data passed to {_NAME} ({where}): found "
            f"{int((t < 0).sum())} negative entries (minimum {lo:.6g}); X must be nonnegative"
        )


def _seed(rs: Any) -> int | None:
    """``random_state`` as `dnmf.factorize`'s seed (a ``RandomState`` draws one)."""
    if isinstance(rs, np.random.RandomState):
        return int(rs.randint(np.iinfo(np.int32).max))
    if rs is None or (isinstance(rs, numbers.Integral) and not isinstance(rs, bool)):
        return val.check_seed(rs, "random_state")
    raise ValueError(
        f"random_state must be None, an int or a RandomState (ints from 0 to 2**64 - 1), got {rs!r}"
    )


__all__ = ["ONLINE_SOLVERS", "MiniBatchDeepNMF"]
