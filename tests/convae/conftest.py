"""Fixtures for convae tests: tiny deterministic (blurred, sharp) pairs."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

# Plain `pytest` puts tests/ on sys.path, where the folder tests/convae/ (no __init__.py)
# would be imported as a namespace package named `convae`, shadowing the real one (the
# editable install's finder comes after sys.path). A regular package anywhere on sys.path
# wins over a namespace portion, so make sure the repository root is there.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.append(_REPO)
if "convae" in sys.modules and getattr(sys.modules["convae"], "__file__", None) is None:
    del sys.modules["convae"]


def make_pairs(n: int, c: int = 3, h: int = 32, w: int = 32,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random 'sharp' images and a 3x3 box-blurred copy, float32 in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    sharp = torch.rand(n, c, h, w, generator=g)
    k = torch.full((c, 1, 3, 3), 1 / 9)
    blurred = F.conv2d(F.pad(sharp, (1, 1, 1, 1), mode="reflect"), k, groups=c)
    return blurred.clamp(0, 1), sharp


@pytest.fixture
def pairs():
    return make_pairs

