"""Shared fixtures: devices, the shipped face set, tiny image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """CPU always; CUDA when a GPU is present."""
    return torch.device(request.param)


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """The face set that ships with the package (750 JPEGs, 50 people x 15)."""
    from benchmarks.faces import SHIPPED_FACES

    return SHIPPED_FACES


def write_image(
    path: Path, size: tuple[int, int] = (40, 48), seed: int = 0, mode: str = "RGB"
) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.4 * np.sin(xx / (3 + seed % 5)) * np.cos(yy / 4.0)
    arr = np.clip(base[..., None] + 0.05 * rng.standard_normal((h, w, 3)), 0, 1)
    img = Image.fromarray((arr * 255).astype(np.uint8))
    img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture
def tiny_faces(tmp_path) -> Path:
    """A folder of 4 people x 3 synthetic 40x48 images named like the Kaggle set."""
    root = tmp_path / "faces"
    for p in range(4):
        for k in range(3):
            write_image(root / f"Person {p}_{k}.jpg", seed=10 * p + k)
    return root


@pytest.fixture
def make_image():
    """The :func:`write_image` helper, as a fixture (tests are not an importable package)."""
    return write_image


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use tiny tensors: one thread is faster than two fighting over a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
