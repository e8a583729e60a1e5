"""`run`'s flags reach RunConfig by name; the method hooks and attributes the commands read."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmarks import cli
from benchmarks.blur import BlurOperator, make_blur
from benchmarks.errors import UserError
from benchmarks.methods import check_options, registry
from benchmarks.runner import RunConfig


def _run_args(*argv: str):
    return cli.build_parser().parse_args(["run", *argv])


def test_every_config_field_is_a_run_flag():
    dests = set(vars(_run_args()))
    missing = {f.name for f in dataclasses.fields(RunConfig)} - dests - {"checkpoints"}
    assert not missing, f"RunConfig fields without a `run` flag: {missing}"
    assert "checkpoint" in dests  # read into `checkpoints` by from_args


def test_from_args_reads_each_flag_by_name():
    args = _run_args(
        "--preset", "smoke", "--size", "40", "--methods", "identity", "wiener", "--tta",
        "--checkpoint", "convae=a.pt", "--extra-photos", "3", "--epochs", "2", "--noise", "0.01",
    )  # fmt: skip
    cfg = RunConfig.from_args(args)
    want = RunConfig(
        preset="smoke", size=40, methods=["identity", "wiener"], tta=True,
        checkpoints={"convae": "a.pt"}, extra_photos=3, epochs=2, noise=0.01,
    )  # fmt: skip
    assert cfg == want
    assert RunConfig.from_args(_run_args()) == RunConfig()  # the flags' defaults are the config's
    with pytest.raises(UserError, match="METHOD=PATH"):
        RunConfig.from_args(_run_args("--checkpoint", "model.pt"))


def test_method_options_are_the_set_method_flags():
    assert RunConfig().method_options() == {"extra_photos": 0}
    cfg = RunConfig(epochs=3, tta=True, lr_schedule="cosine", augment_faces=True, size=40)
    assert cfg.method_options() == {
        "epochs": 3, "tta": True, "extra_photos": 0, "augment_faces": True,
        "lr_schedule": "cosine",
    }  # fmt: skip


def test_check_options_asks_every_registered_method(monkeypatch):
    asked = []

    def spy(cls, options, blur):
        asked.append(cls.name)

    for cls in registry().values():
        monkeypatch.setattr(cls, "check_options", classmethod(spy))
    check_options({"tta": True}, make_blur())
    assert asked == list(registry())


def test_cnn_hooks_refuse_and_describe_their_options():
    cnn = [c for c in registry().values() if c.trainable_cnn]
    names = ["convae", "convae-unet", "dnmf-prior-unfolded", "dnmf-unfolded"]
    assert [c.name for c in cnn] == names  # the unfolded Deep NMFs train in the same loop
    line = BlurOperator(torch.tensor([[1.0, 2.0, 0.0]]))  # changed by a left-right flip
    with pytest.raises(ValueError, match="--tta"):
        check_options({"tta": True}, line)
    with pytest.raises(ValueError, match="extra-photos"):
        check_options({"extra_photos": -1}, make_blur())
    check_options({"tta": True, "augment_faces": True}, make_blur())  # the Gaussian: fine
    notes = cnn[0].run_notes({"tta": True, "extra_photos": 4, "augment_photos": True})
    assert notes == [
        "CNN rows use the 8-flip test-time self-ensemble (--tta).",
        "CNNs trained here on the training images and 4 degraded photo crops (flipped/turned).",
    ]
    assert registry()["wiener"].run_notes({"tta": True}) == []  # not its option


def test_list_names_the_trainable_cnns(capsys):
    assert cli.main(["list"]) == 0
    assert "`deblur-bench train` trains: convae, convae-unet" in capsys.readouterr().out
