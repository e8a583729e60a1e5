"""The ``python -m perf.<tool>`` commands with bad flags, bad inputs and outputs they cannot
write: one ``error:`` line naming the flag or the file, exit 2 (argparse) or 1 (an input found
wrong once read), no traceback, and nothing created — before any benchmark work starts.

The cases of ``perf.time_to_target`` and ``perf.solver_validation`` that were tracebacks or
left files behind run the real command (``python -m perf.<tool>``), one subprocess each; the
sweep over the other flags of every tool calls each tool's ``main`` in one subprocess (the
start-up of torch and scikit-learn dominates).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 180


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.pop("DEBLUR_FACES_DIR", None)
    return env


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=TIMEOUT,
    )


def _one_error(stderr: str, prog: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [ln for ln in stderr.splitlines() if ": error: " in ln]
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith(f"python -m {prog}: error: "), lines[0]
    return lines[0]


@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    """A folder without images, a file that is not JSON, a plain file, and where outputs go."""
    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "notes.txt").write_text("no faces here\n")
    (tmp_path / "targets.json").write_text("this is not JSON\n")
    (tmp_path / "a-file").write_text("keep me\n")
    return {
        "empty": tmp_path / "no-images",
        "bad_json": tmp_path / "targets.json",
        "file": tmp_path / "a-file",
        "out": tmp_path / "out",
    }


# ---------------------------------------------------------------- perf.time_to_target
TTT_CASES = {
    "only_unknown_case": (
        ["--only", "nosuch"],
        2,
        "argument --only: invalid choice: 'nosuch' (choose from 'faces-r64', 'faces-r16',",
    ),
    "faces_dir_missing": (
        ["--quick", "--faces-dir", "{tmp}/nonexistent"],
        2,
        "argument --faces-dir: no folder at '{tmp}/nonexistent'",
    ),
    "faces_dir_without_images": (
        ["--quick", "--only", "faces-r16", "--faces-dir", "{empty}"],
        1,
        "error: --faces-dir {empty} holds no images",
    ),
    "targets_not_json": (
        ["--quick", "--only", "deep-k2", "--targets", "{bad_json}"],
        1,
        "error: --targets {bad_json} is not a JSON file (Expecting value: line 1 column 1",
    ),
}


@pytest.mark.parametrize("case", list(TTT_CASES))
def test_bad_input_time_to_target_refuses_before_writing(case, inputs, tmp_path):
    args, code, message = TTT_CASES[case]
    fill = {"tmp": str(tmp_path), **{k: str(v) for k, v in inputs.items()}}
    args = [a.format(**fill) for a in args]
    p = _run("perf.time_to_target", *args, "--out", str(inputs["out"]))
    assert p.returncode == code, (p.returncode, p.stderr[-3000:])
    assert message.format(**fill) in _one_error(p.stderr, "perf.time_to_target")
    assert not inputs["out"].exists()  # no empty result folder, no half result
    assert inputs["bad_json"].read_text() == "this is not JSON\n"


# ---------------------------------------------------------------- perf.solver_validation
def test_bad_input_solver_validation_unknown_solver_is_refused_by_argparse(inputs):
    p = _run("perf.solver_validation", "--solvers", "hals", "nosuch", "--out", str(inputs["out"]))
    assert p.returncode == 2
    line = _one_error(p.stderr, "perf.solver_validation")
    assert "argument --solvers: invalid choice: 'nosuch' (choose from 'auto', 'mu'," in line
    assert not inputs["out"].exists()


# ---------------------------------------------------------------- perf.rank_selection_speed
def test_bad_input_rank_selection_speed_names_the_variable_that_gave_the_faces(inputs):
    """Without --data-dir the faces come from $DEBLUR_FACES_DIR: the error names the variable,
    not a flag that was never given."""
    out = inputs["out"] / "s.json"
    args = ["--size", "8", "--candidates", "2", "--max-iter", "1", "--rounds", "1"]
    p = subprocess.run(
        [sys.executable, "-m", "perf.rank_selection_speed", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env() | {"DEBLUR_FACES_DIR": str(inputs["empty"])},
        timeout=TIMEOUT,
    )
    assert p.returncode == 1, p.stderr[-3000:]
    line = _one_error(p.stderr, "perf.rank_selection_speed")
    assert f"error: DEBLUR_FACES_DIR {inputs['empty']} holds no images (" in line, line
    assert not inputs["out"].exists()


# ---------------------------------------------------------------- every other tool
_DRIVER = r"""
import contextlib, importlib, io, json, sys, traceback

results = []
for module, argv in json.loads(sys.stdin.read()):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = importlib.import_module(module).main(argv)
        except SystemExit as e:
            code = e.code
        except BaseException:
            traceback.print_exc()
            code = "traceback"
    results.append({"code": code, "stderr": err.getvalue()})
