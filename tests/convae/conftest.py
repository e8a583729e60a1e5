"""Fixtures for convae tests: tiny deterministic (blurred, sharp) pairs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F


def make_pairs(
    n: int, c: int = 3, h: int = 32, w: int = 32, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random 'sharp' images and a 3x3 box-blurred copy, float32 in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    sharp = torch.rand(n, c, h, w, generator=g)
    k = torch.full((c, 1, 3, 3), 1 / 9)
    blurred = F.conv2d(F.pad(sharp, (1, 1, 1, 1), mode="reflect"), k, groups=c)
    return blurred.clamp(0, 1), sharp


@pytest.fixture
def pairs():
    return make_pairs


@pytest.fixture(autouse=True)
def _one_thread():
    """The models here are tiny: one intra-op thread is as fast, and it avoids OpenMP
    spin-waiting when the 2-core CI machine is shared (observed: 10x slower tests)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
