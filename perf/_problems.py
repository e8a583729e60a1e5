"""The matrices the ``python -m perf.<tool>`` commands fit: one home for every problem generator.

Each generator is seeded and returns the same matrix for the same arguments, so two tools (or
two runs of one tool) that name the same problem fit the same numbers:

* `random_problem`: uniform ``V`` (one matrix or a batch) with initial factors scaled like
  scikit-learn's random init (``perf.nmf_speed``, ``perf.fused_pass_ab``, the batched cases of
  ``perf.time_to_target`` and ``perf.solver_validation``); `random_problem_on` builds the same
  kind of problem as tensors on a device (``perf.nmf_speed --sweep``);
* `planted_lowrank`: a planted rank plus 10 % uniform noise, column-major (``perf.dnmf_scaling``
  and the ``lowrank``/planted cases of ``perf.time_to_target`` and ``perf.solver_validation``);
* `planted_layers`: a product ``W1 … Wk H`` of sparse factors plus Gaussian noise
  (``perf.rank_selection_planted``, the deep planted case of ``perf.solver_validation``);
* `sparse_uniform`: 95 % zeros as a scipy CSR matrix; `uniform`: pure noise;
* `sparse_random`: a very sparse CSR matrix (e.g. 0.05 % nonzero) drawn in ``O(nnz)`` memory,
  and `poisson_counts`: counts of a planted low-rank Poisson rate at a share of the entries
  (the sparse and Kullback–Leibler workloads of ``perf.time_to_target``);
* `write_planted_rows`: `planted_lowrank`'s kind of matrix, row-major, written to a ``.npy``
  file a block of rows at a time (the memory-mapped minibatch workload);
* `faces`: the face matrix (64×64 gray faces as columns) of a folder given by a flag, else of
  ``$DEBLUR_FACES_DIR``, else of the shipped face set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from benchmarks.errors import UserError
from benchmarks.faces import SHIPPED_FACES
from benchmarks.factorize_faces import FaceFolderError, load_face_matrix


def random_problem(
    m: int, n: int, rank: int, dtype: Any = np.float32, seed: int = 0, batch: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random nonnegative ``V`` (m × n, or ``batch`` × m × n) and initial ``W0``, ``H0``
    (scaled like scikit-learn's random init, so ``W0 H0`` has ``V``'s mean)."""
    np_dtype = np.dtype(dtype)
    lead = () if batch is None else (batch,)
    rng = np.random.default_rng(seed)
    V = rng.random((*lead, m, n), dtype=np.float64).astype(np_dtype)
    avg = np.sqrt(V.mean() / rank)
    W0 = (avg * rng.random((*lead, m, rank)) * 2).astype(np_dtype)
    H0 = (avg * rng.random((*lead, rank, n)) * 2).astype(np_dtype)
    return V, W0, H0


