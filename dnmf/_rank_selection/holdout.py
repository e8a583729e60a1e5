"""Held-out entries for rank selection: which entries of ``V`` each fold hides from the fit.

Two patterns, both Wold-style (entries, not whole rows or columns, are held out, so every row
and every column keeps most of its entries and the model can predict the hidden ones):

* ``"blocks"``: the rows and the columns of ``V`` are shuffled and cut into ``G = 1/holdout``
  groups each, which tiles ``V`` into ``G × G`` blocks; fold ``f`` holds out the ``G`` blocks
  ``(a, (a + f) mod G)``, one in every row group and every column group (a shifted block
  diagonal of the shuffled matrix). Every row and every column loses the same share of its
  entries, folds are disjoint, and for β = 2 the masked updates reduce to products with small
  per-block Gram matrices (`dnmf._rank_selection.cv`), which is what makes the batched search
  fast.
* ``"entries"``: i.i.d. speckle. The entries are shuffled once and fold ``f`` holds out the
  ``f``-th slice of ``round(holdout · m · n)`` of them (disjoint folds), as RcppML's
  ``crossValidate`` and Wold (1978) do.

Everything here is drawn from one ``numpy`` generator, so a seed gives the same folds on every
device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PATTERNS = ("blocks", "entries")


def n_groups(holdout: float) -> int:
    """The number of row (and column) groups of the block pattern: ``round(1 / holdout)``."""
    return max(2, int(round(1.0 / holdout)))


@dataclass(frozen=True)
class BlockDesign:
    """The block pattern: group of every row and column, and the padded, shuffled layout.

    ``row_group[i]`` / ``col_group[j]`` are the groups of row ``i`` and column ``j`` of ``V``.
    In the padded layout used by `dnmf._rank_selection.cv` the rows of group ``a`` occupy
    positions ``a·ma … a·ma + size − 1`` of ``G·ma`` (``ma = ceil(m / G)``; the spare
    positions are zero rows), and likewise for the columns (``nb = ceil(n / G)``):
    ``row_pos[i]`` / ``col_pos[j]`` are the padded positions of row ``i`` / column ``j``. Zero
    rows and columns stay inert in multiplicative updates (zero factor rows stay zero), so the
    padded problem has exactly the original solution.
    """

    m: int
    n: int
    G: int
    row_group: np.ndarray
    col_group: np.ndarray
    row_pos: np.ndarray
    col_pos: np.ndarray

    @property
    def ma(self) -> int:
        return -(-self.m // self.G)

    @property
    def nb(self) -> int:
        return -(-self.n // self.G)

    def heldout_col_group(self, fold: int) -> np.ndarray:
        """``b(a)`` for every row group ``a``: the column group fold ``fold`` holds out."""
        return (np.arange(self.G) + fold) % self.G

    def heldout_row_group(self, fold: int) -> np.ndarray:
        """``a(b)`` for every column group ``b``: the row group held out with it."""
        return (np.arange(self.G) - fold) % self.G

    def heldout(self, fold: int) -> np.ndarray:
        """Boolean ``(m, n)`` array, True at the entries fold ``fold`` holds out."""
        return ((self.row_group[:, None] + fold) % self.G) == self.col_group[None, :]

    def pad(self, X: torch.Tensor) -> torch.Tensor:
        """``X`` (…, m, n) in the padded, shuffled layout (…, G·ma, G·nb), zeros elsewhere."""
        rows = torch.as_tensor(self.row_pos, device=X.device)
        cols = torch.as_tensor(self.col_pos, device=X.device)
        tmp = X.new_zeros((*X.shape[:-2], self.G * self.ma, X.shape[-1]))
        tmp[..., rows, :] = X
        out = X.new_zeros((*X.shape[:-2], self.G * self.ma, self.G * self.nb))
        out[..., cols] = tmp
        return out

    def pad_rows(self, W: torch.Tensor) -> torch.Tensor:
        """A factor with V's rows (…, m, r) in the padded layout (…, G·ma, r)."""
        out = W.new_zeros((*W.shape[:-2], self.G * self.ma, W.shape[-1]))
        out[..., torch.as_tensor(self.row_pos, device=W.device), :] = W
        return out

    def pad_cols(self, H: torch.Tensor) -> torch.Tensor:
        """A factor with V's columns (…, r, n) in the padded layout (…, r, G·nb)."""
        out = H.new_zeros((*H.shape[:-1], self.G * self.nb))
        out[..., torch.as_tensor(self.col_pos, device=H.device)] = H
        return out

    def unpad_rows(self, W: torch.Tensor) -> torch.Tensor:
        return W[..., torch.as_tensor(self.row_pos, device=W.device), :]

    def unpad_cols(self, H: torch.Tensor) -> torch.Tensor:
        return H[..., torch.as_tensor(self.col_pos, device=H.device)]


def _split(size: int, G: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``size`` indices into ``G`` groups whose sizes differ by at most one; returns
    the group of every index and its position in the padded layout."""
    perm = rng.permutation(size)
    pad = -(-size // G)
    group = np.empty(size, dtype=np.int64)
    pos = np.empty(size, dtype=np.int64)
    start = 0
    for a in range(G):
        count = size // G + (1 if a < size % G else 0)
        members = perm[start : start + count]
        group[members] = a
        pos[members] = a * pad + np.arange(count)
        start += count
    return group, pos


def block_design(m: int, n: int, holdout: float, rng: np.random.Generator) -> BlockDesign:
    """Draw the block pattern for an ``m × n`` matrix (``G = round(1/holdout)`` groups)."""
    G = n_groups(holdout)
    if m < G or n < G:
        raise ValueError(
            f"holdout={holdout:g} cuts rows and columns into {G} groups each, which needs V to "
            f"have at least {G} rows and columns, got {m} x {n}; raise holdout"
        )
    row_group, row_pos = _split(m, G, rng)
    col_group, col_pos = _split(n, G, rng)
    return BlockDesign(m, n, G, row_group, col_group, row_pos, col_pos)


def entry_folds(
    m: int, n: int, holdout: float, folds: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """The i.i.d. pattern: ``folds`` disjoint boolean ``(m, n)`` arrays with
    ``round(holdout · m · n)`` held-out entries each."""
    count = int(round(holdout * m * n))
    if count < 1:
        raise ValueError(f"holdout={holdout:g} holds out no entry of a {m} x {n} matrix")
    order = rng.permutation(m * n)
    out = []
    for f in range(folds):
        E = np.zeros(m * n, dtype=bool)
        E[order[f * count : (f + 1) * count]] = True
        out.append(E.reshape(m, n))
    return out


def heldout_masks(
    shape: tuple[int, int], pattern: str, holdout: float, folds: int, design_seed: int
) -> tuple[BlockDesign | None, list[np.ndarray]]:
    """The block design (None for i.i.d. entries) and every fold's held-out entries."""
    rng = np.random.default_rng(design_seed)
    m, n = shape
    if pattern == "blocks":
        design = block_design(m, n, holdout, rng)
        return design, [design.heldout(f) for f in range(folds)]
    return None, entry_folds(m, n, holdout, folds, rng)
