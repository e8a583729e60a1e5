"""Helpers of the benchmarks tests: the CLI in a subprocess, synthetic face folders, PNG writing."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]

# One subprocess runs many CLI invocations through the real entry point (benchmarks.cli.main),
# recording exit code, stdout, stderr and whether a traceback escaped, as a shell would see
# them: the interpreter start (about 4 s with torch) is paid once, not per case.
_BATCH_DRIVER = r"""
import contextlib, io, json, os, sys, traceback, warnings
warnings.simplefilter("default")
from benchmarks.cli import main
results = []
for argv in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            rc = "traceback"
    results.append({"argv": argv, "rc": rc, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess]:
    """``run_cli(*args, cwd=None, umask=None)``: ``python -m benchmarks ARGS`` in a subprocess."""

    def run(
        *args: str, cwd: Path | None = None, umask: int | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "benchmarks", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=_env(),
            timeout=timeout,
            preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
        )

    return run


@pytest.fixture(scope="session")
def start_cli() -> Callable[..., subprocess.Popen]:
    """``start_cli(*args, cwd=None)``: the CLI started in the background (a Popen)."""

    def start(*args: str, cwd: Path | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "benchmarks", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=_env(),
        )

    return start


@pytest.fixture(scope="session")
def cli_batch() -> Callable[..., list[dict]]:
    """``cli_batch([argv, ...], cwd=None)``: many CLI runs in one subprocess (see above)."""

    def run(argvs: list[list[str]], cwd: Path | None = None) -> list[dict]:
        r = subprocess.run(
            [sys.executable, "-c", _BATCH_DRIVER],
            input=json.dumps([[str(a) for a in argv] for argv in argvs]),
            capture_output=True,
            text=True,
            cwd=cwd,
            env=_env(),
            timeout=900,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    return run


# --------------------------------------------------------------------------- images
def blob_faces(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """``n`` seeded ``(3, size, size)`` stand-ins for faces in [0, 1]: a colour, a sine
    texture and one bright block each, as tensors (the method tests' training images)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        c = torch.rand(3, 1, 1, generator=g) * 0.5 + 0.2
        img = c + 0.2 * torch.sin(xx / (2 + 3 * torch.rand(1, generator=g))) * torch.cos(yy / 3)
        y0, x0 = torch.randint(4, 18, (2,), generator=g).tolist()
        img[:, y0 : y0 + 10, x0 : x0 + 8] = torch.rand(3, 1, 1, generator=g) * 0.8 + 0.1
        out[i] = img.clamp(0, 1)
    return out


@pytest.fixture(scope="session")
def faces_of() -> Callable[..., torch.Tensor]:
    """:func:`blob_faces` as a fixture: ``faces_of(n, seed, size=32)``."""
    return blob_faces


def face_pixels(seed: int, size: tuple[int, int] = (40, 48)) -> np.ndarray:
    """A smooth synthetic RGB face stand-in on [0, 1], ``(H, W, 3)`` float64 (seeded)."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.4 * np.sin(xx / (3 + seed % 5)) * np.cos(yy / 4.0)
    return np.clip(base[..., None] + 0.05 * rng.standard_normal((h, w, 3)), 0, 1)


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _filtered_rows(raw: np.ndarray, bpp: int) -> bytes:
    """PNG-filter every row of ``raw`` (H, stride) uint8, cycling through all five filters."""
    r = raw.astype(np.int32)
    zeros = np.zeros(bpp, np.int32)
    out = []
    for y in range(r.shape[0]):
        a = np.concatenate([zeros, r[y, :-bpp]])
        b = r[y - 1] if y else np.zeros_like(r[y])
        c = np.concatenate([zeros, b[:-bpp]])
        pred = [0 * a, a, b, (a + b) >> 1, _paeth(a, b, c)][y % 5]
        out.append(bytes([y % 5]) + ((r[y] - pred) & 255).astype(np.uint8).tobytes())
    return b"".join(out)


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2))
ADAM7 += ((0, 1, 1, 2),)


def write_png16(path: Path, samples: np.ndarray, interlace: bool = False) -> Path:
    """Write ``uint16`` samples ``(H, W)`` or ``(H, W, C)`` as a 16-bit PNG (an independent
    encoder: Pillow cannot write 16-bit colour PNGs)."""
    a = np.asarray(samples, dtype=">u2")
    h, w = a.shape[:2]
    ch = 1 if a.ndim == 2 else a.shape[2]
    a = a.reshape(h, w, ch)
    passes = ADAM7 if interlace else ((0, 0, 1, 1),)
    data = b""
    for x0, y0, dx, dy in passes:
        sub = np.ascontiguousarray(a[y0::dy, x0::dx])
        if sub.size:
            rows = np.frombuffer(sub.tobytes(), np.uint8).reshape(len(sub), -1)
            data += _filtered_rows(rows, 2 * ch)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
    ihdr = struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, int(interlace))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(data))
        + chunk(b"IEND", b"")
    )
    return path


def make_faces(root: Path, depth: str = "8", people: int = 4, per: int = 3) -> Path:
    """``people`` x ``per`` synthetic faces named like the Kaggle set, written as 8-bit JPEG
    (``"8"``), 8-bit PNG (``"8png"``), 16-bit gray PNG (``"16gray"``) or 16-bit RGB PNG
    (``"16rgb"``)."""
    from PIL import Image

    for p in range(people):
        for k in range(per):
            x = face_pixels(10 * p + k)
            if depth in ("8", "8png"):
                path = root / f"Person {p}_{k}.{'jpg' if depth == '8' else 'png'}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.round(x * 255).astype(np.uint8)).save(path)
            elif depth == "16gray":
                g = x @ np.array([0.299, 0.587, 0.114])
                root.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.round(g * 65535).astype(np.uint16)).save(
                    root / f"Person {p}_{k}.png"
                )
            else:
                write_png16(root / f"Person {p}_{k}.png", np.round(x * 65535).astype(np.uint16))
    return root


@pytest.fixture(scope="session")
def png16() -> Callable[..., Path]:
    """The independent 16-bit PNG encoder, as a fixture."""
    return write_png16


@pytest.fixture(scope="session")
def faces_maker() -> Callable[..., Path]:
    """``faces_maker(root, depth="8"|"8png"|"16gray"|"16rgb")``: a synthetic face folder."""
    return make_faces


@pytest.fixture(scope="session")
def face_pixels_of() -> Callable[..., np.ndarray]:
    return face_pixels
