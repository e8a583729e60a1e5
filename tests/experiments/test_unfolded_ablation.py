"""`experiments.unfolded_ablation`: rows trained and scored on the validation people, grouped by
question, kept across reruns; unknown rows refused."""

from __future__ import annotations

import json

import pytest

from experiments import unfolded_ablation as ablation


@pytest.mark.slow  # two fits and three short trainings (about 10 s)
def test_rows_are_scored_on_validation_grouped_and_kept(tiny_faces, tmp_path, capsys):
    base = ["--data-dir", str(tiny_faces), "--size", "32", "--max-images", "12", "--threads", "1"]
    base += ["--epochs", "1", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    assert ablation.main([*base, "--only", "identity", "default", "random", "prior-tied"]) == 0
    record = json.loads((tmp_path / "out" / "ablation.json").read_text())
    rows = {r["variant"]: r for r in record["rows"]}
    assert list(rows) == ["identity", "default", "random", "prior-tied"]
    assert record["data"]["train"] > 0 and record["data"]["val"] > 0
    assert record["commands"][0][3:6] == ["--data-dir", str(tiny_faces), "--size"]
    row = rows["default"]
    assert row["model_kwargs"]["layers"] == 5 and row["model"] == "dnmf-unfolded"
    assert row["lr"] == ablation.DNMFUnfolded.train_lr  # the adapter's rate, as `train` uses
    # untrained, the network is the fitted model, scored by the adapter; training moved it
    assert row["untrained"]["val_psnr"] == row["init"]["val_psnr_untrained"]
    assert row["epochs"] == 1 and row["val_psnr"] != row["untrained"]["val_psnr"]
    assert rows["random"]["model_kwargs"]["init"] == "random" and rows["random"]["init"] == {
        "init": "random",
        "resume": False,
    }
    # a random start returns its input: its untrained score is the blurred input's
    assert rows["random"]["untrained"]["val_psnr"] == pytest.approx(
        rows["identity"]["val_psnr"], abs=0.05
    )
    assert rows["prior-tied"]["model"] == "dnmf-prior-unfolded"
    assert rows["prior-tied"]["model_kwargs"]["untie"] == "none"
    md = (tmp_path / "out" / "ablation.md").read_text()
    for heading in ("**References**", "**start**", "**non-blind**"):
        assert heading in md
    assert md.count("[`default`]") == 1  # the start group's first row
    for fig in ("default_atoms_before_after.png", "default_training_curve.png"):
        assert (tmp_path / "out" / fig).stat().st_size > 1000
    # a rerun keeps the rows it has (nothing retrained) and adds the asked-for new one
    capsys.readouterr()
    assert ablation.main([*base, "--only", "default", "identity"]) == 0
    assert "default ..." not in capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert len(record["commands"]) == 1 and len(record["rows"]) == 4  # nothing added
    with pytest.raises(SystemExit) as e:
        ablation.main([*base, "--only", "K7"])
    assert e.value.code == 2 and "unknown rows ['K7']" in capsys.readouterr().err
