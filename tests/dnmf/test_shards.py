"""dnmf.shards: balanced column ranges and loaders that read only one process's columns."""

from __future__ import annotations

import numpy as np
import pytest

from dnmf.shards import (
    ColumnShard,
    column_range,
    list_images,
    load_image_columns,
    load_npy_columns,
    resolve_rank_world,
)


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
def test_column_ranges_tile_every_column_once(world):
    for n in range(0, 40):
        ranges = [column_range(n, r, world) for r in range(world)]
        cover = np.concatenate([np.arange(a, b) for a, b in ranges])
        np.testing.assert_array_equal(cover, np.arange(n))  # in rank order, no overlap, no gap
        sizes = [b - a for a, b in ranges]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_column_range_examples_and_errors():
    assert [column_range(37, r, 3) for r in range(3)] == [(0, 13), (13, 25), (25, 37)]
    assert [column_range(37, r, 2) for r in range(2)] == [(0, 19), (19, 37)]
    with pytest.raises(ValueError, match="rank must be in"):
        column_range(10, 3, 3)
    with pytest.raises(ValueError, match="n_cols"):
        column_range(-1, 0, 1)
    with pytest.raises(ValueError, match="world"):
        column_range(10, 0, 0)
    with pytest.raises(ValueError, match="both rank and world"):
        resolve_rank_world(0, None)
    assert resolve_rank_world() == (0, 1)  # torch.distributed not initialised


@pytest.fixture
def matrix(tmp_path):
    rng = np.random.default_rng(0)
    return rng.random((11, 37)), tmp_path


@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_columns_concatenate_to_the_whole(matrix, order):
    V, d = matrix
    path = d / "V.npy"
    np.save(path, np.asarray(V, order=order))
    for world in (1, 2, 3, 5):
        shards = [load_npy_columns(path, r, world) for r in range(world)]
        assert all(isinstance(s, ColumnShard) and s.n_cols == 37 for s in shards)
        assert [s.col_offset for s in shards] == [
            column_range(37, r, world)[0] for r in range(world)
        ]
        assert all(s.V.flags.c_contiguous and s.V.dtype == np.float64 for s in shards)
        np.testing.assert_array_equal(np.concatenate([s.V for s in shards], axis=1), V)


def test_npy_samples_as_rows_and_dtypes(matrix):
    V, d = matrix
    np.save(d / "Vt.npy", V.T.copy())
    s = load_npy_columns(d / "Vt.npy", 1, 2, samples_as_rows=True)
    np.testing.assert_array_equal(s.V, V[:, 19:])
    assert (s.col_offset, s.n_cols) == (19, 37)
    np.save(d / "int.npy", (V * 10).astype(np.int32))
    assert load_npy_columns(d / "int.npy", 0, 2).V.dtype == np.float64
    assert load_npy_columns(d / "int.npy", 0, 2, dtype="float32").V.dtype == np.float32
    np.save(d / "f32.npy", V.astype(np.float32))
    assert load_npy_columns(d / "f32.npy").V.dtype == np.float32


