"""A full disk: every command ends with one ``error:`` line naming the path and "no space left
on device", exit 1, and leaves nothing half-written (no staging folder, no lock file, no
temporary file, no empty ``--out`` it made); an earlier run stays as it was.

Two ways: ``ENOSPC`` injected at the write call (a patched writer, in a subprocess, on any
machine), and the real commands on a small tmpfs the test mounts and fills (as root; skipped
elsewhere).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import cli
from benchmarks.io_utils import FileBatch, atomic_write, write_text
from benchmarks.run_lock import FolderLock
from tests.benchmarks.diskfault import (
    can_mount,
    entries,
    error_lines,
    run_cases,
    small_disk,
    tree,
)

RUN = ["run", "--preset", "smoke", "--methods", "identity", "--quiet"]
FACTORIZE = ["factorize", "--ranks", "2", "--size", "16", "--max-iter", "5", "--quiet"]
TRAIN = ["train", "convae", "--preset", "smoke", "--epochs", "1", "--quiet"]
FULL = "no space left on device"
#: The lock cases find the lock file's descriptor by its name in /proc/self/fd.
linux = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")


def one_disk_error(case: dict, path: Path | str) -> None:
    """Exit 1, no traceback, and one ``error:`` line: ``cannot write PATH: no space ...``."""
    assert case["rc"] == 1, case["err"][-3000:]
    assert "Traceback" not in case["err"], case["err"][-3000:]
    assert error_lines(case["err"]) == [f"error: cannot write {path}: {FULL}"], case["err"]


# --------------------------------------------------------------------------- in-process
@pytest.mark.parametrize(
    "code, reason",
    [
        (errno.ENOSPC, "cannot write /r/x.png: no space left on device"),
        (errno.EDQUOT, "cannot write /r/x.png: disk quota exceeded"),
        (errno.EFBIG, "cannot write /r/x.png: file too large"),
        (errno.EROFS, "cannot write /r/x.png: read-only file system"),
        (errno.EIO, "input/output error on /r/x.png (a failing disk or network file system)"),
    ],
)
def test_fault_disk_errors_are_one_line(monkeypatch, capsys, code, reason):
    def fail(args):
        raise OSError(code, os.strerror(code), "/r/x.png")

    monkeypatch.setattr(cli, "cmd_list", fail)
    assert cli.main(["list"]) == 1
    assert capsys.readouterr().err == f"error: {reason}\n"


def test_fault_disk_error_without_a_file_name_names_the_out_flag(monkeypatch, capsys):
    def fail(args):
        raise OSError(errno.ENOSPC, "No space left on device")  # as Pillow's fp.close() raises

    monkeypatch.setattr(cli, "cmd_report", fail)
    assert cli.main(["report", "x", "--out", "merged.md"]) == 1
    assert capsys.readouterr().err == f"error: cannot write merged.md: {FULL}\n"


def test_fault_other_os_errors_keep_their_traceback(monkeypatch):
    def fail(args):
        raise OSError(errno.EBADF, "Bad file descriptor")  # a bug, not the user's disk

    monkeypatch.setattr(cli, "cmd_list", fail)
    with pytest.raises(OSError, match="Bad file descriptor"):
        cli.main(["list"])


@linux
def test_fault_lock_write_on_a_full_disk_leaves_no_lock_file(tmp_path, monkeypatch):
    lock = FolderLock(tmp_path / "run", "run")
    real_write = os.write

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}") == str(lock.path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError) as info:
        lock.acquire()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(lock.path)
    assert list(tmp_path.iterdir()) == [] and lock.fd is None
    monkeypatch.undo()
    lock.acquire()  # free again
    lock.release()


def test_fault_atomic_write_names_the_target_and_leaves_nothing(tmp_path):
    target = tmp_path / "new" / "deeper" / "x.png"

    def full(p: Path) -> None:
        p.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        atomic_write(target, full)
    assert info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []  # no temporary file, no folder made for it


def test_fault_file_batch_is_all_or_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    write_text(out / "b.png", "the user's b")
    calls = []

    def writer(text: str):
        def write(p: Path) -> None:
            calls.append(p)
            if len(calls) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            p.write_text(text)

        return write

    with pytest.raises(OSError) as info:
        with FileBatch() as batch:
            for name in ("a", "b", "c"):
                batch.write(out / "sub" / f"{name}.png", writer(name))
            batch.commit()
    assert info.value.filename == str(out / "sub" / "c.png")
    assert tree(out) == {"b.png": b"the user's b"}  # nothing new, no temporaries, no sub/
    with FileBatch() as batch:
        batch.write(out / "b.png", writer("new b"))
        assert (out / "b.png").read_text() == "the user's b"  # only at commit
        batch.commit()
    assert tree(out) == {"b.png": b"new b"}


# --------------------------------------------------------------------------- injected, CLI
@pytest.fixture(scope="module")
def injected(tmp_path_factory, faces_maker):
    """Every command with ENOSPC injected at one of its writes, in one subprocess."""
    root = tmp_path_factory.mktemp("inject")
    faces = faces_maker(root / "faces", "8png")
    runs = root / "runs"
    (runs / "kept").mkdir(parents=True)
    for f in faces.iterdir():  # the user's own files where restore --overwrite would write
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(runs / "kept" / (f.stem + ".png"))
    data = ["--data-dir", faces]
    lock = {"target": "os:write", "fd_suffix": ".new1.lock"}
    new2 = runs / "new2"
    restore = ["restore", faces, "--method", "identity", "--quiet"]
    savefig = {"target": "matplotlib.figure:Figure.savefig"}
    cases = {
        "prev": {"argv": RUN + data + ["--out", runs / "prev"]},
        "lock": {**lock, "argv": RUN + data + ["--out", runs / "new1"]},
        "marker": {"target": "pathlib:Path.write_text", "argv": RUN + data + ["--out", new2]},
        "run_figure": {**savefig, "argv": RUN + data + ["--out", runs / "prev", "--overwrite"]},
        "factorize": {**savefig, "after": 1, "argv": FACTORIZE + data + ["--out", runs / "f"]},
        "restore_new": {
            "target": "PIL.Image:Image.save",
            "after": 1,
            "argv": restore + ["--out", runs / "o" / "sub"],
        },
        "restore_overwrite": {
            "target": "PIL.Image:Image.save",
            "after": 2,
            "argv": restore + ["--overwrite", "--out", runs / "kept"],
        },
        "report": {
            "target": "pathlib:Path.write_text",
            "argv": ["report", runs / "prev", "--out", runs / "rep" / "merged.md"],
        },
        "train": {"target": "torch:save", "argv": TRAIN + data + ["--out", runs / "t"]},
    }  # fmt: skip
    before = {"kept": tree(runs / "kept")}
    got = dict(zip(cases, run_cases(list(cases.values()))))
    return got, runs, faces, before


@linux
def test_fault_full_disk_at_the_lock_write(injected):
    got, runs, _, _ = injected
    assert got["prev"]["rc"] == 0, got["prev"]["err"]
    one_disk_error(got["lock"], runs / ".new1.lock")
    assert not (runs / "new1").exists() and not (runs / ".new1.lock").exists()


def test_fault_full_disk_at_the_staging_marker_leaves_no_staging_folder(injected):
    got, runs, _, _ = injected
    one_disk_error(got["marker"], runs / "new2" / ".deblur-bench-run")
    assert [p for p in entries(runs) if "new2" in p] == []


def test_fault_full_disk_at_a_figure_keeps_the_previous_run(injected):
    got, runs, _, _ = injected
    one_disk_error(got["run_figure"], runs / "prev" / "examples.png")
    assert "the previous run in" in got["run_figure"]["err"]
    assert (runs / "prev" / "run.json").is_file()
    assert [p for p in entries(runs) if p.startswith(".prev")] == []


def test_fault_full_disk_in_factorize(injected):
    got, runs, _, _ = injected
    one_disk_error(got["factorize"], runs / "f" / "loss.png")
    assert [p for p in entries(runs) if p.lstrip(".").startswith("f")] == []


def test_fault_full_disk_in_restore_leaves_no_out_folder(injected):
    got, runs, faces, _ = injected
    second = sorted(faces.iterdir())[1].stem + ".png"
    one_disk_error(got["restore_new"], runs / "o" / "sub" / second)
    assert not (runs / "o").exists()


def test_fault_full_disk_in_restore_overwrite_keeps_every_old_file(injected):
    got, runs, faces, before = injected
    third = sorted(faces.iterdir())[2].stem + ".png"
    one_disk_error(got["restore_overwrite"], runs / "kept" / third)
    assert tree(runs / "kept") == before["kept"]  # all or nothing: no file replaced


def test_fault_full_disk_in_report(injected):
    got, runs, _, _ = injected
    one_disk_error(got["report"], runs / "rep" / "merged.md")
    assert not (runs / "rep").exists()


def test_fault_full_disk_in_train(injected):
    got, runs, _, _ = injected
    case = got["train"]
    assert case["rc"] == 1 and "Traceback" not in case["err"], case["err"][-3000:]
    (line,) = error_lines(case["err"])
    assert line.startswith(f"error: cannot write {runs / 't'}") and line.endswith(FULL), line
    assert [p for p in entries(runs) if p.startswith(".t.")] == []  # no lock, no staging


# --------------------------------------------------------------------------- a real full disk
needs_mount = pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs root on Linux")


@pytest.fixture(scope="module")
def disk_runs(tmp_path_factory, faces_maker):
    """The real commands on a 2 MiB tmpfs, filled so that 0 to 64 KiB are left."""
    root = tmp_path_factory.mktemp("fulldisk")
    faces = faces_maker(root / "faces", "8png")
    data = ["--data-dir", faces]
    with small_disk(root / "disk", "2m") as disk:
        (prev,) = run_cases([{"argv": RUN + data + ["--out", disk / "prev"], "disk": disk}])
        assert prev["rc"] == 0, prev["err"]
        before = tree(disk), entries(disk)
        cases = []
        for free in (0, 4096, 8192, 16384):
            cases += [
                {"argv": RUN + data + ["--out", disk / "prev", "--overwrite"], "free": free},
                {"argv": RUN + data + ["--out", disk / "new"], "free": free},
                {"argv": FACTORIZE + data + ["--out", disk / "f"], "free": free},
                {"argv": ["restore", faces, "--method", "identity", "--out", disk / "o"]
                 + ["--quiet"], "free": free},
                {"argv": ["report", disk / "prev", "--out", disk / "rep.md"], "free": free},
            ]  # fmt: skip
        cases += [{"argv": FACTORIZE + data + ["--out", disk / "f"], "free": 65536}]
        cases += [{"argv": TRAIN + data + ["--out", disk / "t"], "free": 0}]
        got = run_cases([{**c, "disk": disk} for c in cases])
        after = tree(disk), entries(disk)
    return got, before, after, disk


@needs_mount
def test_fault_real_full_disk_every_command(disk_runs):
    got, before, after, disk = disk_runs
    for case in got:
        if case["argv"][0] == "report" and case["rc"] == 0:
            continue  # a few KiB were enough for the report: written whole, checked below
        assert case["rc"] == 1, (case["argv"], case["free"], case["err"][-3000:])
        assert "Traceback" not in case["err"], case["err"][-3000:]
        (line,) = error_lines(case["err"])
        assert line.startswith(f"error: cannot write {disk}") and line.endswith(FULL), line
    (files_before, names_before), (files_after, names_after) = before, after
    assert set(names_after) - set(names_before) <= {"rep.md"}  # nothing half-written or left
    assert {k: files_after[k] for k in files_before} == files_before  # the earlier run, intact
