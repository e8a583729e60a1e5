"""Damaged checkpoints are refused, full disks leave the previous checkpoints intact, and
training settings that are not finite numbers are refused.

Damage is made as a disk or a copy makes it: bytes changed inside one member of the zip
archive ``torch.save`` writes (``zipdamage``), the archive's structure intact, so ``torch.load``
itself still reads the file without complaint.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import torch

import convae
from convae import (
    CheckpointError,
    CheckpointWriteError,
    ConvAE,
    TrainConfig,
    UnverifiedCheckpointWarning,
    train,
)
from convae.checkpoint import content_digest, load_model, read_checkpoint, save_checkpoint
from tests.convae import zipdamage

DAMAGED = "checksum mismatch: the file is damaged"


def tiny(c: int = 3, base: int = 4) -> ConvAE:
    torch.manual_seed(0)
    return ConvAE(in_channels=c, base_channels=base)


def files(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` (names and bytes): what must not change."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def run(pairs, tmp_path) -> Path:
    """A folder with the ``last.pt`` and ``best.pt`` of one epoch of training."""
    b, s = pairs(8)
    out = tmp_path / "run"
    train(
        tiny(),
        (b, s),
        (b[:2], s[:2]),
        TrainConfig(epochs=1, batch_size=4),
        checkpoint_dir=out,
        progress=False,
    )
    return out


def _resume(run: Path, pairs, epochs: int = 2) -> convae.TrainResult:
    b, s = pairs(8)
    return train(
        tiny(),
        (b, s),
        (b[:2], s[:2]),
        TrainConfig(epochs=epochs, batch_size=4),
        checkpoint_dir=run,
        resume_from=run / "last.pt",
        progress=False,
    )


# --------------------------------------------------------------------------- damaged files


def test_fault_zeroed_weights_in_best_pt_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "best.pt", tiny(base=8), epoch=1)
    zipdamage.zero_bytes(path, 4000)  # 1000 float32 weights
    raw = torch.load(path, weights_only=True)  # torch itself notices nothing ...
    changed = sum(
        int((v != w).sum())
        for v, w in zip(raw["model_state"].values(), tiny(base=8).state_dict().values())
    )
    assert changed > 0
    for load in (read_checkpoint, load_model):  # ... the checksum does
        with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {path}: {DAMAGED}")):
            load(path)


def test_fault_zeroed_state_in_last_pt_refuses_the_resume(run, pairs):
    member = zipdamage.zero_bytes(run / "last.pt", 4096)
    before = files(run)
    with pytest.raises(CheckpointError, match=DAMAGED):
        _resume(run, pairs)
    assert files(run) == before, member  # nothing written, nothing replaced


def test_fault_one_changed_byte_in_any_tensor_is_refused(run, tmp_path):
    """Tensors of every size in a resumable checkpoint (weights, Adam moments and steps, RNG
    states), each damaged in turn by one inverted byte."""
    src = run / "last.pt"
    recs = list(zipdamage.tensor_records(src).values())  # largest first
    assert len(recs) > 20  # weights, optimizer state and RNG states are all there
    for offset, size in recs[::6] + recs[-1:]:
        bad = tmp_path / "bad.pt"
        shutil.copyfile(src, bad)
        zipdamage.flip_byte(bad, offset + size // 2)
        with pytest.raises(CheckpointError, match=DAMAGED):
            read_checkpoint(bad)


def test_fault_changed_bytes_in_the_pickled_part_are_refused_or_harmless(run, tmp_path):
    """A changed byte in ``data.pkl`` (everything but the tensor bytes: config, history,
    epoch, keys) is refused, or leaves the content as it was (a renumbered pickle memo)."""
    src = run / "last.pt"
    offset, size = zipdamage.records(src)["archive/data.pkl"]
    want = content_digest(read_checkpoint(src))
    refused = 0
    for pos in range(offset, offset + size, max(1, size // 50)):
        bad = tmp_path / "bad.pt"
        shutil.copyfile(src, bad)
        zipdamage.flip_byte(bad, pos)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = read_checkpoint(bad)
        except CheckpointError:
            refused += 1
            continue
        assert content_digest(got) == want, f"byte {pos - offset} of data.pkl changed the content"
    assert refused > 25


def test_fault_checksum_entry_missing_or_altered_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny(), epoch=1)
    ck = torch.load(path, weights_only=True)
    forged = [{k: v for k, v in ck.items() if k != "checksum"}]  # format 2 without one
    forged += [{**ck, "checksum": v} for v in ("sha256:" + "0" * 64, "md5:abc", 12, None)]
    for f in forged:
        torch.save(f, tmp_path / "f.pt")
        with pytest.raises(CheckpointError, match=DAMAGED):
            read_checkpoint(tmp_path / "f.pt")


def test_fault_format_1_checkpoint_loads_with_a_warning(tmp_path):
    """A checkpoint written before checksums existed (format 1, no ``checksum``) still loads,
    with a warning that damage in it cannot be detected."""
    m = tiny()
    path = save_checkpoint(tmp_path / "old.pt", m, epoch=2)
    ck = torch.load(path, weights_only=True)
    del ck["checksum"]
    ck["format_version"] = 1
    torch.save(ck, path)
    with pytest.warns(UnverifiedCheckpointWarning, match=re.escape(f"{path} predates checksums")):
        m2 = load_model(path)
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])
    with pytest.warns(UnverifiedCheckpointWarning):
        ck2 = read_checkpoint(path)
    ck2["format_version"] = 0
    torch.save(ck2, path)
    with pytest.raises(CheckpointError, match="format_version 0 is not an int >= 1"):
        read_checkpoint(path)


def test_checksum_survives_the_round_trip_and_every_load_path(run, pairs, tmp_path):
    """What is written verifies: the trainer's files, a method's saved model, a re-save of a
    loaded model, and the best weights read back after a resume (``keep_best``)."""
    for name in ("last.pt", "best.pt"):
        ck = read_checkpoint(run / name)
        assert ck["checksum"] == "sha256:" + content_digest(ck)
    m = load_model(run / "best.pt")
    save_checkpoint(tmp_path / "again.pt", m, history=m.checkpoint["history"])
    load_model(tmp_path / "again.pt")
    # keep_best reads best.pt back when the best epoch came before the resume: a damaged
    # best.pt is refused there too (the resume itself reads last.pt, intact here)
    zipdamage.zero_bytes(run / "best.pt", 64)
    b, s = pairs(8)
    with pytest.raises(CheckpointError, match=DAMAGED):
        train(
            tiny(),
            (b, s),
            (b[:2], torch.ones_like(s[:2])),  # far worse than epoch 1's: no new best
            TrainConfig(epochs=2, batch_size=4),
            checkpoint_dir=tmp_path / "cont",
            resume_from=run / "last.pt",
            progress=False,
        )


# --------------------------------------------------------------------------- full disk


class _FullDisk(io.FileIO):
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    room = 0

    def write(self, b):  # type: ignore[override]
        if self.tell() + len(memoryview(b)) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(b)


@contextlib.contextmanager
def _disk_with_room(monkeypatch, room: int):
    """Checkpoint files opened from now on take ``room`` bytes each, then raise ENOSPC."""
    _FullDisk.room = room
    with monkeypatch.context() as m:
        m.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: _FullDisk(fd, "wb"))
        yield


def _check_write_error(exc: CheckpointWriteError, path: Path) -> None:
    assert isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    assert exc.filename == str(path)
    assert str(exc) == (
        f"cannot write checkpoint {path}: no space left on device (nothing there was replaced)"
    )


@pytest.mark.parametrize("room", [0, 1000, 60_000])
def test_fault_full_disk_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, room):
    path = save_checkpoint(tmp_path / "last.pt", tiny(), epoch=1)
    before = files(tmp_path)
    with _disk_with_room(monkeypatch, room), pytest.raises(CheckpointWriteError) as e:
        save_checkpoint(path, tiny(base=8), epoch=2)
    _check_write_error(e.value, path)
    assert files(tmp_path) == before  # old file intact, the temporary file removed


def test_fault_full_disk_at_fsync_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """Some file systems (NFS, quotas) report a full disk only when the data is flushed."""
    path = save_checkpoint(tmp_path / "last.pt", tiny(), epoch=1)
    before = files(tmp_path)

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(CheckpointWriteError) as e:
        save_checkpoint(path, tiny(), epoch=2)
    _check_write_error(e.value, path)
    assert files(tmp_path) == before


def test_fault_full_disk_during_training_keeps_last_and_best(run, pairs, monkeypatch):
    before = files(run)
    with _disk_with_room(monkeypatch, 50_000), pytest.raises(CheckpointWriteError) as e:
        _resume(run, pairs)
    assert e.value.errno == errno.ENOSPC and Path(e.value.filename).parent == run
    assert files(run) == before
    assert _resume(run, pairs).epochs_completed == 2  # and the run can go on from there


def _mount_tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


def test_fault_full_tmpfs_during_training_keeps_last_and_best(run, pairs, tmp_path):
    """A real full disk: a small tmpfs holding the run, filled up before the resume."""
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount_tmpfs(disk, "2m")
    try:
        shutil.copytree(run, disk / "run")
        with open(disk / "filler", "wb", buffering=0) as f:  # take every free byte
            with contextlib.suppress(OSError):
                while True:
                    f.write(bytes(4096))
        before = files(disk / "run")
        with pytest.raises(CheckpointWriteError) as e:
            _resume(disk / "run", pairs)
        assert e.value.errno == errno.ENOSPC and "no space left on device" in str(e.value)
        assert Path(e.value.filename).parent == disk / "run"
        assert files(disk / "run") == before
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# --------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    "field, value, want",
    [
        ("ssim_weight", math.nan, "a finite number >= 0"),
        ("ssim_weight", math.inf, "a finite number >= 0"),
        ("ssim_weight", -1.0, "a finite number >= 0"),
        ("lr", math.nan, "a finite number > 0"),
        ("lr", math.inf, "a finite number > 0"),
        ("max_minutes", math.nan, "None or a finite number > 0"),
        ("max_minutes", math.inf, "None or a finite number > 0"),
        ("epochs", 2.5, "an int >= 0"),
        ("epochs", True, "an int >= 0"),
        ("batch_size", 0, "an int >= 1"),
        ("eval_batch_size", 0, "None or an int >= 1"),
        ("num_workers", -1, "an int >= 0"),
        ("seed", -1, "an int >= 0"),
        ("seed", 2**64, r"an int in \[0, 9223372036854775807\]"),
        ("seed", 1.5, "an int >= 0"),
        ("amp", "no", "True or False"),
        ("keep_best", None, "True or False"),
        ("device", "gpu", "a device string such as 'cpu' or 'cuda:0'"),
    ],
)
def test_bad_input_train_config_field(field, value, want):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be {want}, got "):
        TrainConfig(**{field: value}).validate()


def test_bad_input_nan_ssim_weight_is_refused_before_training(pairs):
    b, s = pairs(4)
    m = tiny()
    w0 = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match="TrainConfig.ssim_weight must be a finite number >= 0"):
        train(m, (b, s), None, TrainConfig(epochs=1, batch_size=4, ssim_weight=math.nan))
    assert all(torch.equal(v, w0[k]) for k, v in m.state_dict().items())  # not trained


def test_bad_input_loss_settings_must_be_finite():
    x = torch.rand(1, 1, 16, 16)
    for w in (math.nan, math.inf, -0.5):
        with pytest.raises(ValueError, match="ssim_weight must be a finite number >= 0"):
            convae.mse_ssim_loss(x, x, ssim_weight=w)
        with pytest.raises(ValueError, match="ssim_weight must be a finite number >= 0"):
            convae.MSESSIMLoss(ssim_weight=w)
    for sigma in (math.nan, 0.0, -1.0):
        with pytest.raises(ValueError, match="win_sigma must be a finite number > 0"):
            convae.ssim(x, x, win_sigma=sigma)
    with pytest.raises(ValueError, match="base_channels must be a positive int"):
        ConvAE(base_channels=True)
