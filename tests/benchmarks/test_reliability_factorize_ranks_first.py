"""``deblur-bench factorize`` with ranks its NNDSVD initialisation cannot make: the refusal comes
before any progress text (it used to follow ``dnmf.factorize: pretraining the layers ...``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _factorize(*args: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "factorize", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    "ranks, message",
    [
        (["100000"], "init='nndsvda' needs the first rank <= min(m, n) = 12 (V is 64 x 12)"),
        (["4", "9"], "init='nndsvda' initializes layer 2 from the previous layer's 4 x 12 codes"),
    ],
    ids=["first_rank", "second_rank"],
)
def test_bad_input_ranks_nndsvd_cannot_make_are_refused_before_any_progress(
    tiny_faces, tmp_path, ranks, message
):
    out = tmp_path / "run"
    p = _factorize("--data-dir", tiny_faces, "--size", "8", "--gray", "--ranks", *ranks,
                   "--init", "nndsvda", "--out", out)  # fmt: skip
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), p.stderr  # nothing before
    assert p.stdout == "" and not out.exists()


def test_valid_deep_ranks_still_announce_the_pretraining(tiny_faces, tmp_path):
    out = tmp_path / "run"
    p = _factorize("--data-dir", tiny_faces, "--size", "8", "--gray", "--ranks", 4, 2,
                   "--max-iter", 3, "--no-progress", "--out", out)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert "pretraining" not in p.stderr  # --no-progress: no progress text at all
    p = _factorize("--data-dir", tiny_faces, "--size", "8", "--gray", "--ranks", 4, 2,
                   "--max-iter", 3, "--out", tmp_path / "run2")  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert "dnmf.factorize: pretraining the layers ..." in p.stderr
