"""The CLI as a user runs it: --overwrite never deletes what the user made, a failed command
leaves the previous run, one writer per run folder, and clear errors instead of tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

RUN = ["run", "--preset", "smoke", "--methods", "identity", "--quiet"]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (hidden ones too)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def wait_for(condition, proc, timeout: float = 300) -> None:
    """Poll ``condition()`` while ``proc`` runs (it must not end first)."""
    t0 = time.monotonic()
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "the condition never came true"
        time.sleep(0.02)


def holds_lock(lock: Path, proc) -> bool:
    """``proc`` holds the run-folder lock (it writes its pid once it has the flock)."""
    try:
        return lock.read_text().strip() == str(proc.pid)
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def site(tmp_path_factory, faces_maker, run_cli):
    """A user's folder: a face folder, a thesis folder, a working folder, and one run."""
    root = tmp_path_factory.mktemp("site")
    faces = faces_maker(root / "data" / "faces", "8png")
    (root / "thesis" / "photos").mkdir(parents=True)
    (root / "thesis" / "thesis.tex").write_text("\\chapter{1}")
    (root / "thesis" / "photos" / "me.jpg").write_bytes(b"jpeg bytes")
    (root / "work").mkdir()
    (root / "work" / "notes.md").write_text("my notes")
    r = run_cli(*RUN, "--data-dir", faces, "--out", root / "runs" / "prev")
    assert r.returncode == 0, r.stderr
    return root


def test_bad_input_out_is_the_current_folder(site, run_cli):
    """``--out . --overwrite`` once deleted every file of the current folder."""
    before = tree(site / "work")
    faces = site / "data" / "faces"
    r = run_cli(*RUN, "--data-dir", faces, "--out", ".", "--overwrite", cwd=site / "work")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "error: --out . refused: it is the current folder" in r.stderr
    assert tree(site / "work") == before


@pytest.fixture(scope="module")
def overwrite_batch(site, cli_batch):
    """Refused and failing --overwrite cases, then one that succeeds, in one process."""
    prev, faces = site / "runs" / "prev", site / "data" / "faces"
    shutil.copytree(prev, site / "runs" / "prev2")
    (site / "bad.pt").write_text("this is not a checkpoint\n")
    snapshot = {d: tree(site / d) for d in ("runs/prev", "data", "thesis", "work")}
    cases = {
        "missing_data": RUN + ["--data-dir", site / "nope", "--out", prev, "--overwrite"],
        "bad_checkpoint": ["run", "--preset", "smoke", "--methods", "identity", "convae"]
        + ["--checkpoint", f"convae={site / 'bad.pt'}", "--quiet"]
        + ["--data-dir", faces, "--out", prev, "--overwrite"],
        "out_is_data": RUN + ["--data-dir", faces, "--out", faces, "--overwrite"],
        "out_holds_data": RUN + ["--data-dir", faces, "--out", site / "data", "--overwrite"],
        "out_is_user_folder": RUN + ["--data-dir", faces, "--out", site / "thesis", "--overwrite"],
        "no_overwrite": RUN + ["--data-dir", faces, "--out", prev],
        "replace": RUN + ["--data-dir", faces, "--out", site / "runs" / "prev2", "--overwrite"],
    }
    old_umask = os.umask(0o002)  # inherited by the subprocess: a group-shared results folder
    try:
        got = cli_batch(list(cases.values()), cwd=site / "work")
    finally:
        os.umask(old_umask)
    return dict(zip(cases, got)), snapshot


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_data", "data folder not found"),
        ("bad_checkpoint", "not a checkpoint: "),
        ("out_is_data", "refused: it is the data folder (--data-dir)"),
        ("out_holds_data", "refused: it holds the data folder"),
        ("out_is_user_folder", "holds files that are not a deblur-bench run (photos/, thesis.tex)"),
        ("no_overwrite", "already holds a run; pass --overwrite"),
    ],
)
def test_bad_input_overwrite_refused_or_failed_and_nothing_lost(
    overwrite_batch, site, case, message
):
    got, snapshot = overwrite_batch
    assert got[case]["rc"] == 1, got[case]["err"]
    assert message in got[case]["err"] and "Traceback" not in got[case]["err"]
    for d, files in snapshot.items():  # the previous run, the images, the user's files
        assert tree(site / d) == files, d
    assert [p.name for p in (site / "runs").iterdir() if p.name.startswith(".")] == []


