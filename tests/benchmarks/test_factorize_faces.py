"""benchmarks/factorize_faces.py (`deblur-bench factorize`) on tiny synthetic images."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

import dnmf
from benchmarks import factorize_faces as ff
from benchmarks.cli_args import factorize_flags


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    factorize_flags(p)
    return p.parse_args(list(argv))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def image_dir(tmp_path, rng):
    d = tmp_path / "faces"
    (d / "person_b").mkdir(parents=True)
    for i in range(8):
        arr = (rng.random((30 + i, 40, 3)) * 255).astype(np.uint8)  # non-square: center crop
        folder = d if i % 2 else d / "person_b"
        Image.fromarray(arr).save(folder / f"img_{i}.{'png' if i % 3 else 'jpg'}")
    Image.fromarray((rng.random((36, 36)) * 255).astype(np.uint8)).save(d / "gray.pgm")
    (d / "broken.jpg").write_bytes(b"not an image at all")
    (d / "notes.txt").write_text("ignored")
    return d


def test_load_face_matrix(image_dir):
    with pytest.warns(RuntimeWarning, match=r"skipping unreadable image .*broken\.jpg"):
        V, names, shape = ff.load_face_matrix(image_dir, size=16)
    assert V.shape == (16 * 16 * 3, 9) and V.dtype == np.float32 and shape == (16, 16, 3)
    assert 0 <= V.min() and V.max() <= 1
    assert "broken.jpg" not in names and any(n.startswith("person_b") for n in names)
    with pytest.warns(RuntimeWarning):
        Vg, _, shape_g = ff.load_face_matrix(image_dir, size=8, gray=True, max_images=4)
    assert Vg.shape == (64, 4) and shape_g == (8, 8)


def test_factorize_command_writes_everything(image_dir, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="broken.jpg"):
        code = ff.main(
            _args(
                "--data-dir",
                str(image_dir),
                "--ranks",
                "6",
                "3",
                "--size",
                "12",
                "--max-iter",
                "30",
                "--out",
                str(out),
                "--no-progress",
            )
        )
    assert code == 0
    for name in [
        "factors.npz",
        "atoms_layer1.png",
        "atoms_layer2.png",
        "loss.png",
        "reconstructions.png",
        "run.json",
    ]:
        assert (out / name).is_file(), name
    res = dnmf.load(out / "factors.npz")
    assert res.ranks == (6, 3) and res.Ws[0].shape == (12 * 12 * 3, 6) and res.H.shape == (3, 9)
    summary = json.loads((out / "run.json").read_text())
    assert summary["n_images"] == 9 and summary["V_shape"] == [432, 9]
    assert "relative error" in capsys.readouterr().out
    # an existing non-empty --out is refused without --overwrite ...
    code = ff.main(
        _args("--data-dir", str(image_dir), "--ranks", "4", "--out", str(out), "--no-progress")
    )
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    # ... and accepted with it
    with pytest.warns(RuntimeWarning):
        code = ff.main(
            _args(
                "--data-dir",
                str(image_dir),
                "--ranks",
                "4",
                "--size",
                "12",
                "--gray",
                "--max-iter",
                "5",
                "--beta",
                "1",
                "--out",
                str(out),
                "--overwrite",
                "--no-progress",
            )
        )
    assert code == 0 and dnmf.load(out / "factors.npz").ranks == (4,)


def test_factorize_command_errors(tmp_path, image_dir, capsys):
    assert ff.main(_args("--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o1"))) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert ff.main(_args("--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o2"))) == 2
    assert "holds no images" in capsys.readouterr().err
    with pytest.warns(RuntimeWarning):  # 9 images cannot give rank 128 with NNDSVD
        assert (
            ff.main(
                _args("--data-dir", str(image_dir), "--out", str(tmp_path / "o3"), "--size", "8")
            )
            == 2
        )
    assert "init='random'" in capsys.readouterr().err


def test_on_the_face_set(faces_dir, tmp_path):
    code = ff.main(
        _args(
            "--data-dir",
            str(faces_dir),
            "--ranks",
            "8",
            "4",
            "--size",
            "24",
            "--gray",
            "--max-images",
            "30",
            "--max-iter",
            "40",
            "--out",
            str(tmp_path / "f"),
            "--no-progress",
        )
    )
    assert code == 0
    summary = json.loads((tmp_path / "f" / "run.json").read_text())
    assert summary["n_images"] == 30 and summary["relative_error"] < 0.5