def random_problem_on(
    m: int, n: int, rank: int, generator: torch.Generator, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`random_problem`'s kind of problem drawn on ``device`` from ``generator`` (no host copy,
    so sizes up to the device's memory work; successive calls continue the generator)."""
    V = torch.rand(m, n, generator=generator, device=device, dtype=dtype)
    avg = float(V.mean() / rank) ** 0.5
    W0 = 2 * avg * torch.rand(m, rank, generator=generator, device=device, dtype=dtype)
    H0 = 2 * avg * torch.rand(rank, n, generator=generator, device=device, dtype=dtype)
    return V, W0, H0


def planted_lowrank(m: int, n: int, rank: int, seed: int, dtype: str) -> np.ndarray:
    """Planted nonnegative rank-``rank`` matrix plus 10% uniform noise, stored column-major
    (Fortran order), so each process's block of columns is one contiguous read."""
    rng = np.random.default_rng(seed)
    W = rng.random((m, rank), dtype=np.float32)
    H = rng.random((rank, n), dtype=np.float32)
    V = np.asfortranarray(W @ H / rank)
    V += 0.1 * rng.random((m, n), dtype=np.float32) * float(V.mean())
    return V.astype(dtype, copy=False)


def planted_layers(
    seed: int, ranks: tuple[int, ...], m: int = 60, n: int = 50, noise: float = 0.1
) -> np.ndarray:
    """``W1 … Wk H`` (float64) with sparse uniform factors (half the entries zero) plus
    Gaussian noise of ``noise`` times the product's mean as its standard deviation (default
    10 %), clipped at 0."""
    rng = np.random.default_rng(seed)
    dims = [m, *ranks, n]
    X = np.eye(m)
    for a, b in zip(dims, dims[1:]):
        X = X @ (rng.random((a, b)) * (rng.random((a, b)) < 0.5))
    return np.clip(X + noise * X.mean() * rng.standard_normal((m, n)), 0, None)


def sparse_uniform(m: int, n: int, seed: int, density: float = 0.05) -> sp.csr_matrix:
    """An ``m × n`` float32 scipy CSR matrix with a ``density`` share of uniform nonzeros."""
    return sp.random(m, n, density=density, format="csr", dtype=np.float32, random_state=seed)


def _sparse_positions(
    rng: np.random.Generator, m: int, n: int, density: float
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of about ``density · m · n`` distinct entries, row-major sorted,
    drawn in ``O(nnz)`` memory (flat indices with replacement, duplicates dropped: at 0.05 %
    about 0.025 % of the draws)."""
    k = int(round(density * m * n))
    flat = np.unique(rng.integers(0, m * n, size=k, dtype=np.int64))
    return flat // n, flat % n


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, m: int, n: int) -> sp.csr_matrix:
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
    index = np.int32 if max(m, n, len(values)) < 2**31 else np.int64
    return sp.csr_matrix((values, cols.astype(index), indptr.astype(index)), shape=(m, n))


def sparse_random(
    m: int, n: int, density: float, seed: int, dtype: Any = np.float64
) -> sp.csr_matrix:
    """An ``m × n`` CSR matrix with about ``density · m · n`` nonzeros uniform in (0, 1],
    built in ``O(nnz)`` memory (scipy's ``sparse.random`` with an int seed draws its positions
    through a permutation of all ``m · n`` entries)."""
    rng = np.random.default_rng(seed)
    rows, cols = _sparse_positions(rng, m, n, density)
    values = (1.0 - rng.random(len(rows))).astype(dtype)  # (0, 1]: no stored zero
    return _csr(rows, cols, values, m, n)


def poisson_counts(
    m: int, n: int, density: float, rank: int, seed: int, dtype: Any = np.float64
) -> sp.csr_matrix:
    """Counts at about ``density · m · n`` entries: ``1 + Poisson(λ)`` with the rate ``λ``
    of a planted rank-``rank`` model ``W H`` (Gamma(0.5) factors, mean rate 2) at those
    entries, as a CSR matrix; the other entries are zero."""
    rng = np.random.default_rng(seed)
    rows, cols = _sparse_positions(rng, m, n, density)
    W = rng.gamma(0.5, 1.0, size=(m, rank))
    H = rng.gamma(0.5, 1.0, size=(rank, n))
    lam = np.empty(len(rows))
    for i in range(0, len(rows), 1 << 16):  # the model at the chosen entries, in blocks
        j = slice(i, i + (1 << 16))
        lam[j] = np.einsum("ij,ji->i", W[rows[j]], H[:, cols[j]])
    lam *= 2.0 / max(float(lam.mean()), 1e-300) if len(lam) else 1.0
    values = (1 + rng.poisson(lam)).astype(dtype)
    return _csr(rows, cols, values, m, n)


def write_planted_rows(
    path: str | os.PathLike,
    m: int,
    n: int,
    rank: int,
    seed: int,
    dtype: Any = np.float32,
    block: int = 8192,
) -> Path:
    """Write a planted nonnegative rank-``rank`` ``m × n`` matrix plus 10 % uniform noise
    (`planted_lowrank`'s kind) to the ``.npy`` file ``path``, row-major, ``block`` rows at a
    time (memory ``O(block · n)`` whatever ``m``); returns the path."""
    rng = np.random.default_rng(seed)
    H = rng.random((rank, n), dtype=np.float32) / rank
    mean = 0.25  # E[W H / rank] for uniform factors
    out = np.lib.format.open_memmap(Path(path), mode="w+", dtype=np.dtype(dtype), shape=(m, n))
    try:
        for i in range(0, m, block):
            b = min(block, m - i)
            rows = rng.random((b, rank), dtype=np.float32) @ H
            rows += 0.1 * mean * rng.random((b, n), dtype=np.float32)
            out[i : i + b] = rows
        out.flush()
    finally:
        del out
    return Path(path)


def uniform(seed: int, m: int, n: int) -> np.ndarray:
    """Pure uniform noise in [0, 1), float64: a matrix with no low-rank structure."""
    return np.random.default_rng(seed).random((m, n))


def faces(folder: str | os.PathLike | None = None, *, flag: str = "", size: int = 64) -> np.ndarray:
    """The face matrix (``size``×``size`` gray faces as columns) of ``folder`` (given by the
    command's flag ``flag``), else of ``$DEBLUR_FACES_DIR``, else of the shipped set; a
    `UserError` naming the folder and where it came from (the flag, the variable or the
    shipped set) when it holds no readable image."""
    env = os.environ.get("DEBLUR_FACES_DIR")
    if folder:
        d, given_as = str(folder), flag
    elif env:
        d, given_as = env, "DEBLUR_FACES_DIR"
    else:
        d, given_as = str(SHIPPED_FACES), "the shipped face set"
    try:
        V, _, _ = load_face_matrix(d, size=size, gray=True)
    except FaceFolderError as exc:  # its message names deblur-bench's --data-dir
        why = str(exc).removeprefix(f"--data-dir {Path(d)} ")
        raise UserError(f"{given_as} {d} {why}") from None
    return V
