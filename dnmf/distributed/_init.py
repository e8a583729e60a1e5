"""Initial factors of a column-split run that never need all of ``V`` in one process.

``init='random'`` draws ``W`` from the seed and each block of `RANDOM_BLOCK` columns of
``H`` from the seed and the block's global index, so any split of the columns gives the same
factors. ``init='nndsvd'|'nndsvda'|'nndsvdar'`` computes the leading left singular vectors
``U`` of a sample of columns (chosen from the seed) gathered on rank 0, broadcasts ``U``, and
completes NNDSVD from ``Uᵀ V`` on each shard with norms summed over the shards, by the same
code as `dnmf.factorize`'s (``dnmf._init``): with every column sampled it is exactly
that initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._init import fill_nndsvd_zeros, nndsvd_from_svd, top_svd
from ._comm import Comm

#: Columns per block of the keyed random generator: block ``b`` (global columns
#: ``[256 b, 256 b + 256)``) draws from a generator seeded by ``(seed, layer, b)``.
RANDOM_BLOCK = 256
_TAG_W, _TAG_H, _TAG_SAMPLE = 1, 2, 3


@dataclass
class Layout:
    """Where every process's columns are: ``offsets[r]``, ``counts[r]``, ``n`` in all."""

    offsets: list[int]
    counts: list[int]
    n: int


def _derive_seed(*keys: int) -> int:
    """A 64-bit generator seed from integer keys (numpy's ``SeedSequence`` hash)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0])


def _keyed_normal(seed: int, tag: int, layer: int, rows: int, cols: int) -> torch.Tensor:
    """``rows × cols`` standard normals (float64, CPU) from the keys alone."""
    gen = torch.Generator().manual_seed(_derive_seed(seed, tag, layer))
    return torch.randn((rows, cols), generator=gen, dtype=torch.float64)


def keyed_column_normal(
    seed: int, layer: int, rows: int, start: int, stop: int, tag: int = _TAG_H
) -> torch.Tensor:
    """Standard normals for global columns ``start … stop - 1`` (``rows × (stop - start)``).

    Column ``j`` depends only on ``(seed, tag, layer, j)``: it comes from block
    ``j // RANDOM_BLOCK``, drawn by a generator seeded from ``(seed, tag, layer, block)``. So
    any split of the columns over processes draws the same matrix.
    """
    out = torch.empty((rows, stop - start), dtype=torch.float64)
    if stop <= start:
        return out
    B = RANDOM_BLOCK
    for b in range(start // B, (stop - 1) // B + 1):
        gen = torch.Generator().manual_seed(_derive_seed(seed, tag, layer, b))
        blk = torch.randn((rows, B), generator=gen, dtype=torch.float64)
        lo, hi = max(start, b * B), min(stop, (b + 1) * B)
        out[:, lo - start : hi - start] = blk[:, lo - b * B : hi - b * B]
    return out


def sample_columns(n_cols: int, n_sample: int, seed: int, layer: int = 0) -> np.ndarray:
    """Sorted global indices of the columns the NNDSVD init samples (all when ``n_sample >= n``)."""
    if n_sample >= n_cols:
        return np.arange(n_cols, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _TAG_SAMPLE, int(layer)]))
    return np.sort(rng.choice(n_cols, size=n_sample, replace=False)).astype(np.int64)


def global_mean(comm: Comm, X: torch.Tensor, n: int) -> torch.Tensor:
    """The mean of the sharded ``X`` (``p × n`` in all), in float64."""
    total = comm.sum_(X.sum(dtype=torch.float64).reshape(1))
    return (total / (X.shape[0] * n))[0]


def init_layer(
    comm: Comm,
    X: torch.Tensor,
    r: int,
    init: str,
    lay: Layout,
    seed: int,
    layer: int,
    n_sample: int,
    gen: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial ``(W, H)`` of layer ``layer`` with ``X ≈ W H`` (``H``: this shard's columns)."""
    if init == "random":
        return _random_layer(comm, X, r, lay, seed, layer)
    return _nndsvd_layer(comm, X, r, init, lay, seed, layer, n_sample, gen)