def test_overwrite_replaces_a_tool_made_run_with_the_umask_respected(overwrite_batch, site):
    got, _ = overwrite_batch
    assert got["replace"]["rc"] == 0, got["replace"]["err"]
    new = site / "runs" / "prev2"
    marker = json.loads((new / ".deblur-bench-run").read_text())
    assert marker["complete"] and "run.json" in marker["files"]
    assert json.loads((new / "run.json").read_text())["config"]["overwrite"] is True
    for name in ("run.json", "per_image.csv", "summary.md", "examples.png"):
        assert stat.S_IMODE((new / name).stat().st_mode) == 0o664  # umask 002, not 0600


def test_concurrency_second_run_into_the_same_out_is_refused(site, start_cli, run_cli):
    out, faces = site / "runs" / "busy", site / "data" / "faces"
    first = start_cli(*RUN, "--data-dir", faces, "--out", out)
    try:
        wait_for(lambda: holds_lock(site / "runs" / ".busy.lock", first), first)
        os.kill(first.pid, signal.SIGSTOP)  # hold the first run inside its locked section
        second = run_cli(*RUN, "--data-dir", faces, "--out", out, "--overwrite")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert f"another deblur-bench command (pid {first.pid}) is writing" in second.stderr
    assert (out / "run.json").is_file() and not (site / "runs" / ".busy.lock").exists()
    assert json.loads((out / "run.json").read_text())["config"]["overwrite"] is False


