"""SIGTERM and SIGHUP during ``run`` or ``factorize`` clean up as Ctrl-C does: the staging
folder and the lock go, the previous run stays, one line says so, and the exit code is
128 + the signal's number."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.benchmarks.diskfault import entries, run_cases, tree

RUN = ["run", "--preset", "smoke", "--methods", "identity", "--quiet"]
FACTORIZE = ["factorize", "--ranks", "2", "--size", "16", "--max-iter", "5", "--quiet"]


@pytest.fixture(scope="module")
def signalled(tmp_path_factory, faces_maker):
    """Each command sent a signal by itself in the middle of its work, in one subprocess."""
    root = tmp_path_factory.mktemp("signals")
    faces = faces_maker(root / "faces", "8png")
    runs = root / "runs"
    data = ["--data-dir", faces]
    fit = {"target": "benchmarks.runner:fit_and_restore"}  # inside the run's staging folder
    load = {"target": "benchmarks.factorize_faces:load_face_matrix"}
    fac = FACTORIZE + data
    cases = {
        "prev": {"argv": RUN + data + ["--out", runs / "prev"]},
        "run_term": {**fit, "signal": "SIGTERM", "argv": RUN + data + ["--out", runs / "a"]},
        "run_hup": {
            **fit,
            "signal": "SIGHUP",
            "argv": RUN + data + ["--out", runs / "prev", "--overwrite"],
        },
        "factorize_term": {**load, "signal": "SIGTERM", "argv": fac + ["--out", runs / "f"]},
        "factorize_hup": {**load, "signal": "SIGHUP", "argv": fac + ["--out", runs / "g"]},
    }  # fmt: skip
    got = dict(zip(cases, run_cases(list(cases.values()))))
    return got, runs


@pytest.mark.parametrize(
    "case, signum, out",
    [
        ("run_term", signal.SIGTERM, "a"),
        ("run_hup", signal.SIGHUP, "prev"),
        ("factorize_term", signal.SIGTERM, "f"),
        ("factorize_hup", signal.SIGHUP, "g"),
    ],
)
def test_fault_termination_signal_cleans_up(signalled, case, signum, out):
    got, runs = signalled
    assert got["prev"]["rc"] == 0, got["prev"]["err"]
    c = got[case]
    assert c["rc"] == 128 + signum, c["err"][-3000:]
    assert f"interrupted by {signal.Signals(signum).name}" in c["err"].splitlines()[-1]
    assert "Traceback" not in c["err"]
    leftovers = [p for p in entries(runs) if p.startswith(f".{out}.")]  # .X.lock, .X.tmp-PID
    assert leftovers == []
    if out == "prev":
        assert "the previous run in" in c["err"] and (runs / "prev" / "run.json").is_file()
    else:
        assert not (runs / out).exists()


def test_fault_sigterm_from_outside_during_factorize(tmp_path, faces_maker, start_cli):
    """A real ``kill -TERM`` while the fit runs (it could run for minutes: --tol 0)."""
    faces = faces_maker(tmp_path / "faces", "8png")
    out = tmp_path / "runs" / "long"
    proc = start_cli(
        "factorize", "--data-dir", faces, "--ranks", "2", "--size", "16", "--tol", "0",
        "--max-iter", "100000000", "--out", out, "--quiet",
    )  # fmt: skip
    staging = tmp_path / "runs" / f".long.tmp-{proc.pid}"
    t0 = time.monotonic()
    while not (staging / ".deblur-bench-run").is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < 300, "the run never started"
        time.sleep(0.05)
    time.sleep(0.5)  # into the work
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "interrupted by SIGTERM"
    assert tree(tmp_path / "runs") == {} and entries(tmp_path / "runs") == []