def _random_layer(
    comm: Comm, X: torch.Tensor, r: int, lay: Layout, seed: int, layer: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """|N(0, 1)| · sqrt(mean(X) / r), as ``dnmf._init.random_init``, with keyed draws."""
    avg = float((global_mean(comm, X, lay.n) / r).sqrt())  # a float: the draws are on the CPU
    p, off = X.shape[0], lay.offsets[comm.rank]
    W = (avg * _keyed_normal(seed, _TAG_W, layer, p, r).abs()).to(X.device, X.dtype)
    H = avg * keyed_column_normal(seed, layer, r, off, off + X.shape[1]).abs()
    return W.contiguous(), H.to(X.device, X.dtype).contiguous()


def _nndsvd_layer(
    comm: Comm,
    X: torch.Tensor,
    r: int,
    variant: str,
    lay: Layout,
    seed: int,
    layer: int,
    n_sample: int,
    gen: torch.Generator | None,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """NNDSVD of the sharded ``X`` (``p × n``) from the top-``r`` left singular vectors of a
    column sample (``dnmf._init.nndsvd`` when the sample is every column)."""
    p, off, c = X.shape[0], lay.offsets[comm.rank], X.shape[1]
    U = _sampled_left_vectors(comm, X, r, lay, seed, layer, n_sample, gen)
    Y = U.T @ X  # (r, c): S Vh restricted to this shard (exact when the sample is all of X)
    S = comm.sum_(Y.double().square().sum(dim=1)).sqrt().to(X.dtype)
    Vh = Y / S.clamp_min(torch.finfo(X.dtype).tiny).unsqueeze(1)

    def row_norms(yp: torch.Tensor, yn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y2 = comm.sum_(
            torch.stack([yp.double().square().sum(dim=1), yn.double().square().sum(dim=1)])
        )
        return y2[0].sqrt().to(X.dtype), y2[1].sqrt().to(X.dtype)

    def noise() -> tuple[torch.Tensor, torch.Tensor]:  # nndsvdar: keyed draws
        nw = _keyed_normal(seed, _TAG_W + 10, layer, p, r)
        nh = keyed_column_normal(seed, layer, r, off, off + c, tag=_TAG_H + 10)
        return nw.to(X.device, X.dtype), nh.to(X.device, X.dtype)

    W, H = nndsvd_from_svd(U, S, Vh, eps=eps, row_norms=row_norms)
    return fill_nndsvd_zeros(
        W, H, variant, mean=lambda: global_mean(comm, X, lay.n).to(X.dtype), noise=noise
    )


def _sampled_left_vectors(
    comm: Comm,
    X: torch.Tensor,
    r: int,
    lay: Layout,
    seed: int,
    layer: int,
    n_sample: int,
    gen: torch.Generator | None,
) -> torch.Tensor:
    """Collective: the top-``r`` left singular vectors of the sampled columns of the sharded
    ``X``, computed on rank 0 (with ``gen``, as `dnmf.factorize`'s SVD) and broadcast."""
    p, off, c = X.shape[0], lay.offsets[comm.rank], X.shape[1]
    idx = sample_columns(lay.n, n_sample, seed, layer)
    counts = [int(((idx >= o) & (idx < o + k)).sum()) for o, k in zip(lay.offsets, lay.counts)]
    mine = torch.as_tensor(idx[(idx >= off) & (idx < off + c)] - off, device=X.device)
    blocks = comm.gather_cols(X.index_select(1, mine), counts)
    U = torch.empty((p, r), dtype=X.dtype, device=X.device)
    if comm.rank == 0:
        assert blocks is not None and gen is not None
        order = np.argsort(lay.offsets, kind="stable")  # global column order
        C = torch.cat([blocks[i] for i in order], dim=1)
        U.copy_(top_svd(C, r, gen)[0])
        del C, blocks
    comm.broadcast_(U)
    return U
