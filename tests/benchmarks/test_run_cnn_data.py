"""`deblur-bench run --extra-photos/--augment-*`: extra training pairs reach the CNN rows only."""

import json

import pytest
import torch

from benchmarks.blur import make_blur
from benchmarks.extra_pairs import cnn_training_pairs, photo_pairs
from benchmarks.runner import RunConfig, run_benchmark


def test_cnn_training_pairs_counts_and_order():
    blur = make_blur(kernel_size=5, sigma=1.0)
    s = torch.rand(3, 3, 16, 16)
    b = s.clone()
    assert cnn_training_pairs(b, s, blur)[0] is b  # nothing asked: as is
    fb, fs = cnn_training_pairs(b, s, blur, augment_faces=True, extra_photos=4, seed=2)
    assert fb.shape == fs.shape == (3 * 8 + 4, 3, 16, 16)
    assert torch.equal(fs[:3], s)  # faces first
    eb, es = photo_pairs(4, 16, blur, seed=3)  # then seed + 1's crops
    assert torch.equal(fb[-4:], eb) and torch.equal(fs[-4:], es)
    with pytest.raises(ValueError, match=">= 0"):
        cnn_training_pairs(b, s, blur, extra_photos=-2)


@pytest.mark.slow  # a run with two trainings and the Deep NMF prior
def test_run_trains_cnns_on_the_extra_pairs_and_others_on_faces(tmp_path, monkeypatch):
    seen = {}
    from benchmarks.methods import CNNMethod
    from benchmarks.methods.dnmf_prior import DNMFPrior

    def spy(orig, key):
        def fit(self, train, val, blur):
            seen[key] = len(train)
            return orig(self, train, val, blur)

        return fit

    built = CNNMethod.training_pairs

    def cnn_pairs(self, train, blur):  # the pairs the CNN trains on, built by the method itself
        pairs = built(self, train, blur)
        seen["cnn"] = len(pairs)
        return pairs

    monkeypatch.setattr(CNNMethod, "training_pairs", cnn_pairs)
    monkeypatch.setattr(DNMFPrior, "fit", spy(DNMFPrior.fit, "dnmf"))
    out = tmp_path / "r"
    run_benchmark(
        RunConfig(
            preset="smoke",
            methods=["identity", "dnmf-prior", "convae-unet"],
            extra_photos=6,
            augment_faces=True,
            lr_schedule="cosine",
            out=str(out),
            quiet=True,
        )
    )
    run = json.loads((out / "run.json").read_text())
    n_train = run["data"]["n_train"]
    assert seen["dnmf"] == n_train and seen["cnn"] == 8 * n_train + 6
    assert "their flips/turns and 6 degraded photo crops" in (out / "summary.md").read_text()
    assert run["config"]["extra_photos"] == 6 and run["config"]["lr_schedule"] == "cosine"


def test_run_refuses_bad_cnn_data_flags(tmp_path):
    with pytest.raises(ValueError, match="extra-photos"):
        run_benchmark(
            RunConfig(
                preset="smoke",
                methods=["identity"],
                extra_photos=-1,
                out=str(tmp_path / "a"),
                quiet=True,
            )
        )
    k = torch.zeros(3, 3)
    k[0, 0] = k[1, 1] = 1.0
    k[0, 1] = 0.5  # no flip or turn leaves it unchanged
    import numpy as np

    np.save(tmp_path / "psf.npy", k.numpy())
    run_benchmark(  # accepted: the turned faces are degraded afresh by the kernel itself
        RunConfig(
            preset="smoke",
            methods=["identity"],
            augment_faces=True,
            psf=str(tmp_path / "psf.npy"),
            out=str(tmp_path / "b"),
            quiet=True,
        )
    )
    assert not (tmp_path / "a").exists() and (tmp_path / "b" / "run.json").is_file()
