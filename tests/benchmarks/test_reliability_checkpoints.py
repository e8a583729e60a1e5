"""`deblur-bench restore --checkpoint` and `train --resume` on a damaged checkpoint, and
`train --resume` on a full disk: one ``error:`` line, exit 1, nothing written and nothing in
the run folder changed.

The checkpoints come from a real one-epoch training on the smoke preset; the damage is made
as a disk or a copy makes it, inside one tensor's bytes in the zip archive (``zipdamage``), so
``torch.load`` alone would load the file without complaint.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.convae import zipdamage

DAMAGED = "checksum mismatch: the file is damaged"
FREE = 256 * 1024  # left on the full disk: room for the lock, not for a checkpoint


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder``, hidden ones included, with its bytes (None: a folder)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


@contextlib.contextmanager
def full_tmpfs(where: Path, size: str) -> Iterator[Path | None]:
    """A tmpfs of ``size`` mounted at ``where`` (None where mounting is not possible: not root,
    no mount permission), unmounted on the way out."""
    where.mkdir()
    r = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
        )
        if os.geteuid() == 0
        else None
    )
    if r is None or r.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def fill(disk: Path, free: int) -> None:
    """Fill ``disk`` with one file so that ``free`` bytes are left."""
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(65536))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        f.truncate(max(0, f.seek(0, 2) - free))


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, run_cli, cli_batch):
    """One training, then the commands on damaged copies of its checkpoints and on a copy of
    the run on a full disk (one process)."""
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
    resume = ["train", "convae", "--preset", "smoke", "--quiet", "--threads", "1", "--epochs", "2"]
    cases = {
        "restore": ["restore", site / "photo.png", "--method", "convae", "--quiet"]
        + ["--checkpoint", site / "best.pt", "--out", site / "restored"],
        "resume": resume + ["--resume", site / "resumed" / "last.pt"],
    }
    with full_tmpfs(site / "disk", "8m") as disk:
        before = {"resumed": tree(site / "resumed")}
        if disk is not None:
            shutil.copytree(site / "run", disk / "run")
            fill(disk, FREE)
            before["disk"] = tree(disk)
            cases["full_disk"] = resume + ["--resume", disk / "run" / "last.pt"]
        got = dict(zip(cases, cli_batch(list(cases.values()))))
        after = tree(disk) if disk is not None else None
    return site, got, before, after


@pytest.mark.slow  # one training in a subprocess
def test_fault_restore_refuses_a_damaged_checkpoint(damaged):
    site, got, _, _ = damaged
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
    site, got, before, _ = damaged
    r = got["resume"]
    assert r["rc"] == 1, r["err"]
    errors = [ln for ln in r["err"].splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and DAMAGED in errors[0], r["err"]
    assert str(site / "resumed" / "last.pt") in errors[0]
    assert "Traceback" not in r["err"]
    assert tree(site / "resumed") == before["resumed"]  # nothing written, replaced or left


@pytest.mark.slow  # one training in a subprocess, and a second one that the full disk stops
def test_fault_full_disk_during_train_resume_keeps_the_checkpoints(damaged):
    site, got, before, after = damaged
    if "full_disk" not in got:
        pytest.skip("mounting a small file system (tmpfs) needs root and mount permission")
    r = got["full_disk"]
    assert r["rc"] == 1, r["err"][-3000:]
    assert "Traceback" not in r["err"], r["err"][-3000:]
    errors = [ln for ln in r["err"].splitlines() if ln.startswith("error:")]
    run = site / "disk" / "run"
    assert errors in (
        [f"error: cannot write {run / name}: no space left on device"]
        for name in ("best.pt", "last.pt")
    ), r["err"]
    assert after == before["disk"]  # last.pt, best.pt and the rest as they were, no temp file