def test_fault_killed_run_leaves_the_lock_free_and_no_half_run(site, start_cli):
    from benchmarks.run_dir import RunFolder

    out = site / "runs" / "killed"
    proc = start_cli(*RUN, "--data-dir", site / "data" / "faces", "--out", out)
    staging = site / "runs" / f".killed.tmp-{proc.pid}"
    wait_for(lambda: (staging / ".deblur-bench-run").is_file(), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert staging.is_dir() and not out.exists()  # killed mid-run: a run appears only complete
    with RunFolder(out, kind="run") as f:  # the lock died with it; its staging folder goes
        f.commit()
    leftovers = [p.name for p in (site / "runs").iterdir() if p.name.startswith(".killed")]
    assert leftovers == []


@pytest.fixture(scope="module")
def trained(site, run_cli):
    a = site / "train" / "a"
    r = run_cli(
        "train", "convae", "--preset", "smoke", "--data-dir", site / "data" / "faces",
        "--epochs", "1",
        "--out", a, "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    b = site / "train" / "b"
    shutil.copytree(a, b)  # another finished training run
    return a, b


@pytest.mark.slow
def test_bad_input_resume_into_another_run_needs_overwrite(trained, site, cli_batch):
    a, b = trained
    before = tree(b)
    thesis = tree(site / "thesis")
    data = site / "data" / "faces"
    train = ["train", "convae", "--preset", "smoke", "--data-dir", data, "--quiet"]
    got = cli_batch(
        [
            train + ["--epochs", "2", "--resume", a / "last.pt", "--out", b],
            train + ["--epochs", "2", "--resume", a / "last.pt", "--out", site / "thesis"],
            train + ["--epochs", "2", "--resume", a / "last.pt"],  # continues in a
            train + ["--epochs", "3", "--resume", a / "last.pt", "--out", b, "--overwrite"],
        ]
    )
    assert got[0]["rc"] == 1 and "already holds a run; pass --overwrite" in got[0]["err"]
    assert got[1]["rc"] == 1 and "not a deblur-bench run" in got[1]["err"]
    assert tree(site / "thesis") == thesis
    assert got[2]["rc"] == 0, got[2]["err"]
    assert json.loads((a / "train.json").read_text())["epochs_completed"] == 2
    assert got[3]["rc"] == 0, got[3]["err"]  # --overwrite: b replaced by a's continuation
    assert json.loads((b / "train.json").read_text())["epochs_completed"] == 3
    assert tree(b) != before and sorted(tree(b)) == sorted(before)


@pytest.mark.slow
def test_concurrency_second_train_into_the_same_out_is_refused(site, start_cli, run_cli):
    out = site / "train" / "busy"
    data = site / "data" / "faces"
    train = ["train", "convae", "--preset", "smoke", "--data-dir", data, "--quiet"]
    first = start_cli(*train, "--epochs", "1", "--out", out)
    try:
        wait_for(lambda: holds_lock(site / "train" / ".busy.lock", first), first)
        os.kill(first.pid, signal.SIGSTOP)
        second = run_cli(*train, "--epochs", "1", "--out", out, "--overwrite")
    finally:
        os.kill(first.pid, signal.SIGKILL)  # a fault as well: killed while it held the lock
        first.communicate(timeout=60)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert f"another deblur-bench command (pid {first.pid}) is writing" in second.stderr
    assert _lock_is_free(out)  # the kernel dropped the killed holder's lock


def _lock_is_free(target: Path) -> bool:
    from benchmarks.run_dir import RunFolder

    with RunFolder(target, kind="train", overwrite=True, staged=False):
        return True


@pytest.fixture(scope="module")
def restore_batch(site, cli_batch, png16):
    d = site / "restore"
    (d / "bad").mkdir(parents=True)
    (d / "bad" / "a.png").write_text("not a png")
    (d / "bad" / "b.jpg").write_bytes(os.urandom(300))
    (d / "mixed").mkdir()
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(d / "mixed" / "big.png")
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(d / "mixed" / "tiny.png")
    g = (np.linspace(0, 1, 48 * 40).reshape(48, 40) * 40000).astype(np.uint16)
    Image.fromarray(g).save(d / "gray16.png")
    c = (np.random.default_rng(0).random((20, 24, 3)) * 65535).astype(np.uint16)
    png16(d / "rgb16.png", c)
    upright = np.zeros((20, 30, 3), np.uint8)
    upright[:5, :10] = 255
    im = Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1)))  # stored sideways
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(d / "phone.jpg", exif=exif, quality=95)
    (d / "text.pt").write_text("hello world\n")
    for i in range(3):
        (d / f"rand{i}.pt").write_bytes(np.random.default_rng(i).bytes(2000))
    (d / "own").mkdir()
    Image.fromarray(np.full((40, 40), 50, np.uint8)).save(d / "own" / "photo.png")
    restore = ["restore", "--quiet"]
    cases = {
        "all_unreadable": restore + [d / "bad", "--method", "identity", "--out", d / "o1"],
        "too_small": restore + [d / "mixed", "--method", "wiener", "--out", d / "o2"],
        "text_checkpoint": restore
        + [
            d / "gray16.png",
            "--method",
            "convae",
            "--checkpoint",
            d / "text.pt",
            "--out",
            d / "o3",
        ],
        "gray16": restore + [d / "gray16.png", "--method", "identity", "--out", d / "o4"],
        "rgb16": restore + [d / "rgb16.png", "--method", "identity", "--out", d / "o4"],
        "exif": restore + [d / "phone.jpg", "--method", "identity", "--out", d / "o4"],
        "own_input": restore
        + [d / "own", "--method", "identity", "--out", d / "own", "--overwrite"],
    }
    for i in range(3):
        cases[f"random_checkpoint_{i}"] = restore + [
            d / "gray16.png", "--method", "convae-unet", "--checkpoint", d / f"rand{i}.pt",
            "--out", d / "o5",
        ]  # fmt: skip
    got = cli_batch(list(cases.values()))
    return dict(zip(cases, got)), d


