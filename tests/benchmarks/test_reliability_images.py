"""The one image reader: full depth (16-bit, int, float), EXIF orientation, clear errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from benchmarks.faces import load_face_folder
from benchmarks.factorize_faces import JointProgress, load_face_matrix
from benchmarks.images import UnreadableImage, read_picture
from benchmarks.png16 import read_png16


@pytest.mark.parametrize(
    "shape, interlace",
    [((37, 31, 3), False), ((37, 31, 3), True), ((20, 9, 4), False), ((11, 13, 2), True)],
)
def test_png16_decoder_matches_the_samples(tmp_path, png16, shape, interlace):
    """Every row filter (the encoder cycles through all five) and Adam7 interlacing."""
    a = (np.random.default_rng(1).random(shape) * 65535).astype(np.uint16)
    path = png16(tmp_path / "x.png", a, interlace=interlace)
    assert np.array_equal(read_png16(path), a)
    with Image.open(path) as im:  # Pillow keeps the high byte only: the case handled here
        assert np.asarray(im).dtype == np.uint8


def test_bad_input_16bit_rgb_png_read_at_full_depth(tmp_path, png16):
    a = (np.random.default_rng(2).random((24, 30, 3)) * 65535).astype(np.uint16)
    x = read_picture(png16(tmp_path / "c.png", a)).array()
    assert x.shape == (3, 24, 30)
    assert np.abs(x - np.moveaxis(a / 65535.0, -1, 0)).max() < 1e-6  # not 1/255 off


def test_bad_input_16bit_gray_png_is_not_white(tmp_path):
    g = (np.linspace(0, 1, 32 * 40).reshape(32, 40) * 40000).astype(np.uint16)
    Image.fromarray(g).save(tmp_path / "g.png")
    x = read_picture(tmp_path / "g.png", gray=True).array()
    assert np.allclose(x[0], g / 65535.0, atol=1e-6) and x.max() < 0.62  # 40000 / 65535
    rgb = read_picture(tmp_path / "g.png").array()
    assert rgb.shape == (3, 32, 40) and np.allclose(rgb[0], rgb[2])


def test_bad_input_float_and_int_images(tmp_path):
    import tifffile

    f = np.linspace(-0.5, 1.5, 64, dtype=np.float32).reshape(8, 8)
    tifffile.imwrite(tmp_path / "f.tif", f)
    assert np.allclose(read_picture(tmp_path / "f.tif", gray=True).array()[0], f.clip(0, 1))
    i = (np.arange(64).reshape(8, 8) * 1000).astype(np.int32)
    tifffile.imwrite(tmp_path / "i.tif", i)
    got = read_picture(tmp_path / "i.tif", gray=True).array()[0]
    assert np.allclose(got, i / (2.0**32 - 1))  # a 32-bit image by its own range
    c = (np.random.default_rng(3).random((8, 9, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", c)  # Pillow reads this as 8-bit RGB
    assert np.allclose(read_picture(tmp_path / "c.tif").array(), np.moveaxis(c / 65535, -1, 0))


def test_bad_input_16bit_pgm(tmp_path):
    h, w, maxval = 6, 5, 4095
    v = (np.arange(h * w).reshape(h, w) * 100).astype(">u2")
    (tmp_path / "a.pgm").write_bytes(b"P5\n%d %d\n%d\n" % (w, h, maxval) + v.tobytes())
    x = read_picture(tmp_path / "a.pgm", gray=True).array()[0]
    assert np.allclose(x, v / maxval, atol=1 / 65535)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_bad_input_exif_orientation_is_applied(tmp_path, orientation):
    upright = np.zeros((20, 30, 3), np.uint8)
    upright[:5, :10] = 255  # a white block top-left when upright
    stored = {  # how a camera stores an upright scene for each EXIF orientation
        1: upright,
        2: upright[:, ::-1],
        3: upright[::-1, ::-1],
        4: upright[::-1],
        5: upright.transpose(1, 0, 2),
        6: np.rot90(upright, 1),
        7: upright[::-1, ::-1].transpose(1, 0, 2),
        8: np.rot90(upright, -1),
    }[orientation]
    im = Image.fromarray(np.ascontiguousarray(stored))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.png", exif=exif)
    got = read_picture(tmp_path / "o.png").array()
    assert got.shape == (3, 20, 30)
    assert np.array_equal(got, np.moveaxis(upright, -1, 0) / 255.0)
    with Image.open(tmp_path / "o.png") as ref:  # Pillow's own reading of the tag agrees
        assert np.array_equal(np.asarray(ImageOps.exif_transpose(ref)), upright)


def test_bad_input_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "t.png").write_text("not an image")
    with pytest.raises(UnreadableImage, match=r"cannot read image .*t\.png"):
        read_picture(tmp_path / "t.png")
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    with pytest.raises(UnreadableImage, match="cut.png"):
        read_picture(tmp_path / "cut.png")


def test_bad_input_16bit_face_folders_load_like_8bit_ones(tmp_path, faces_maker):
    """The face loader and the factorize loader read 16-bit folders at their real range."""
    f8 = load_face_folder(faces_maker(tmp_path / "f8", "8png"), size=32)
    f16 = load_face_folder(faces_maker(tmp_path / "f16", "16rgb"), size=32)
    g8 = load_face_folder(tmp_path / "f8", size=32, gray=True)
    g16 = load_face_folder(faces_maker(tmp_path / "g16", "16gray"), size=32, gray=True)
    assert f16.images.shape == f8.images.shape and g16.images.shape == g8.images.shape
    # the same pictures stored at 8 and at 16 bits differ by 8-bit rounding (input and resize)
    assert (f16.images - f8.images).abs().max() < 4 / 255
    assert (g16.images - g8.images).abs().max() < 4 / 255
    V, _, _ = load_face_matrix(tmp_path / "f16", size=16)
    V8, _, _ = load_face_matrix(tmp_path / "f8", size=16)
    assert np.abs(V - V8).max() < 4 / 255


def test_jpeg_faces_are_read_as_before(tmp_path, faces_maker):
    """8-bit images stay on Pillow's 8-bit path: values are exact multiples of 1/255."""
    f = load_face_folder(faces_maker(tmp_path / "f", "8"), size=40)
    assert torch.equal(torch.round(f.images * 255) / 255, f.images)


def test_progress_bar_starts_at_the_first_joint_iteration():
    bar = JointProgress(total=100, enabled=True)
    time.sleep(0.3)  # the layer-wise pretraining, which reports no iterations
    for it in (1, 2, 3):
        bar(it, 1.0)
    assert bar.bar.n == 3 and bar.bar.format_dict["elapsed"] < 0.25
    bar.close()
