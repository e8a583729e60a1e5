"""User errors become one ``error:`` line; bugs keep their traceback; files that are not
checkpoints are named as such; checkpoints respect the umask."""

from __future__ import annotations

import os
import stat
import zipfile

import numpy as np
import pytest
import torch

import convae
from benchmarks import cli
from benchmarks.errors import UserError
from convae.checkpoint import CheckpointError, atomic_save, read_checkpoint


@pytest.mark.parametrize(
    "exc, rc",
    [
        (UserError("--out x refused: it is the home folder"), 1),
        (ValueError("ranks must be positive"), 1),
        (FileNotFoundError("data folder not found: x"), 1),
        (IsADirectoryError("x is a folder"), 1),
        (PermissionError("results/ is read-only"), 1),
    ],
)
def test_bad_input_user_errors_are_one_line(monkeypatch, capsys, exc, rc):
    def fail(args):
        raise exc

    monkeypatch.setattr(cli, "cmd_list", fail)
    assert cli.main(["list"]) == rc
    assert capsys.readouterr().err == f"error: {exc}\n"


@pytest.mark.parametrize("exc", [TypeError("bug"), RuntimeError("bug"), KeyError("bug")])
def test_programming_errors_keep_their_traceback(monkeypatch, exc):
    def fail(args):
        raise exc

    monkeypatch.setattr(cli, "cmd_list", fail)
    with pytest.raises(type(exc)):
        cli.main(["list"])


def _random_files(tmp_path, n=60):
    rng = np.random.default_rng(0)
    for i in range(n):
        body = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes()
        prefix = [b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95"][i % 4]
        path = tmp_path / f"r{i}.pt"
        path.write_bytes(prefix + body)
        yield path


def test_bad_input_random_bytes_and_text_are_not_checkpoints(tmp_path):
    (tmp_path / "text.pt").write_text("hello world\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "a.pt").write_text("aaaaaaaaaa")
    files = [tmp_path / "text.pt", tmp_path / "empty.pt", tmp_path / "a.pt"]
    for path in [*files, *_random_files(tmp_path)]:
        with pytest.raises(CheckpointError, match=f"not a checkpoint: {path}"):
            read_checkpoint(path)


def test_bad_input_zip_archives_that_are_not_checkpoints(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.pt", "w") as z:
        z.writestr("archive/data.pkl", os.urandom(500))
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        read_checkpoint(tmp_path / "z.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="is not a convae checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    torch.save({"format": "convae-checkpoint", "format_version": 1}, tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="damaged: architecture, model_kwargs, model_state"):
        read_checkpoint(tmp_path / "cut.pt")


def test_bad_input_coupled_nmf_loader_names_the_file(tmp_path):
    from benchmarks.methods._fitted_models import load_model_file
    from dnmf.deblur.coupled import CoupledDeblur

    (tmp_path / "t.npz").write_text("hello")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    for path in [tmp_path / "t.npz", tmp_path / "foreign.npz", *_random_files(tmp_path, 8)]:
        with pytest.raises(UserError, match=f"not a checkpoint: {path}"):
            load_model_file(CoupledDeblur, path, torch.device("cpu"), "nmf-coupled")


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_checkpoints_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_save({"x": 1}, tmp_path / "c.pt")
        convae.save_checkpoint(tmp_path / "m.pt", convae.ConvAE(in_channels=1, base_channels=4))
    finally:
        os.umask(old)
    for name in ("c.pt", "m.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "m.pt"]  # no temp left
