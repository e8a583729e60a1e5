"""``restore`` inputs that were read wrong without a word: an animation or a multi-page file (the
first frame, now with a warning naming the file and its frame count), transparent pixels (now
composited on white, not read in the colour they hide), and an ``--out`` inside an input folder
(now refused, as ``run`` refuses one inside its data folder)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.benchmarks.diskfault import entries, tree

RESTORE = ["restore", "--method", "identity", "--quiet"]


def frames(values: tuple[int, ...]) -> list[Image.Image]:
    return [Image.fromarray(np.full((40, 48, 3), v, np.uint8)) for v in values]


@pytest.fixture(scope="module")
def restored(tmp_path_factory, cli_batch):
    d = tmp_path_factory.mktemp("restore_inputs")
    first, *rest = frames((30, 150, 250))
    first.save(d / "anim.gif", save_all=True, append_images=rest, duration=100, loop=0)
    first.save(d / "pages.tiff", save_all=True, append_images=rest[:1])
    rgba = np.zeros((40, 48, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere, hidden where transparent
    rgba[:, :24, 3] = 0  # left half: fully transparent
    rgba[:, 24:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(d / "logo.png")
    la = np.zeros((40, 48, 2), np.uint8)  # gray + alpha: black, half transparent
    la[..., 1] = 128
    Image.fromarray(la, "LA").save(d / "half.png")
    photos = d / "photos"
    photos.mkdir()
    Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(photos / "me.jpg")
    before = tree(photos)
    cases = {
        "anim": RESTORE + [d / "anim.gif", d / "pages.tiff", "--out", d / "o1"],
        "alpha": RESTORE + [d / "logo.png", d / "half.png", "--out", d / "o2"],
        "gray_alpha": RESTORE + [d / "half.png", "--gray", "--out", d / "o3"],
        "out_is_input": RESTORE + [photos, "--out", photos],
        "out_inside_input": RESTORE + [photos, "--out", photos / "restored"],
        "out_inside_input_dots": RESTORE + [photos, "--out", photos / "x" / ".." / "y"],
    }
    got = dict(zip(cases, cli_batch(list(cases.values()))))
    return got, d, before


def test_bad_input_animation_and_pages_warn_with_the_frame_count(restored):
    got, d, _ = restored
    c = got["anim"]
    assert c["rc"] == 0, c["err"]
    assert f"{d / 'anim.gif'} holds 3 frames (an animation or a multi-page file)" in c["err"]
    assert f"{d / 'pages.tiff'} holds 2 frames" in c["err"]
    assert "only the first is used" in c["err"]
    for name in ("anim.png", "pages.png"):  # the first frame, restored
        assert np.abs(np.asarray(Image.open(d / "o1" / name), float) - 30).max() <= 1


def test_bad_input_transparent_pixels_come_out_white(restored):
    got, d, _ = restored
    assert got["alpha"]["rc"] == 0, got["alpha"]["err"]
    logo = np.asarray(Image.open(d / "o2" / "logo.png"))
    assert (logo[:, :24] == 255).all()  # white, not the hidden red
    assert (logo[:, 24:] == (255, 0, 0)).all()  # opaque red stays red
    half = np.asarray(Image.open(d / "o2" / "half.png"), float)
    assert np.abs(half - 127).max() <= 1  # black at alpha 128 over white
    assert got["gray_alpha"]["rc"] == 0, got["gray_alpha"]["err"]
    assert np.abs(np.asarray(Image.open(d / "o3" / "half.png"), float) - 127).max() <= 1


@pytest.mark.parametrize(
    "case, message",
    [
        ("out_is_input", "refused: it is the input folder {photos}; outputs must not mix"),
        ("out_inside_input", "refused: it is inside the input folder {photos}; outputs must"),
        ("out_inside_input_dots", "refused: it is inside the input folder {photos}"),
    ],
)
def test_bad_input_restore_out_inside_an_input_folder_is_refused(restored, case, message):
    got, d, before = restored
    c = got[case]
    assert c["rc"] == 1 and "Traceback" not in c["err"], c["err"]
    assert message.format(photos=d / "photos") in c["err"]
    assert tree(d / "photos") == before and entries(d / "photos") == ["me.jpg"]
