"""The CNN experiment scripts' shared pieces: the flip dataset, the face splits, the PSNR."""

from __future__ import annotations

import argparse

import pytest
import torch

from benchmarks.metrics import psnr
from convae.tta import dihedral
from experiments._cnn_setup import add_data_args, face_splits
from experiments.unet_ablation import val_psnr
from experiments.unet_finetune import DihedralPairs


def test_dihedral_pairs_give_one_transform_to_both_images():
    torch.manual_seed(0)
    b, s = torch.rand(3, 2, 6, 6), torch.rand(3, 2, 6, 6)
    data = DihedralPairs(b, s)
    seen = set()
    for _ in range(40):
        tb, ts = data[1]
        k = next(k for k in range(8) if torch.equal(tb, dihedral(b[1], k)))
        assert torch.equal(ts, dihedral(s[1], k))
        seen.add(k)
    assert len(data) == 3 and len(seen) >= 6
    with pytest.raises(ValueError, match="square"):
        DihedralPairs(torch.rand(1, 1, 4, 6), torch.rand(1, 1, 4, 6))


def test_face_splits_and_val_psnr(tiny_faces):
    p = argparse.ArgumentParser()
    add_data_args(p, size=32, max_images=12)
    args = p.parse_args(["--data-dir", str(tiny_faces)])
    blur, meta, splits = face_splits(args)
    assert meta == {**blur.meta(), "noise": 0.0, "quantization": "8-bit"}
    assert splits.train.sharp.shape[1:] == (3, 32, 32)
    va = splits.val
    expected = float(psnr(va.blurred, va.sharp).mean())
    assert val_psnr(torch.nn.Identity(), va.blurred, va.sharp) == pytest.approx(expected)


def test_write_result_keeps_the_facts_and_the_training(tmp_path, capsys):
    import json
    from types import SimpleNamespace

    from experiments._cnn_setup import write_result

    r = SimpleNamespace(
        best_val_loss=0.01, best_epoch=3, epochs_completed=4, images_per_s=12.5, seconds=9.0,
        config={"lr": 1e-3}, history=[{"epoch": 1}],
    )  # fmt: skip
    write_result(tmp_path / "r.json", r, extra=6, width=8)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["extra"] == 6 and data["width"] == 8 and data["best_epoch"] == 3
    assert data["epochs"] == 4 and data["config"] == {"lr": 1e-3} and len(data["history"]) == 1
    assert "best val loss 0.01000 at epoch 3" in capsys.readouterr().out
