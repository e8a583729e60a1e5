"""Result files: atomic writes that respect the umask; clear errors for files dnmf did not write."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

import dnmf
from dnmf._io import CHECKSUM_KEY, save_npz_atomic


@pytest.fixture
def result(rng):
    return dnmf.factorize(rng.random((8, 6)), 2, max_iter=5, tol=0, seed=0)


@pytest.fixture
def umask():
    """Sets the process umask for one test (restored after)."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_saved_file_mode_follows_the_umask(result, tmp_path, umask, mask, mode):
    umask(mask)
    result.save(tmp_path / "r.npz")
    assert stat.S_IMODE((tmp_path / "r.npz").stat().st_mode) == mode


def test_atomic_write_leaves_no_temporary_and_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "a.npz"
    save_npz_atomic(path, {"x": np.arange(3)})
    with pytest.raises(ValueError):  # object arrays need pickle, which .npz files never hold
        save_npz_atomic(path, {"x": np.array([{"a": 1}], dtype=object)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]
    with np.load(path) as z:
        np.testing.assert_array_equal(z["x"], np.arange(3))
    save_npz_atomic(path, {"y": np.ones(2)})  # replaces the file
    with np.load(path) as z:
        assert z.files == ["y", CHECKSUM_KEY]  # the content's SHA-256 travels with it
    assert not path.with_suffix("").exists()  # no ".npz" appended anywhere


def _truncated(path, result):
    result.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda p, r: p.write_bytes(b""), "the file is empty"),
        (_truncated, "not an .npz archive, or a truncated one"),
        (lambda p, r: p.write_text("W1,W2\n1,2\n"), "ValueError"),
        (lambda p, r: np.savez(p, a=np.ones(2)), "no 'format_version' entry"),
        (lambda p, r: np.save(p, np.ones(3)), "a single .npy array"),
    ],
    ids=["empty", "truncated", "text", "foreign-npz", "npy"],
)
def test_load_names_a_file_that_is_not_a_result(tmp_path, result, make, why):
    path = tmp_path / "f.npz"
    make(path, result)
    if not path.exists():  # np.save appends .npy
        path = tmp_path / "f.npz.npy"
    with pytest.raises(ValueError, match="not a dnmf result file: .*f.npz") as info:
        dnmf.load(path)
    assert why in str(info.value)


def test_load_names_a_bad_format_version(tmp_path):
    np.savez(tmp_path / "f.npz", format_version=np.ones(2), n_layers=1)
    with pytest.raises(ValueError, match="invalid dnmf result file: .*f.npz") as info:
        dnmf.load(tmp_path / "f.npz")
    assert "format_version must be an integer from 1 to 2" in str(info.value)


def test_load_keeps_missing_file_and_newer_format_errors(tmp_path, result):
    with pytest.raises(FileNotFoundError):
        dnmf.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "new.npz", format_version=np.asarray(99))
    with pytest.raises(ValueError, match="format version 99; this dnmf reads <= 2"):
        dnmf.load(tmp_path / "new.npz")