print(json.dumps(results))
"""

SMALL_SPEED = ["--m", "8", "--n", "8", "--rank", "2", "--iters", "1", "--repeats", "1"]
SMALL_SPEED += ["--no-batch", "--layers", "--no-torchnmf"]

# id: (tool, argv, exit code, text of the error line); small sizes, so that a check that is
# missing shows as a run that starts instead of a refusal, not as a long wait
SWEEP = {
    "ttt_quick_without_the_full_size_case": (
        "time_to_target",
        ["--quick", "--only", "faces-r64", "--out", "{out}"],
        2,
        "--only faces-r64: not a --quick case (those are faces-r16, lowrank,",
    ),
    "ttt_cap_nan": (
        "time_to_target",
        ["--quick", "--only", "batched", "--cap", "nan", "--out", "{out}"],
        2,
        "argument --cap: must be a finite number > 0, got 'nan'",
    ),
    "ttt_out_is_a_file": (
        "time_to_target",
        ["--quick", "--only", "batched", "--out", "{file}"],
        2,
        "argument --out: '{file}' exists and is not a folder",
    ),
    "scaling_threads_0": (
        "dnmf_scaling",
        ["--m", "8", "--n", "8", "--ranks", "2", "--iters", "1", "--repeats", "1"]
        + ["--worlds", "1", "--threads", "0"],
        2,
        "argument --threads: must be an integer >= 1, got '0'",
    ),
    "scaling_worlds_over_columns": (
        "dnmf_scaling",
        ["--m", "8", "--n", "3", "--ranks", "2", "--worlds", "1", "4"],
        2,
        "--worlds: 4 processes need at least as many columns (--n 3)",
    ),
    "scaling_json_is_a_folder": (
        "dnmf_scaling",
        ["--m", "8", "--n", "8", "--ranks", "2", "--json", "{empty}"],
        2,
        "argument --json: refusing to write {empty}: it is a folder",
    ),
    "fused_blocks_0": (
        "fused_pass_ab",
        ["--rounds", "1", "--iters", "1", "--blocks", "0"],
        2,
        "argument --blocks: must be an integer >= 1, got '0'",
    ),
    "fused_json_under_a_file": (
        "fused_pass_ab",
        ["--rounds", "1", "--iters", "1", "--json", "{file}/ab.json"],
        2,
        "argument --json: '{file}' is a file, not a folder",
    ),
    "speed_device_typo": (
        "nmf_speed",
        SMALL_SPEED + ["--device", "gpu"],
        2,
        "argument --device: must be cpu, cuda or cuda:N, got 'gpu'",
    ),
    "speed_batch_rank_too_big": (
        "nmf_speed",
        ["--m", "8", "--n", "8", "--rank", "2", "--batch", "2", "4", "4", "8"],
        2,
        "--batch: RANK 8 must be at most min(M, N) = 4",
    ),
    "speed_seed_negative": (
        "nmf_speed",
        SMALL_SPEED + ["--seed", "-1"],
        2,
        "argument --seed: must be an integer >= 0",
    ),
    "planted_seeds_0": (
        "rank_selection_planted",
        ["--seeds", "0", "--out", "{out}/p.json"],
        2,
        "argument --seeds: must be an integer >= 1",
    ),
    "planted_out_named_like_its_table": (
        "rank_selection_planted",
        ["--seeds", "1", "--out", "{out}/p.md"],
        2,
        "argument --out: '{out}/p.md' ends in .md",
    ),
    "rank_speed_data_dir_missing": (
        "rank_selection_speed",
        ["--data-dir", "{out}/nope", "--out", "{out}/s.json"],
        2,
        "argument --data-dir: no folder at",
    ),
    "rank_speed_data_dir_without_images": (
        "rank_selection_speed",
        ["--data-dir", "{empty}", "--out", "{out}/s.json"],
        1,
        "error: --data-dir {empty} holds no images",
    ),
    "rank_speed_loop_folds_over_folds": (
        "rank_selection_speed",
        ["--size", "8", "--candidates", "2", "--max-iter", "1", "--rounds", "1"]
        + ["--folds", "2", "--loop-folds", "3", "--out", "{out}/s.json"],
        2,
        "--loop-folds 3 is more than --folds 2",
    ),
    "subnormals_fraction_over_1": (
        "subnormals",
        ["--fractions", "2", "--out", "{out}"],
        2,
        "argument --fractions: must be a number in (0, 1]",
    ),
    "subnormals_out_is_a_file": (
        "subnormals",
        ["--rounds", "1", "--threads", "1", "--fractions", "0.5", "--out", "{file}"],
        2,
        "argument --out: '{file}' exists and is not a folder",
    ),
}


def test_bad_input_every_perf_tool_refuses_with_one_error_line(inputs):
    fill = {k: str(v) for k, v in inputs.items()}
    cases = [
        (f"perf.{tool}", [a.format(**fill) for a in argv]) for tool, argv, _, _ in SWEEP.values()
    ]
    p = subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads(p.stdout.strip().splitlines()[-1])
    failed = []
    for (case, (tool, _, code, message)), got in zip(SWEEP.items(), results):
        lines = [ln for ln in got["stderr"].splitlines() if ": error: " in ln]
        ok = (
            got["code"] == code
            and "Traceback" not in got["stderr"]
            and len(lines) == 1
            and lines[0].startswith(f"python -m perf.{tool}: error: ")
            and message.format(**fill) in lines[0]
        )
        if not ok:
            failed.append((case, got["code"], got["stderr"][-800:]))
    assert not failed, failed
    assert not inputs["out"].exists()
    assert inputs["file"].read_text() == "keep me\n"
    assert sorted(p.name for p in inputs["empty"].iterdir()) == ["notes.txt"]
