"""`deblur-bench restore --checkpoint` and `train --resume` on a damaged checkpoint: one
``error:`` line, exit 1, nothing written and nothing in the run folder changed.

The checkpoints come from a real one-epoch training on the smoke preset; the damage is made
as a disk or a copy makes it, inside one tensor's bytes in the zip archive (``zipdamage``), so
``torch.load`` alone would load the file without complaint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.convae import zipdamage

DAMAGED = "checksum mismatch: the file is damaged"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, hidden ones included, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, run_cli, cli_batch):
    """One training, then both commands on damaged copies of its checkpoints (one process)."""
    site = tmp_path_factory.mktemp("ckpt")
    r = run_cli(
        "train", "convae", "--preset", "smoke", "--quiet", "--threads", "1", "--epochs", "1",
        "--out", site / "run",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    shutil.copytree(site / "run", site / "resumed")
    zipdamage.zero_bytes(site / "resumed" / "last.pt", 4096)
    shutil.copyfile(site / "run" / "best.pt", site / "best.pt")
    zipdamage.zero_bytes(site / "best.pt", 4000)
    Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(site / "photo.png")
    before = tree(site / "resumed")
    cases = {
        "restore": ["restore", site / "photo.png", "--method", "convae", "--quiet"]
        + ["--checkpoint", site / "best.pt", "--out", site / "restored"],
        "resume": ["train", "convae", "--preset", "smoke", "--quiet", "--threads", "1"]
        + ["--epochs", "2", "--resume", site / "resumed" / "last.pt"],
    }
    got = dict(zip(cases, cli_batch(list(cases.values()))))
    return site, got, before


@pytest.mark.slow  # one training in a subprocess
def test_fault_restore_refuses_a_damaged_checkpoint(damaged):
    site, got, _ = damaged
    r = got["restore"]
    assert r["rc"] == 1, r["err"]
    errors = [ln for ln in r["err"].splitlines() if ln.startswith("error:")]
    assert errors == [f"error: checkpoint {site / 'best.pt'}: {DAMAGED} "
                      "(its content differs from the SHA-256 written with it); "
                      "use another copy or train again"], r["err"]  # fmt: skip
    assert "Traceback" not in r["err"] and r["out"] == ""
    assert not (site / "restored").exists() or not any((site / "restored").iterdir())


@pytest.mark.slow  # one training in a subprocess
def test_fault_resume_refuses_a_damaged_last_pt(damaged):
    site, got, before = damaged
    r = got["resume"]
    assert r["rc"] == 1, r["err"]
    errors = [ln for ln in r["err"].splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and DAMAGED in errors[0], r["err"]
    assert str(site / "resumed" / "last.pt") in errors[0]
    assert "Traceback" not in r["err"]
    assert tree(site / "resumed") == before  # nothing written, replaced or left behind