@pytest.mark.parametrize(
    "case, message",
    [
        ("all_unreadable", "none of the 2 input image(s) could be read"),
        ("too_small", "tiny.png of 8x8 px is too small for this 25x25 kernel"),
        ("text_checkpoint", "not a checkpoint: "),
        ("random_checkpoint_0", "not a checkpoint: "),
        ("random_checkpoint_1", "not a checkpoint: "),
        ("random_checkpoint_2", "not a checkpoint: "),
        ("own_input", "would replace the input"),
    ],
)
def test_bad_input_restore_fails_before_writing(restore_batch, case, message):
    got, d = restore_batch
    assert got[case]["rc"] == 1, got[case]["err"]
    assert message in got[case]["err"] and "Traceback" not in got[case]["err"]
    for o in ("o1", "o2", "o3", "o5"):
        assert not (d / o).exists() or list((d / o).iterdir()) == []
    assert np.asarray(Image.open(d / "own" / "photo.png")).max() == 50


def test_bad_input_restore_reads_16bit_and_exif(restore_batch):
    got, d = restore_batch
    for case in ("gray16", "rgb16", "exif"):
        assert got[case]["rc"] == 0, got[case]["err"]
    g = np.asarray(Image.open(d / "o4" / "gray16.png"), dtype=np.float64)
    src = (np.linspace(0, 1, 48 * 40).reshape(48, 40) * 40000).astype(np.uint16) / 65535
    assert g.shape[:2] == (48, 40) and np.abs(g[..., 0] / 255 - src).max() <= 0.5 / 255 + 1e-9
    assert 150 < g.max() < 160  # 40000 / 65535 of white, not an all-255 image
    rgb = np.asarray(Image.open(d / "o4" / "rgb16.png"), dtype=np.float64)
    c = (np.random.default_rng(0).random((20, 24, 3)) * 65535).astype(np.uint16)
    assert np.abs(rgb - np.round(c / 65535 * 255)).max() <= 1  # identity: the input, 8-bit
    phone = np.asarray(Image.open(d / "o4" / "phone.png"))
    assert phone.shape[:2] == (20, 30) and phone[:5, :10].min() > 200  # upright


@pytest.fixture(scope="module")
def report_batch(site, cli_batch):
    d = site / "report"
    good = site / "runs" / "prev"
    no_method = d / "no_method"
    no_method.mkdir(parents=True)
    (no_method / "per_image.csv").write_text("image,psnr,ssim,mse\na.png,20,0.5,0.01\n")
    no_timings = d / "no_timings"
    shutil.copytree(good, no_timings)
    record = json.loads((no_timings / "run.json").read_text())
    del record["timings"]
    (no_timings / "run.json").write_text(json.dumps(record))
    empty = d / "empty"
    empty.mkdir()
    (empty / "per_image.csv").write_text("")
    (d / "mine.md").write_text("my own notes")
    cases = {
        "no_method": ["report", no_method],
        "no_timings": ["report", no_timings],
        "empty_csv": ["report", good, empty],
        "out_user_file": ["report", good, "--out", d / "mine.md"],
        "out_new": ["report", good, "--out", d / "merged.md"],
        "out_again": ["report", good, no_timings, "--out", d / "merged.md"],
    }
    return dict(zip(cases, cli_batch(list(cases.values())))), d


def test_bad_input_report_names_the_broken_file(report_batch):
    got, d = report_batch
    assert got["no_method"]["rc"] == 1 and "Traceback" not in got["no_method"]["err"]
    want = (
        f"{d / 'no_method' / 'per_image.csv'} is not a per-image result table: no column(s) method"
    )
    assert want in got["no_method"]["err"]
    assert got["empty_csv"]["rc"] == 1 and f"cannot read {d / 'empty'}" in got["empty_csv"]["err"]
    assert got["no_timings"]["rc"] == 0, got["no_timings"]["err"]
    assert "| identity |" in got["no_timings"]["out"] and "no timings" in got["no_timings"]["err"]


def test_bad_input_report_out_never_replaces_a_users_file(report_batch):
    got, d = report_batch
    assert got["out_user_file"]["rc"] == 1 and "Traceback" not in got["out_user_file"]["err"]
    assert "exists and is not a report written by deblur-bench" in got["out_user_file"]["err"]
    assert (d / "mine.md").read_text() == "my own notes"
    assert got["out_new"]["rc"] == 0 and got["out_again"]["rc"] == 0  # its own report: replaced
    assert "2 runs" in (d / "merged.md").read_text()
