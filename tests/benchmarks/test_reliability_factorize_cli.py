"""Flags of ``factorize`` (and the seed of every command) that were taken wrong: a seed past
what the code takes, ``--quiet`` that was not, the search's flags ignored with fixed ranks, and
``--ranks auto``'s default candidates not fitted to the data as the library's are."""

from __future__ import annotations

import json

import pytest

from dnmf.select import default_candidates

BIG = "99999999999999999999"


@pytest.fixture(scope="module")
def factorize_batch(tmp_path_factory, faces_maker, cli_batch):
    root = tmp_path_factory.mktemp("factorize_cli")
    faces = faces_maker(root / "faces", "8png")
    base = ["factorize", "--data-dir", faces, "--size", "8", "--gray", "--max-iter", "5"]
    run = ["run", "--preset", "smoke", "--methods", "identity", "--quiet", "--data-dir", faces]
    train = ["train", "convae", "--preset", "smoke", "--quiet", "--data-dir", faces]
    cases = {
        "run_seed_big": run + ["--seed", BIG, "--out", root / "r1"],
        "train_seed_big": train + ["--seed", BIG, "--out", root / "t1"],
        "factorize_seed_big": base + ["--seed", BIG, "--out", root / "f1"],
        "factorize_seed_2_32": base + ["--seed", str(2**32), "--out", root / "f2"],
        "run_seed_max": run + ["--seed", str(2**32 - 1), "--out", root / "r3"],
        "factorize_seed_max": base + ["--ranks", "2", "--seed", str(2**32 - 1)]
        + ["--out", root / "f3", "--quiet"],
        "quiet_auto": base + ["--ranks", "auto", "--rank-candidates", "1", "2", "--cv-folds", "2"]
        + ["--out", root / "f4", "--quiet"],
        "quiet_fixed": base + ["--ranks", "2", "--out", root / "f5", "--quiet"],
        "candidates_fixed": base + ["--ranks", "3", "--rank-candidates", "1", "2"]
        + ["--out", root / "f6"],
        "candidates_default_ranks": base + ["--rank-candidates", "2", "--out", root / "f7"],
        "cv_flags_fixed": base + ["--ranks", "3", "2", "--cv-folds", "3", "--cv-rule", "1se"]
        + ["--out", root / "f8"],
        "auto_default": base + ["--ranks", "auto", "--out", root / "f9", "--quiet"],
    }  # fmt: skip
    got = dict(zip(cases, cli_batch(list(cases.values()))))
    return got, root


@pytest.mark.parametrize(
    "case, value",
    [
        ("run_seed_big", BIG),
        ("train_seed_big", BIG),
        ("factorize_seed_big", BIG),
        ("factorize_seed_2_32", str(2**32)),
    ],
)
def test_bad_input_seed_out_of_range_names_the_flag(factorize_batch, case, value):
    got, root = factorize_batch
    c = got[case]
    assert c["rc"] == 2, c["err"]
    want = f"argument --seed: must be an integer >= 0 and <= 4294967295 (2**32 - 1), got '{value}'"
    assert want in c["err"] and "Overflow" not in c["err"]
    assert not any((root / n).exists() for n in ("r1", "t1", "f1", "f2"))


def test_bad_input_largest_seed_works(factorize_batch):
    got, root = factorize_batch
    for case, out in (("run_seed_max", "r3"), ("factorize_seed_max", "f3")):
        assert got[case]["rc"] == 0, got[case]["err"][-3000:]
        assert (root / out / "run.json").is_file()
    assert json.loads((root / "f3" / "run.json").read_text())["seed"] == 2**32 - 1


def test_bad_input_factorize_quiet_is_quiet(factorize_batch):
    got, _ = factorize_batch
    for case in ("quiet_auto", "quiet_fixed", "factorize_seed_max"):
        c = got[case]
        assert c["rc"] == 0, c["err"][-3000:]
        # stdout: the one-line result; stderr: warnings at most (no bar, no log lines)
        assert len(c["out"].strip().splitlines()) == 1 and "-> V 64x" in c["out"], c["out"]
        assert all(line.startswith("warning: ") for line in c["err"].splitlines()), c["err"]
        assert "pretraining" not in c["err"] and "candidates" not in c["out"]


@pytest.mark.parametrize(
    "case, message",
    [
        (
            "candidates_fixed",
            "error: --rank-candidates only applies to --ranks auto, and the ranks are fixed "
            "(--ranks 3); pass --ranks auto or drop it",
        ),
        (
            "candidates_default_ranks",
            "error: --rank-candidates only applies to --ranks auto, and the ranks are fixed "
            "(--ranks 128 32 8); pass --ranks auto or drop it",
        ),
        (
            "cv_flags_fixed",
            "error: --cv-folds, --cv-rule only apply to --ranks auto, and the ranks are fixed "
            "(--ranks 3 2); pass --ranks auto or drop them",
        ),
    ],
)
def test_bad_input_search_flags_with_fixed_ranks_are_refused(factorize_batch, case, message):
    got, root = factorize_batch
    c = got[case]
    assert c["rc"] == 2 and c["err"].strip() == message, c["err"]
    assert not any((root / n).exists() for n in ("f6", "f7", "f8"))


def test_bad_input_auto_ranks_default_candidates_fit_the_data(factorize_batch):
    """12 images of 8 x 8 gray: V is 64 x 12, so at most rank 6 (the old CLI list: 8 to 128)."""
    got, root = factorize_batch
    c = got["auto_default"]
    assert c["rc"] == 0, c["err"][-3000:]
    summary = json.loads((root / "f9" / "run.json").read_text())
    assert summary["V_shape"] == [64, 12]
    assert summary["rank_selection"]["candidates"] == default_candidates((64, 12))
    assert max(summary["rank_selection"]["candidates"]) <= 6
