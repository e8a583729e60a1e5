import warnings

import pytest
import torch

from benchmarks.faces import (
    find_images,
    identity_from_stem,
    load_embedded,
    load_face_folder,
    parse_identities,
    split_identities,
)


@pytest.mark.parametrize(
    "stem, ident",
    [
        ("Akshay Kumar_12", "Akshay Kumar"),
        ("person07_03_", "person07"),
        ("s12_4", "s12"),
        ("Brad Pitt_0", "Brad Pitt"),
        ("lonely", "lonely"),
    ],
)
def test_identity_from_stem(stem, ident):
    assert identity_from_stem(stem) == ident


def test_identity_from_sibling_folders(tmp_path, make_image):
    files = [
        make_image(tmp_path / "Original Images" / name / f"{name}_{k}.jpg", seed=k)
        for name in ("Alia", "Brad")
        for k in range(2)
    ]
    assert parse_identities(files, tmp_path) == ["Alia", "Alia", "Brad", "Brad"]


def test_identity_single_subfolder_uses_stem(tmp_path, make_image):
    files = [
        make_image(tmp_path / "Faces" / "Faces" / f"Akshay Kumar_{k}.jpg", seed=k) for k in range(2)
    ]
    assert parse_identities(files, tmp_path) == ["Akshay Kumar", "Akshay Kumar"]


def test_load_crop_resize_rgb_and_gray(tiny_faces):
    s = load_face_folder(tiny_faces, size=32)
    assert s.images.shape == (12, 3, 32, 32) and s.images.dtype == torch.float32
    assert 0.0 <= s.images.min() and s.images.max() <= 1.0
    assert sorted(set(s.identities)) == [f"Person {p}" for p in range(4)]
    g = load_face_folder(tiny_faces, size=33, gray=True)
    assert g.images.shape == (12, 1, 33, 33)


def test_recursive_and_pgm_png(tmp_path, make_image):
    make_image(tmp_path / "a" / "b" / "s1_1.pgm", mode="L")
    make_image(tmp_path / "s2_1.png", seed=3)
    assert [p.name for p in find_images(tmp_path)] == ["s1_1.pgm", "s2_1.png"]
    assert load_face_folder(tmp_path, size=32).images.shape == (2, 3, 32, 32)


def test_corrupt_file_skipped_with_warning(tiny_faces):
    bad = tiny_faces / "Person 9_1.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.warns(UserWarning, match="Person 9_1.jpg"):
        s = load_face_folder(tiny_faces, size=32)
    assert len(s) == 12


def test_empty_and_missing_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        find_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        find_images(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x_1.jpg").write_bytes(b"junk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="could be read"):
            load_face_folder(tmp_path / "bad", size=32)


def test_split_is_identity_disjoint_and_seeded():
    ids = [f"p{i:02d}" for i in range(50) for _ in range(3)]
    s = split_identities(ids, seed=0)
    assert (len(s.train_ids), len(s.val_ids), len(s.test_ids)) == (35, 5, 10)
    parts = [set(s.train_ids), set(s.val_ids), set(s.test_ids)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert {ids[i] for i in s.test} == parts[2]
    assert len(s.train) + len(s.val) + len(s.test) == len(ids)
    assert split_identities(ids, seed=0).test_ids == s.test_ids
    assert split_identities(ids, seed=1).test_ids != s.test_ids


def test_split_needs_three_identities():
    with pytest.raises(ValueError, match="at least 3 identities"):
        split_identities(["a", "a", "b"])


def test_embedded_default_set():
    s = load_embedded(size=32, max_images=40)
    assert len(s) == 40 and s.images.shape[1:] == (3, 32, 32)
    assert len(set(s.identities)) >= 10


def test_face_set_loads(faces_dir):
    s = load_face_folder(faces_dir, size=32, max_images=100)
    assert len(s) == 100 and len(set(s.identities)) == 50
    assert all(i.startswith("person") for i in s.identities)


def test_preset_overrides():
    from benchmarks.presets import get_preset

    p = get_preset("fast")
    assert p.with_overrides(size=128, max_images=None).size == 128
    assert p.with_overrides(max_images=None).max_images == p.max_images  # None: not given
    assert p.with_overrides(max_images=0).max_images is None  # 0: all images
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")
