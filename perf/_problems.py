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