def test_npy_errors(matrix):
    V, d = matrix
    with pytest.raises(FileNotFoundError, match="no .npy file"):
        load_npy_columns(d / "missing.npy", 0, 1)
    (d / "junk.npy").write_bytes(b"not a numpy file at all")
    with pytest.raises(ValueError, match="could not read"):
        load_npy_columns(d / "junk.npy", 0, 1)
    np.save(d / "full.npy", V)
    raw = (d / "full.npy").read_bytes()
    (d / "short.npy").write_bytes(raw[: len(raw) // 2])  # truncated data
    with pytest.raises(ValueError, match="could not read"):
        load_npy_columns(d / "short.npy", 1, 2)
    np.save(d / "vec.npy", np.ones(5))
    with pytest.raises(ValueError, match="2-D"):
        load_npy_columns(d / "vec.npy", 0, 1)
    np.save(d / "cplx.npy", V.astype(np.complex64))
    with pytest.raises(ValueError, match="real numbers"):
        load_npy_columns(d / "cplx.npy", 0, 1)
    bad = V.copy()
    bad[2, 30] = np.nan
    np.save(d / "nan.npy", bad)
    load_npy_columns(d / "nan.npy", 0, 2)  # the NaN is in rank 1's columns only
    with pytest.raises(ValueError, match="NaN"):
        load_npy_columns(d / "nan.npy", 1, 2)
    np.save(d / "neg.npy", -V)
    with pytest.raises(ValueError, match=r"nonnegative: found \d+ negative"):
        load_npy_columns(d / "neg.npy", 0, 1)
    with pytest.raises(ValueError, match="at least one column"):
        load_npy_columns(d / "full.npy", 0, 40)
    np.savez(d / "arch.npz", V=V)
    with pytest.raises(ValueError, match="could not read|not a single"):
        load_npy_columns(d / "arch.npz", 0, 1)


@pytest.fixture
def image_folder(tmp_path, make_image):
    d = tmp_path / "imgs"
    for i in range(5):
        make_image(d / f"img{i}.png", size=(37, 31), seed=i)
    (d / "notes.txt").write_text("not an image")
    return d


def test_image_columns_split_and_concatenate(image_folder):
    whole = load_image_columns(image_folder, 0, 1)
    assert whole.V.shape == (37 * 31, 5) and whole.V.dtype == np.float32
    assert 0 <= whole.V.min() and whole.V.max() <= 1
    for world in (2, 3):
        parts = [load_image_columns(image_folder, r, world) for r in range(world)]
        np.testing.assert_array_equal(np.concatenate([p.V for p in parts], axis=1), whole.V)
        assert [p.col_offset for p in parts] == [column_range(5, r, world)[0] for r in range(world)]
    rgb = load_image_columns(image_folder, 1, 2, gray=False, size=(16, 12))
    assert rgb.V.shape == (16 * 12 * 3, 2) and rgb.col_offset == 3
    assert load_image_columns(image_folder, 0, 2, size=8).V.shape == (64, 3)
    assert [f.name for f in list_images(image_folder)] == [f"img{i}.png" for i in range(5)]


def test_image_loader_reads_only_its_own_files(image_folder, make_image):
    (image_folder / "img5.png").write_bytes(b"\x89PNG broken")  # in rank 1's half of 6 files
    assert load_image_columns(image_folder, 0, 2).V.shape[1] == 3  # rank 0 never opens it
    with pytest.raises(ValueError, match="could not read image .*img5.png"):
        load_image_columns(image_folder, 1, 2)


def test_image_errors(tmp_path, make_image):
    with pytest.raises(FileNotFoundError, match="no image folder"):
        load_image_columns(tmp_path / "missing", 0, 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_image_columns(tmp_path / "empty", 0, 1)
    d = tmp_path / "mixed"
    make_image(d / "a.png", size=(20, 20))
    make_image(d / "b.png", size=(20, 24))
    with pytest.raises(ValueError, match="pass size="):
        load_image_columns(d, 0, 1)
    assert load_image_columns(d, 0, 1, size=(10, 12)).V.shape == (120, 2)
    with pytest.raises(ValueError, match="at least one column"):
        load_image_columns(d, 0, 3)
    with pytest.raises(ValueError, match="size must be"):
        load_image_columns(d, 0, 1, size=0)


def test_image_columns_refuse_16_bit_and_apply_exif_orientation(tmp_path):
    """A 16-bit PNG is refused by name (converting would clip it to white); an EXIF-rotated
    photo is read upright."""
    from PIL import Image

    d = tmp_path / "deep"
    d.mkdir()
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(d / "a.png")
    with pytest.raises(ValueError, match=r"a\.png.*not an 8-bit image"):
        load_image_columns(d, 0, 1)
    r = tmp_path / "rotated"
    r.mkdir()
    wide = np.zeros((4, 6), dtype=np.uint8)
    wide[0, :] = 255  # the top row is white
    im = Image.fromarray(wide)
    exif = im.getexif()
    exif[0x0112] = 6  # Orientation 6: the camera was turned; the upright image is 90° CW
    im.save(r / "p.jpg", exif=exif, quality=100)
    V = load_image_columns(r, 0, 1).V
    assert V.shape == (24, 1)
    upright = V[:, 0].reshape(6, 4)  # 6 rows x 4 columns once rotated
    assert upright[:, -1].mean() > 0.9 and upright[:, 0].mean() < 0.1  # white row -> right column
