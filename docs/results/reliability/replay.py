"""Helpers of the reliability replays (``make_tables.py``, ``review2.py``): run a command or a
library call, record its exit code and the line it printed, and build face folders.

Every helper returns plain data; nothing here decides what a case should print.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
RUN = ["run", "--preset", "smoke", "--methods", "identity", "--quiet"]
if str(REPO) not in sys.path:  # the tests' helpers (tests.benchmarks.diskfault, ...)
    sys.path.insert(0, str(REPO))


def said_of(err: str, extra: list[str] | tuple[str, ...] = ()) -> str:
    """The line a user reads: the first line that mentions an error, else the last line."""
    lines = [ln for ln in err.splitlines() if ln.strip()] + list(extra)
    if any(ln.startswith("Traceback") for ln in lines):
        return "TRACEBACK: " + lines[-1]
    return next((ln for ln in lines if "error" in ln), lines[-1] if lines else "")


def call(argv: list) -> dict:
    """The CLI entry point in this process: exit code and the line it printed."""
    from benchmarks.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc()
                rc = "traceback"
    said = said_of(err.getvalue(), [f"warning: {w.message}" for w in caught])
    return {"rc": rc, "said": said, "stdout": out.getvalue(), "stderr": err.getvalue()}


def run_module(module: str, args: list, timeout: float = 300, cwd: Path = REPO) -> dict:
    """``python -m MODULE ARGS`` in a subprocess: exit code, output and the line it printed."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}
    env.pop("DEBLUR_FACES_DIR", None)
    p = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    said = said_of(p.stderr)
    return {"rc": p.returncode, "said": said, "stdout": p.stdout, "stderr": p.stderr, "args": args}


def attempt(fn: Callable[[], object]) -> str:
    """A library call: ``returned ...`` (what ``fn`` returns) or ``Error: first line``, and
    the warnings it gave (convergence warnings of short fits left out)."""
    import dnmf

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", dnmf.ConvergenceWarning)
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        try:
            said = f"returned {fn()}"
        except Exception as e:
            said = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return said + "".join(f"; warns: {w.message}" for w in caught)


def row(item: int, case: str, rc: object, said: str, after: str = "", **more: object) -> dict:
    """One line of a table (``more``: ``topic``, ``argv``, ...)."""
    return {"item": item, "case": case, "rc": rc, "said": said, "after": after, **more}


def tree(folder: Path) -> dict:
    """Every file under ``folder``, hidden ones too, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def faces(root: Path, kind: str = "8", n: int = 24) -> Path:
    """``n`` shipped faces (3 per person) as PNGs: ``8``/``8gray`` (8-bit RGB/gray) or the same
    pictures at 16 bits, ``16rgb``/``16gray`` (v * 257 maps 0..255 exactly onto 0..65535)."""
    from benchmarks.faces import SHIPPED_FACES
    from benchmarks.images import image_files
    from tests.benchmarks.conftest import write_png16  # the tests' own 16-bit PNG encoder

    root.mkdir(parents=True)
    number = re.compile(r"_(\d+)_?$")
    files = [f for f in image_files(SHIPPED_FACES) if int(number.search(f.stem)[1]) <= 3]
    for f in files[:n]:
        im = Image.open(f)
        a = np.asarray(im.convert("L" if kind.endswith("gray") else "RGB"))
        if kind.startswith("8"):
            Image.fromarray(a).save(root / f"{f.stem}.png")
        elif kind == "16gray":
            Image.fromarray(a.astype(np.uint16) * 257).save(root / f"{f.stem}.png")  # I;16
        else:
            write_png16(root / f"{f.stem}.png", a.astype(np.uint16) * 257)
    return root
