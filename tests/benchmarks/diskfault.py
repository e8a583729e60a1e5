"""Test helpers: run ``deblur-bench`` commands in one subprocess with a fault injected, or on a
small file system that the test mounts (a tmpfs, as root) and fills.

`run_injected` patches one callable (``"module:Owner.attr"``) so that its calls after the
first ``after`` raise ``OSError(ENOSPC)`` without a file name, as a full disk does inside
Pillow, matplotlib or a buffered file, then runs the CLI's real entry point
(`benchmarks.cli.main`), case after case; ``fd_suffix`` limits an ``os.write`` patch to file
descriptors whose path ends so (the lock file).  ``signal`` instead sends that signal to the
process itself at the call, as a ``kill`` from outside would arrive in the middle of a command.

`small_disk` mounts a tmpfs of a given size; `run_on_disk` runs cases on it, each after
filling the disk so that only ``free`` bytes are left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FILLER = "filler.bin"

_DRIVER = r"""
import contextlib, errno, importlib, io, json, os, signal, sys, traceback, warnings
warnings.simplefilter("default")
from benchmarks.cli import main

def fill(disk, free):
    path = os.path.join(disk, "filler.bin")
    if os.path.exists(path):
        os.unlink(path)
    if free is None:
        return
    block = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        size = f.seek(0, 2)
        f.truncate(max(0, size - free))

def patch(case):
    mod, _, attr = case["target"].partition(":")
    owner = importlib.import_module(mod)
    *path, name = attr.split(".")
    for p in path:
        owner = getattr(owner, p)
    original = getattr(owner, name)
    calls = [0]

    def wrapper(*a, **k):
        suffix = case.get("fd_suffix")
        if suffix and not os.readlink(f"/proc/self/fd/{a[0]}").endswith(suffix):
            return original(*a, **k)
        calls[0] += 1
        if calls[0] > case.get("after", 0):
            if case.get("signal"):
                os.kill(os.getpid(), getattr(signal, case["signal"]))
            else:
                raise OSError(errno.ENOSPC, "No space left on device")
        return original(*a, **k)

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, original)

results = []
for case in json.load(sys.stdin):
    if "disk" in case:
        fill(case["disk"], case.get("free"))
    undo = patch(case) if "target" in case else (lambda: None)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(case["argv"])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            rc = "traceback"
        finally:
            undo()
    if "disk" in case:
        fill(case["disk"], None)
    results.append({**case, "rc": rc, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


def run_cases(cases: list[dict[str, Any]], cwd: Path | None = None) -> list[dict[str, Any]]:
    """Run every case (``argv``, optional ``target``/``after``/``fd_suffix``/``signal``,
    ``disk``/``free``) in one subprocess; returns them with ``rc``, ``out`` and ``err``."""
    for c in cases:
        c["argv"] = [str(a) for a in c["argv"]]
        if "disk" in c:
            c["disk"] = str(c["disk"])
    r = subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)},
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root on Linux, and the mount succeeds)."""
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    with tempfile.TemporaryDirectory() as d:
        ok = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ).returncode
        if ok != 0:
            return False
        subprocess.run(["umount", d], check=True)
    return True


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. ``"2m"``) mounted at ``where``; unmounted at the end."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def error_lines(err: str) -> list[str]:
    """The ``error:`` lines of a command's stderr."""
    return [line for line in err.splitlines() if line.startswith("error:")]


def tree(folder: Path, skip: tuple[str, ...] = (FILLER,)) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes; ``skip``: names left out."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def entries(folder: Path, skip: tuple[str, ...] = (FILLER,)) -> list[str]:
    """Every file and folder under ``folder`` (hidden ones too), ``skip`` left out."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name not in skip)
