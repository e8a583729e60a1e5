"""A method whose restoration holds NaN or infinity stops ``deblur-bench run`` with one
``error:`` line naming the method and the image, instead of reaching the tables (NaN spoils
every mean; the clip to [0, 1] used to turn infinity into white pixels without a word)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The real entry point in a subprocess, with one extra method registered: ``broken`` returns
# its input with one value of the second test image of each batch set to the case's number.
_DRIVER = r"""
import contextlib, io, json, sys, traceback
from benchmarks.cli import main
from benchmarks.methods import registry
from benchmarks.methods.identity import Identity

class Broken(Identity):
    name = "broken"
    value = 0.0

    def restore(self, y, blur):
        x = super().restore(y, blur).clone()
        x[1, 0, 0, 0] = self.value
        return x

registry()["broken"] = Broken
results = []
for value, argv in json.load(sys.stdin):
    Broken.value = float(value)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
            rc = "traceback"
    results.append({"rc": rc, "err": err.getvalue()})
print(json.dumps(results))
"""

RUN = ["run", "--preset", "smoke", "--methods", "identity", "broken", "--quiet"]


def _batch(cases: list[tuple[str, list]]) -> list[dict]:
    r = subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input=json.dumps([[v, [str(a) for a in argv]] for v, argv in cases]),
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def site(tmp_path_factory, faces_maker):
    """A face folder and a finished run of ``identity`` and a finite ``broken`` (0.5)."""
    root = tmp_path_factory.mktemp("nonfinite")
    faces = faces_maker(root / "faces", "8png")
    (ok,) = _batch([("0.5", RUN + ["--data-dir", faces, "--out", root / "runs" / "prev"])])
    assert ok["rc"] == 0, ok["err"]
    return root, faces


def test_fault_method_returns_nonfinite(site):
    root, faces = site
    runs = root / "runs"
    prev = runs / "prev"
    assert list(json.loads((prev / "run.json").read_text())["methods"]) == ["identity", "broken"]
    before = _tree(prev)
    cases = [
        ("nan", RUN + ["--data-dir", faces, "--out", runs / "new-nan"]),
        ("inf", RUN + ["--data-dir", faces, "--out", runs / "new-inf"]),
        ("-inf", RUN + ["--data-dir", faces, "--out", prev, "--overwrite"]),
    ]
    results = _batch(cases)
    kinds = ["NaN", "infinity", "infinity"]
    for (value, argv), kind, r in zip(cases, kinds, results, strict=True):
        lines = r["err"].strip().splitlines()
        assert r["rc"] == 1 and "Traceback" not in r["err"], (value, r)
        (error,) = [ln for ln in lines if ln.startswith("error:")]
        assert error.startswith(f"error: method broken returned {kind} for test image '")
        assert (faces / error.split("'")[1]).is_file(), error  # the image's own file name
        assert "(1 of 3072 values)" in error and "stops before scoring" in error
        if "--overwrite" in argv:
            assert lines == [f"note: the previous run in {prev} is kept as it was", error]
        else:
            assert lines == [error]
    # nothing half-written: no new folder, no staging folder, lock or temporary file
    assert sorted(p.name for p in runs.iterdir()) == ["prev"]
    assert _tree(prev) == before  # the run --overwrite would have replaced is kept


def test_fault_method_returns_nonfinite_in_a_sweep(site):
    root, faces = site
    out = root / "sweeps" / "s"
    sweep = ["sweep", "--preset", "smoke", "--methods", "identity", "broken", "--quiet"]
    argv = sweep + ["--data-dir", faces, "--grid", "gaussian:1", "--out", out]
    (r,) = _batch([("nan", argv)])
    assert r["rc"] == 1 and "Traceback" not in r["err"], r
    (error,) = [ln for ln in r["err"].splitlines() if ln.startswith("error:")]
    assert error.startswith("error: method broken under gaussian:1")
    assert "returned NaN for test image '" in error and "stops before scoring" in error
    assert not list(out.glob("cells/broken/*.json"))  # the bad cell is not kept as finished
