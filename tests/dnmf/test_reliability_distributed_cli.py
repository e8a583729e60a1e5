"""``python -m dnmf.distributed`` with bad flags, bad images and outputs it cannot write.

Every case runs the real command in a subprocess and checks the exit status (2: the command's
status for bad input, argparse's too), the one ``error:`` line naming the flag or the file, that
no traceback is printed, and that nothing was written or lost. The refusals come before any data
is read or any fit runs: several cases pair the bad flag or output with a missing ``--npy``, so
the message shows which check came first.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120
PREFIX = "python -m dnmf.distributed: error:"  # every error line, argparse's and the command's


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):  # one process, whatever runs the tests
        env.pop(var, None)
    return env


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dnmf.distributed", *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=TIMEOUT,
    )


def _refused(p: subprocess.CompletedProcess, *texts: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stdout == "", p.stdout  # no fit ran: its JSON line is missing
    lines = [ln for ln in p.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"{PREFIX} "), lines[0]  # one prefix, flag or not
    for t in texts:
        assert t in lines[0], (t, lines[0])


@pytest.fixture
def npy(tmp_path) -> Path:
    path = tmp_path / "V.npy"
    np.save(path, np.random.default_rng(0).random((12, 9)))
    return path


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- flags, refused by argparse
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--threads", "0"], "argument --threads: must be an integer >= 1, got '0'"),
        (
            ["--seed", str(2**64)],
            f"argument --seed: must be an integer from 0 to 2**64 - 1 = {2**64 - 1}",
        ),
        (["--pretrain", "x"], "argument --pretrain: must be true, false or an integer >= 1"),
        (["--size", "16"], "--size and --rgb apply to --images only"),
    ],
    ids=["threads_0", "seed_2_64", "pretrain_word", "size_with_npy"],
)
def test_bad_input_flag_refused_before_anything(tmp_path, npy, flags, message):
    out = tmp_path / "res.npz"
    p = _cli(tmp_path, "--npy", str(npy), "--ranks", "2", "--out", str(out), *flags)
    _refused(p, message)
    assert _listing(tmp_path) == ["V.npy"]


# ---------------------------------------------------------------- images
def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says ``width × height`` gray pixels (tiny on disk: Pillow refuses
    it from the header alone, as a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_bad_input_decompression_bomb_png_names_the_file(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(folder / "a.png")
    bomb = _png_header(folder / "b.png", 20000, 20000)
    p = _cli(tmp_path, "--images", str(folder), "--ranks", "1", "--out", str(tmp_path / "r.npz"))
    _refused(p, f"could not read image {str(bomb)!r}", "decompression bomb")
    assert _listing(tmp_path) == ["imgs"]


# ---------------------------------------------------------------- --out, checked first
def test_bad_input_out_in_a_missing_folder_is_refused_before_the_data_is_read(tmp_path):
    out = tmp_path / "no-such-folder" / "res.npz"
    p = _cli(tmp_path, "--npy", str(tmp_path / "missing.npy"), "--ranks", "2", "--out", str(out))
    _refused(p, f"--out {out}:", "does not exist")
    assert _listing(tmp_path) == []


def test_bad_input_out_that_is_a_folder_is_refused_before_the_data_is_read(tmp_path):
    (tmp_path / "results").mkdir()
    out = tmp_path / "results"
    p = _cli(tmp_path, "--npy", str(tmp_path / "missing.npy"), "--ranks", "2", "--out", str(out))
    _refused(p, "--out: refusing to write", "it is a folder, not a regular file")
    assert _listing(tmp_path) == ["results"] and _listing(out) == []


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (as root, permissions do not stop it:
    sysfs refuses new files to everyone)."""
    if os.geteuid() != 0:
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    if Path("/sys").is_dir():
        try:
            os.close(os.open("/sys/.dnmf-probe", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except OSError:
            return Path("/sys")
        os.unlink("/sys/.dnmf-probe")
    pytest.skip("no folder this process cannot write in")


def test_bad_input_unwritable_out_is_refused_before_the_data_is_read(tmp_path):
    folder = _unwritable_folder(tmp_path)
    out = folder / "res.npz"
    try:
        p = _cli(
            tmp_path, "--npy", str(tmp_path / "missing.npy"), "--ranks", "2", "--out", str(out)
        )
    finally:
        if folder.parent == tmp_path:
            folder.chmod(0o755)
    _refused(p, f"cannot write --out {out}:")
    assert not out.exists()


def test_bad_input_out_that_is_the_input_npy_is_refused_and_the_data_kept(tmp_path, npy):
    before = npy.read_bytes()
    p = _cli(tmp_path, "--npy", str(npy), "--ranks", "2", "--out", str(npy))
    _refused(p, f"--out {npy} is the --npy input itself")
    assert npy.read_bytes() == before and _listing(tmp_path) == ["V.npy"]


# ---------------------------------------------------------------- a write that fails after the fit
_FULL_DISK = """
import errno, sys
import numpy as np
from dnmf.distributed._cli import main

def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

np.savez = no_space  # the result file's writer: the disk fills during the fit
sys.exit(main(sys.argv[1:]))
"""


def test_fault_full_disk_when_the_result_is_written_names_out_and_keeps_the_old_file(tmp_path, npy):
    out = tmp_path / "res.npz"
    out.write_bytes(b"the previous result")
    p = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, "--npy", str(npy), "--ranks", "2", "--max-iter", "5"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=TIMEOUT,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert f"{PREFIX} cannot write --out {out}: no space left on device" in p.stderr
    assert out.read_bytes() == b"the previous result"
    assert _listing(tmp_path) == ["V.npy", "res.npz"]  # no temporary file left beside it


# ---------------------------------------------------------------- several processes
@pytest.mark.skipif(
    shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
    reason="torchrun not installed beside python",
)
def test_bad_input_out_refused_on_every_process_under_torchrun(tmp_path, npy):
    """Rank 0 checks --out; the other process fails with it instead of waiting for it."""
    out = tmp_path / "results"
    out.mkdir()
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "dnmf.distributed"]
    cmd += ["--npy", str(npy), "--ranks", "2", "--out", str(out)]
    p = subprocess.run(
        cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=TIMEOUT
    )
    assert p.returncode != 0
    assert f"[rank 0/2] {PREFIX} --out: refusing to write" in p.stderr
    assert f"[rank 1/2] {PREFIX} rank 0 refused its --out" in p.stderr
    assert _listing(out) == []
