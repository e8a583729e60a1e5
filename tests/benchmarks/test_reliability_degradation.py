"""Bad --kernel / --kernels / --noise-range values and contradicting degradation flags: refused
with a message that names the flag, before any data is read or folder made."""

from __future__ import annotations

import types

import numpy as np
import pytest

from benchmarks.degradation import degradation_from_flags, parse_family, parse_kernel
from benchmarks.errors import UserError


@pytest.mark.parametrize(
    ("spec", "size", "message"),
    [
        ("blob:3", None, "unknown kernel family 'blob'"),
        ("gaussian", None, "write it as gaussian:SIGMA"),
        ("gaussian:-1", None, "SIGMA must be a finite number > 0"),
        ("gaussian:1,2,3,4", None, "gaussian:SX,SY,THETA"),
        ("gaussian:nan", None, "SIGMA must be a finite number"),
        ("levin09", None, "name one kernel, levin09:1 to levin09:8"),
        ("levin09:9", None, "N must be from 1 to 8, got 9"),
        ("levin09:4", 9, "--kernel-size does not apply to --kernel 'levin09:4'"),
        ("motion:x", None, "SEED must be an integer"),
        ("motion:1,0", None, "LENGTH must be a finite number > 0"),
        ("motion:1", 3, "--kernel-size must be at least 5"),
        ("psf:/no/such.npy", None, "PSF file not found"),
    ],
)
def test_bad_input_kernel_specs_are_refused_by_name(spec, size, message):
    with pytest.raises(UserError, match=message) as err:
        parse_kernel(spec, size=size)
    assert "--kernel" in str(err.value)


def test_bad_input_contradicting_flags_are_refused(tmp_path):
    np.save(tmp_path / "k.npy", np.ones((3, 3)))
    ns = types.SimpleNamespace
    cases = [
        (ns(kernel="levin09:1", psf=str(tmp_path / "k.npy")), "--kernel and --psf"),
        (ns(kernel="gaussian:2", sigma=2.0), "--sigma describes the default Gaussian"),
        (ns(psf=str(tmp_path / "k.npy"), sigma=2.0), "--sigma and --kernel-size do not apply"),
    ]
    for flags, message in cases:
        with pytest.raises(UserError, match=message):
            degradation_from_flags(flags)
    d = degradation_from_flags(ns(sigma=2.0, kernel_size=9, noise=0.02), jpeg_quality=80)
    assert (d.kernel.spec, d.kernel.shape, d.noise, d.jpeg_quality) == (
        "gaussian:2",
        (9, 9),
        0.02,
        80,
    )
    assert degradation_from_flags(ns()).noise is None  # restore: the noise is not known


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("levin09:4", "the Levin kernels are the test set"),
        ("gaussian:1-3+levin09:2", "the Levin kernels are the test set"),
        ("gaussian", "give the sigma range"),
        ("gaussian:3-1", "runs backwards"),
        ("psf:k.npy", "unknown kernel kind 'psf'"),
    ],
)
def test_bad_input_families_are_refused(spec, message):
    with pytest.raises(UserError, match=message):
        parse_family(spec)


# (argv, exit code, text of the one error line); run in one subprocess through the real CLI
CLI_CASES = {
    "run_kernel_index": (
        ["run", "--kernel", "levin09:9"],
        2,
        "argument --kernel: 'levin09:9': N must be from 1 to 8, got 9",
    ),
    "run_kernel_family": (
        ["run", "--kernel", "box:3"],
        2,
        "argument --kernel: 'box:3': unknown kernel family 'box'",
    ),
    "run_kernel_and_sigma": (
        ["run", "--kernel", "gaussian:2", "--sigma", "2"],
        1,
        "error: --sigma describes the default Gaussian; with --kernel gaussian:2 drop it",
    ),
    "run_kernel_and_psf": (
        ["run", "--kernel", "levin09:1", "--psf", "{psf}"],
        1,
        "error: --kernel and --psf both name the kernel: give one of them",
    ),
    "run_levin_size": (
        ["run", "--kernel", "levin09:1", "--kernel-size", "9"],
        1,
        "error: --kernel-size does not apply to --kernel 'levin09:1' (its kernel has a fixed "
        "size): drop it",
    ),
    "train_kernels_levin": (
        ["train", "convae-unet", "--kernels", "gaussian:1-3+levin09:4"],
        2,
        "argument --kernels: 'gaussian:1-3+levin09:4': the Levin kernels are the test set of "
        "`deblur-bench sweep`; nothing is trained on them.",
    ),
    "train_kernels_and_kernel": (
        ["train", "convae-unet", "--kernels", "motion", "--kernel", "levin09:2"],
        1,
        "error: --kernels draws the kernel of every training image: drop --kernel",
    ),
    "train_noise_range_alone": (
        ["train", "convae-unet", "--noise-range", "0-0.03"],
        1,
        "error: --noise-range draws the noise of a --kernels family; with one kernel give --noise",
    ),
    "train_noise_range_backwards": (
        ["train", "convae-unet", "--kernels", "motion", "--noise-range", "0.03-0.01"],
        2,
        "argument --noise-range: '0.03-0.01': the range runs backwards",
    ),
    "restore_kernel_seed": (
        ["restore", "{psf}", "--method", "wiener", "--out", "{out}", "--kernel", "motion:x"],
        2,
        "argument --kernel: 'motion:x': SEED must be an integer, got 'x'",
    ),
}


def test_bad_input_degradation_flags_on_the_command_line(tmp_path, cli_batch):
    np.save(tmp_path / "k.npy", np.ones((3, 3)))
    fill = {"psf": str(tmp_path / "k.npy"), "out": str(tmp_path / "out")}
    argvs = [
        [a.format(**fill) for a in argv] + ["--out", str(tmp_path / name)]
        if argv[0] != "restore"
        else [a.format(**fill) for a in argv]
        for name, (argv, _, _) in CLI_CASES.items()
    ]
    for (name, (_, code, text)), res in zip(CLI_CASES.items(), cli_batch(argvs, cwd=tmp_path)):
        assert res["rc"] == code, (name, res["err"])
        assert text in res["err"], (name, res["err"])
        assert "Traceback" not in res["err"]
        assert not (tmp_path / name).exists() and not (tmp_path / "out").exists(), name
