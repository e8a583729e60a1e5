"""`deblur-bench factorize --ranks auto`: the search runs, its table and figure are written, and
bad search options are refused with exit code 2 and a message naming the option."""

from __future__ import annotations

import csv
import json

import pytest


@pytest.mark.slow  # two searches and two fits in a subprocess
def test_ranks_auto_writes_the_search(cli_batch, tiny_faces, tmp_path):
    base = ["factorize", "--data-dir", tiny_faces, "--size", "16", "--gray", "--ranks", "auto"]
    one, deep = tmp_path / "run", tmp_path / "deep"
    runs = cli_batch(
        [
            [
                *base,
                "--rank-candidates",
                "1",
                "2",
                "3",
                "--cv-folds",
                "2",
                "--max-iter",
                "20",
                "--out",
                one,
                "--no-progress",
            ],
            [
                *base,
                "--rank-candidates",
                "4,2",
                "5,2",
                "--cv-folds",
                "2",
                "--max-iter",
                "10",
                "--out",
                deep,
                "--no-progress",
            ],
        ]  # fmt: skip
    )
    assert [r["rc"] for r in runs] == [0, 0], [r["err"][-2000:] for r in runs]
    assert "chosen:" in runs[0]["out"]
    summary = json.loads((one / "run.json").read_text())
    sel = summary["rank_selection"]
    assert sel["candidates"] == [1, 2, 3] and sel["folds"] == 2
    assert summary["ranks"] == [sel["chosen"]]
    assert "rank_selection" in summary["seconds"]
    rows = list(csv.DictReader((one / "rank_selection.csv").open()))
    assert [int(row["candidate"]) for row in rows] == [1, 2, 3]
    assert sum(row["chosen"] == "True" for row in rows) == 1
    assert (one / "rank_selection.png").stat().st_size > 1000
    assert {"rank_selection.csv", "rank_selection.png"} <= set(summary["outputs"])
    # rank tuples: a deep search, scored by the product W1 W2 H
    summary = json.loads((deep / "run.json").read_text())
    assert summary["rank_selection"]["candidates"] == [[4, 2], [5, 2]]
    assert summary["ranks"] == summary["rank_selection"]["chosen"]
    assert summary["rank_selection"]["criterion"] == "product"


@pytest.mark.slow  # several CLI runs in a subprocess
def test_bad_search_options(cli_batch, tiny_faces, tmp_path):
    base = ["factorize", "--data-dir", tiny_faces, "--size", "16", "--no-progress"]
    runs = cli_batch(
        [
            [*base, "--ranks", "auto", "4", "--out", tmp_path / "a"],
            [*base, "--ranks", "best", "--out", tmp_path / "b"],
            [*base, "--ranks", "auto", "--rank-candidates", "4,x", "--out", tmp_path / "c"],
            [
                *base,
                "--ranks",
                "auto",
                "--rank-candidates",
                "2",
                "--cv-folds",
                "0",
                "--out",
                tmp_path / "d",
            ],
            [
                *base,
                "--ranks",
                "auto",
                "--rank-candidates",
                "2",
                "--cv-holdout",
                "0.9",
                "--out",
                tmp_path / "e",
            ],
        ]  # fmt: skip
    )
    assert [r["rc"] for r in runs] == [2, 2, 2, 2, 2]
    assert "--ranks auto cannot be combined" in runs[0]["err"]
    assert "positive int or 'auto'" in runs[1]["err"]
    assert "R1,R2" in runs[2]["err"]
    assert "folds must be an int >= 1" in runs[3]["err"]
    assert "holdout must be a fraction" in runs[4]["err"]
    assert not any((tmp_path / d).exists() for d in "abcde")
