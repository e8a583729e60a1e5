"""`dnmf.shards.load_image_columns` with images that hide colours, hold several frames, or
announce a size Pillow refuses: transparency is composited onto white (as `deblur-bench`'s
reader does), a multi-frame file is read as its first frame with a warning naming it and its
frame count, and a decompression bomb is a ``ValueError`` naming the file."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dnmf.shards import load_image_columns


def _folder(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    return d


def _hidden_black(mode: str) -> Image.Image:
    """A 4 × 4 image whose left half is opaque mid gray and whose right half is transparent
    black (the colour a plain conversion reads)."""
    if mode == "RGBA":
        a = np.zeros((4, 4, 4), np.uint8)
        a[:, :2] = (128, 128, 128, 255)
        return Image.fromarray(a, "RGBA")
    if mode == "LA":
        a = np.zeros((4, 4, 2), np.uint8)
        a[:, :2] = (128, 255)
        return Image.merge("LA", [Image.fromarray(a[..., 0]), Image.fromarray(a[..., 1])])
    # a palette image whose entry 0 (black) is the transparent one
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 128, 128, 128] + [0] * 762)
    p.paste(1, (0, 0, 2, 4))
    p.info["transparency"] = 0
    return p


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
@pytest.mark.parametrize("gray", [True, False])
def test_bad_input_transparent_pixels_are_read_over_white(tmp_path, mode, gray):
    d = _folder(tmp_path)
    _hidden_black(mode).save(d / "a.png")
    V = load_image_columns(d, 0, 1, gray=gray).V
    img = V[:, 0].reshape(4, 4, -1)
    np.testing.assert_allclose(img[:, 2:], 1.0)  # transparent: white, not the hidden black
    np.testing.assert_allclose(img[:, :2], 128 / 255, atol=1e-6)  # opaque pixels as they are


def test_bad_input_opaque_images_are_read_as_before(tmp_path):
    d = _folder(tmp_path)
    a = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(a).save(d / "a.png")
    V = load_image_columns(d, 0, 1, gray=False).V
    np.testing.assert_array_equal(V[:, 0], a.reshape(-1).astype(np.float32) / 255.0)


def test_bad_input_multi_frame_file_warns_with_its_name_and_frame_count(tmp_path):
    d = _folder(tmp_path)
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (10, 200, 90)]
    frames[0].save(d / "anim.png", save_all=True, append_images=frames[1:])
    Image.fromarray(np.full((4, 4), 50, np.uint8)).save(d / "still.png")
    with pytest.warns(UserWarning) as caught:
        V = load_image_columns(d, 0, 1).V
    said = [str(w.message) for w in caught]
    assert said == [
        f"{d / 'anim.png'} holds 3 frames (an animation or a multi-page file); "
        "only the first is used"
    ]
    np.testing.assert_allclose(V[:, 0], 10 / 255)  # the first frame


def test_single_frame_files_do_not_warn(tmp_path):
    d = _folder(tmp_path)
    Image.fromarray(np.full((4, 4), 50, np.uint8)).save(d / "still.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image_columns(d, 0, 1)


def _png_header(path: Path, width: int, height: int) -> Path:
    """A 60-byte PNG whose header says ``width × height`` gray pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_bad_input_decompression_bomb_is_a_value_error_naming_the_file(tmp_path):
    d = _folder(tmp_path)
    bomb = _png_header(d / "b.png", 20000, 20000)
    with pytest.raises(ValueError, match=rf"could not read image {str(bomb)!r}: .*decompression"):
        load_image_columns(d, 0, 1)
