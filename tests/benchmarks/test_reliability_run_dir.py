"""RunFolder in-process: marker, refusals, swap, lock, leftovers of killed commands, umask."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from benchmarks.errors import UserError
from benchmarks.io_utils import write_text
from benchmarks.run_dir import MARKER, RunFolder, is_tool_made, read_marker


def finished_run(target: Path, text: str = "old", **kw) -> Path:
    """A run folder written through RunFolder, holding ``result.txt``."""
    with RunFolder(target, kind="run", **kw) as f:
        write_text(f.path / "result.txt", text)
        f.commit()
    return target


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_new_run_appears_only_at_commit_with_its_marker(tmp_path):
    target = tmp_path / "runs" / "a"
    with RunFolder(target, kind="run") as f:
        assert f.path != target and f.path.parent == target.parent
        assert f.path.name.startswith(".a.tmp-") and not target.exists()
        write_text(f.path / "result.txt", "x")
        assert f.commit() == target
    marker = read_marker(target)
    assert marker["kind"] == "run" and marker["complete"] and marker["files"] == ["result.txt"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["a"]  # no lock, no staging left


@pytest.mark.parametrize("overwrite", [False, True])
def test_bad_input_user_folder_is_never_replaced(tmp_path, overwrite):
    user = tmp_path / "thesis"
    (user / "photos").mkdir(parents=True)
    (user / "thesis.tex").write_text("chapter 1")
    before = tree(user)
    with pytest.raises(FileExistsError, match=r"not a deblur-bench run \(photos/, thesis.tex\)"):
        RunFolder(user, kind="run", overwrite=overwrite).__enter__()
    assert tree(user) == before and sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]


def test_bad_input_existing_run_needs_overwrite(tmp_path):
    target = finished_run(tmp_path / "r")
    with pytest.raises(FileExistsError, match="already holds a run; pass --overwrite"):
        RunFolder(target, kind="run").__enter__()
    assert (target / "result.txt").read_text() == "old"


def test_overwrite_swaps_the_new_run_in_at_the_end(tmp_path):
    target = finished_run(tmp_path / "r")
    with RunFolder(target, kind="run", overwrite=True) as f:
        assert f.mode == "replace"
        write_text(f.path / "new.txt", "new")
        assert (target / "result.txt").read_text() == "old"  # untouched until commit
        f.commit()
    assert sorted(tree(target)) == [MARKER, "new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_fault_failed_command_keeps_the_previous_run(tmp_path, capsys):
    target = finished_run(tmp_path / "r")
    before = tree(target)
    with pytest.raises(RuntimeError, match="boom"):
        with RunFolder(target, kind="run", overwrite=True) as f:
            write_text(f.path / "half.txt", "half")
            raise RuntimeError("boom")
    assert tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert "previous run in" in capsys.readouterr().err


def test_fault_failed_new_run_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with RunFolder(tmp_path / "deep" / "new", kind="run"):
            raise ValueError("no images found")
    assert list(tmp_path.iterdir()) == []  # not even the parents it made


def test_fault_failed_new_train_folder_is_removed_only_when_empty(tmp_path):
    with pytest.raises(ValueError):
        with RunFolder(tmp_path / "t", kind="train", staged=False) as f:
            assert f.path == tmp_path / "t" and (f.path / MARKER).is_file()
            raise ValueError("bad data")
    assert not (tmp_path / "t").exists()
    with pytest.raises(KeyboardInterrupt):  # checkpoints written: kept (resumable, marked)
        with RunFolder(tmp_path / "t", kind="train", staged=False) as f:
            write_text(f.path / "last.pt", "ckpt")
            raise KeyboardInterrupt
    assert (tmp_path / "t" / "last.pt").is_file() and is_tool_made(tmp_path / "t")


def test_bad_input_user_made_empty_folder_gets_no_stray_marker(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError):
        with RunFolder(tmp_path / "empty", kind="train", staged=False):
            raise ValueError("bad data")
    assert (tmp_path / "empty").is_dir() and list((tmp_path / "empty").iterdir()) == []


def test_legacy_run_folder_is_recognised(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text(json.dumps({"format_version": 1, "timings": {}}))
    (old / "summary.md").write_text("t")
    assert is_tool_made(old)
    with RunFolder(old, kind="run", overwrite=True) as f:
        f.commit()
    assert sorted(tree(old)) == [MARKER]
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"something": "else"}))
    assert not is_tool_made(other)


def test_bad_input_files_added_to_a_run_block_overwrite(tmp_path):
    target = finished_run(tmp_path / "r")
    (target / "my_notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"files were added to it since \(my_notes.txt\)"):
        RunFolder(target, kind="run", overwrite=True).__enter__()
    assert (target / "my_notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "case, message",
    [
        ("cwd", "it is the current folder"),
        ("cwd_parent", "it holds the current folder"),
        ("data", "it is the data folder"),
        ("data_parent", "it holds the data folder"),
        ("data_child", "it is inside the data folder"),
        ("home", "it is the home folder"),
        ("root", "it is the root of the file system"),
    ],
)
def test_bad_input_refused_folders(tmp_path, monkeypatch, case, message):
    work = tmp_path / "work" / "here"
    data = tmp_path / "data" / "faces"
    for d in (work, data):
        d.mkdir(parents=True)
        (d / "keep.jpg").write_bytes(b"user data")
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = {
        "cwd": ".",
        "cwd_parent": "..",
        "data": str(data),
        "data_parent": str(data.parent),
        "data_child": str(data / "results"),
        "home": str(tmp_path / "home"),
        "root": "/",
    }[case]
    with pytest.raises(UserError, match=f"--out {out} refused: {message}"):
        RunFolder(out, kind="run", overwrite=True, protect=[data]).__enter__()
    assert (work / "keep.jpg").is_file() and (data / "keep.jpg").is_file()


def test_concurrency_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    target = tmp_path / "r"
    with RunFolder(target, kind="run") as first:
        lock = tmp_path / ".r.lock"
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(UserError, match=r"another deblur-bench command \(pid \d+\) is writing"):
            RunFolder(target, kind="run", overwrite=True).__enter__()
        first.commit()
    assert not lock.exists()
    with RunFolder(target, kind="run", overwrite=True) as again:  # free once released
        again.commit()


def test_fault_leftovers_of_a_killed_command_are_cleaned_or_restored(tmp_path):
    target = finished_run(tmp_path / "r")
    stale = tmp_path / ".r.tmp-99999999"  # a staging folder of a killed run
    stale.mkdir()
    (stale / MARKER).write_text(json.dumps({"tool": "deblur-bench"}))
    user_dot = tmp_path / ".r.tmp-mine"  # a user's own folder with a similar name
    user_dot.mkdir()
    with RunFolder(target, kind="run", overwrite=True) as f:
        write_text(f.path / "new.txt", "new")
        f.commit()
    assert not stale.exists() and user_dot.is_dir()
    # killed between the two renames of a swap: the old run is aside, the target missing
    os.rename(target, tmp_path / ".r.old-99999999")
    with pytest.raises(FileExistsError, match="already holds a run"):
        RunFolder(target, kind="run").__enter__()
    assert is_tool_made(target) and not (tmp_path / ".r.old-99999999").exists()


def test_continue_in_a_users_folder_never_marks_it(tmp_path):
    mine = tmp_path / "models"
    mine.mkdir()
    (mine / "last.pt").write_text("ckpt")
    (mine / "holiday.jpg").write_text("photo")
    with RunFolder(mine, kind="train", staged=False, continue_in=mine) as f:
        assert f.mode == "continue"
        write_text(f.path / "best.pt", "b")
        f.commit()
    assert not is_tool_made(mine)  # so no later --overwrite can delete the photo


def test_continue_keeps_files_added_by_the_user_foreign(tmp_path):
    run = tmp_path / "t"
    with RunFolder(run, kind="train", staged=False) as f:
        write_text(f.path / "last.pt", "1")
        f.commit()
    (run / "notes.txt").write_text("mine")
    with RunFolder(run, kind="train", staged=False, continue_in=run) as f:
        write_text(f.path / "best.pt", "2")
        f.commit()
    assert read_marker(run)["files"] == ["best.pt", "last.pt"]


def test_relocate_points_staging_paths_at_the_run(tmp_path):
    with RunFolder(tmp_path / "r", kind="run") as f:
        rec = {"cache": str(f.path / "methods" / "x.npz"), "other": [str(f.path) + "-not", 3]}
        assert f.relocate(rec) == {
            "cache": str(tmp_path / "r" / "methods" / "x.npz"),
            "other": [str(f.path) + "-not", 3],
        }


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        finished_run(tmp_path / "r")
    finally:
        os.umask(old)
    for p in (tmp_path / "r" / "result.txt", tmp_path / "r" / MARKER):
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask


def test_fault_killed_while_writing_the_marker(tmp_path):
    """A command killed inside the marker's atomic write leaves its temporary file only."""
    cut = f".{MARKER}.4242-0badf00d"
    target = tmp_path / "t"
    target.mkdir()
    (target / cut).write_text('{"tool": "deblur-bench", "ki')
    stale = tmp_path / ".t.tmp-4242"
    stale.mkdir()
    (stale / cut).write_text("")
    with RunFolder(target, kind="train", staged=False) as f:
        assert f.mode == "new"
        write_text(f.path / "last.pt", "1")
        f.commit()
    assert sorted(tree(target)) == [MARKER, "last.pt"] and not stale.exists()


def test_new_train_folder_never_exists_without_its_marker(tmp_path, monkeypatch):
    import benchmarks.run_dir as rd

    seen = []
    real_rename = os.rename
    monkeypatch.setattr(
        rd.os, "rename", lambda a, b: (seen.append(read_marker(Path(a))), real_rename(a, b))
    )
    with RunFolder(tmp_path / "t", kind="train", staged=False) as f:
        assert f.path == tmp_path / "t"
    assert seen and seen[0]["tool"] == "deblur-bench"  # marked before it got its name
