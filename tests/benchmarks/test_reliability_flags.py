"""Nonsense flag values: every one is refused with a message naming the flag, nothing is made.

All cases run through the real entry point in one subprocess (``cli_batch``): exit code 2 is
argparse's own refusal (``argument --flag: ...``), 1 a refusal after parsing.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from benchmarks import cli_types

RUN = ["run", "--preset", "smoke", "--methods", "identity", "--quiet"]
TRAIN = ["train", "convae", "--preset", "smoke", "--quiet"]

# id: (argv after the command prefix, exit code, text the message must hold)
CASES = {
    "run_size_0": (RUN + ["--size", "0"], 2, "argument --size: must be an integer >= 1"),
    "run_size_neg": (RUN + ["--size", "-5"], 2, "argument --size: must be an integer >= 1"),
    "run_seed_neg": (RUN + ["--seed", "-1"], 2, "argument --seed: must be an integer >= 0"),
    "run_max_images_neg": (RUN + ["--max-images", "-1"], 2, "argument --max-images:"),
    "run_noise_nan": (RUN + ["--noise", "nan"], 2, "argument --noise: must be a finite number"),
    "run_noise_neg": (RUN + ["--noise", "-0.1"], 2, "argument --noise: must be a finite number"),
    "run_sigma_inf": (RUN + ["--sigma", "inf"], 2, "argument --sigma: must be a finite number > 0"),
    "run_sigma_0": (RUN + ["--sigma", "0"], 2, "argument --sigma: must be a finite number > 0"),
    "run_sigma_neg": (RUN + ["--sigma", "-2"], 2, "argument --sigma: must be a finite number > 0"),
    "run_kernel_0": (RUN + ["--kernel-size", "0"], 2, "argument --kernel-size:"),
    "run_threads_0": (RUN + ["--threads", "0"], 2, "argument --threads: must be an integer >= 1"),
    "run_threads_neg": (RUN + ["--threads", "-2"], 2, "argument --threads:"),
    "run_epochs_0": (RUN + ["--epochs", "0"], 2, "argument --epochs: must be an integer >= 1"),
    "run_minutes_nan": (RUN + ["--max-minutes", "nan"], 2, "argument --max-minutes:"),
    "run_batch_0": (RUN + ["--batch-size", "0"], 2, "argument --batch-size:"),
    "run_extra_neg": (RUN + ["--extra-photos", "-1"], 2, "argument --extra-photos:"),
    "run_device_typo": (RUN + ["--device", "gpu"], 2, "argument --device: must be cpu, cuda"),
    "run_sigma_with_psf": (
        RUN + ["--sigma", "2", "--psf", "{psf}"],
        1,
        "--sigma and --kernel-size do not apply with --psf",
    ),
    "run_kernel_with_psf": (
        RUN + ["--kernel-size", "9", "--psf", "{psf}"],
        1,
        "--sigma and --kernel-size do not apply with --psf",
    ),
    "run_psf_truncated": (RUN + ["--psf", "{cut_npy}"], 1, "cannot read PSF {cut_npy}"),
    "run_psf_text": (RUN + ["--psf", "{text_npy}"], 1, "cannot read PSF {text_npy}"),
    "run_checkpoint_missing": (
        ["run", "--preset", "smoke", "--methods", "identity", "convae"]
        + ["--checkpoint", "convae={tmp}/nope.pt"],
        1,
        "--checkpoint convae={tmp}/nope.pt: {tmp}/nope.pt does not exist",
    ),
    "run_checkpoint_no_equals": (
        RUN + ["--checkpoint", "model.pt"],
        1,
        "--checkpoint expects METHOD=PATH",
    ),
    "run_cuda": (RUN + ["--device", "cuda"], 1, "--device cuda: no CUDA device"),
    "restore_balance_neg": (
        ["restore", "{img}", "--method", "wiener", "--balance", "-1"],
        2,
        "argument --balance: must be a finite number > 0",
    ),
    "restore_balance_nan": (
        ["restore", "{img}", "--method", "wiener", "--balance", "nan"],
        2,
        "argument --balance:",
    ),
    "restore_iterations_neg": (
        ["restore", "{img}", "--method", "richardson-lucy", "--iterations", "-3"],
        2,
        "argument --iterations: must be an integer >= 1",
    ),
    "restore_sigma_inf": (
        ["restore", "{img}", "--method", "wiener", "--sigma", "inf"],
        2,
        "argument --sigma:",
    ),
    "restore_cuda": (
        ["restore", "{img}", "--method", "identity", "--device", "cuda"],
        1,
        "--device cuda: no CUDA device",
    ),
    "train_epochs_0": (TRAIN + ["--epochs", "0"], 2, "argument --epochs: must be an integer >= 1"),
    "train_lr_nan": (TRAIN + ["--lr", "nan"], 2, "argument --lr: must be a finite number > 0"),
    "train_size_0": (TRAIN + ["--size", "0"], 2, "argument --size:"),
    "train_seed_neg": (TRAIN + ["--seed", "-1"], 2, "argument --seed:"),
    "train_max_images_neg": (TRAIN + ["--max-images", "-1"], 2, "argument --max-images:"),
    "train_cuda": (TRAIN + ["--device", "cuda"], 1, "--device cuda: no CUDA device"),
    "train_distributed_without_torchrun": (
        TRAIN + ["--distributed"],
        1,
        "--distributed needs the environment torchrun sets",
    ),
    "report_baseline_unknown": (
        ["report", "{run}", "--baseline", "nosuch"],
        1,
        "--baseline 'nosuch' is not a method of these runs; they hold: identity, wiener",
    ),
    "factorize_size_0": (
        ["factorize", "--data-dir", "{tmp}", "--size", "0"],
        2,
        "argument --size: must be an integer >= 1",
    ),
    "factorize_rank_0": (["factorize", "--data-dir", "{tmp}", "--ranks", "8", "0"], 2, "--ranks:"),
    "factorize_iter_0": (["factorize", "--data-dir", "{tmp}", "--max-iter", "0"], 2, "--max-iter:"),
    "factorize_seed_neg": (["factorize", "--data-dir", "{tmp}", "--seed", "-1"], 2, "--seed:"),
    "factorize_max_images_0": (
        ["factorize", "--data-dir", "{tmp}", "--max-images", "0"],
        2,
        "--max-images:",
    ),
    "factorize_tol_nan": (["factorize", "--data-dir", "{tmp}", "--tol", "nan"], 2, "--tol:"),
    "factorize_cuda": (
        ["factorize", "--data-dir", "{tmp}", "--device", "cuda"],
        2,
        "--device cuda: no CUDA device",
    ),
}
NEEDS_NO_CUDA = {"run_cuda", "restore_cuda", "train_cuda", "factorize_cuda"}


@pytest.fixture(scope="module")
def results(tmp_path_factory, cli_batch):
    tmp = tmp_path_factory.mktemp("flags")
    psf = tmp / "psf.npy"
    np.save(psf, np.ones((5, 5)))
    cut = tmp / "cut.npy"
    cut.write_bytes(psf.read_bytes()[:-40])
    (tmp / "text.npy").write_text("0 1 0\n1 4 1\n0 1 0\n")
    img = tmp / "img.png"
    from PIL import Image

    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(img)
    run = tmp / "a_run"
    run.mkdir()
    rows = [
        {"method": m, "image": f"{i}.png", "psnr": 20.0 + i, "ssim": 0.5, "mse": 0.01}
        for m in ("identity", "wiener")
        for i in range(3)
    ]
    import pandas as pd

    pd.DataFrame(rows).to_csv(run / "per_image.csv", index=False)
    fill = {
        "tmp": tmp,
        "psf": psf,
        "cut_npy": cut,
        "text_npy": tmp / "text.npy",
        "img": img,
        "run": run,
    }
    argvs = []
    for i, (argv, _, _) in enumerate(CASES.values()):
        argv = [a.format(**fill) for a in argv]
        if argv[0] in ("run", "train", "factorize", "restore"):
            argv += ["--out", str(tmp / "out" / f"case{i}")]
        argvs.append(argv)
    got = cli_batch(argvs, cwd=tmp)
    return {k: (g, fill) for k, g in zip(CASES, got)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_flag_is_refused(results, case):
    if case in NEEDS_NO_CUDA and torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    got, fill = results[case]
    _, rc, text = CASES[case]
    assert got["rc"] == rc, got["err"]
    assert text.format(**fill) in got["err"]
    assert "Traceback" not in got["err"]
    assert not (fill["tmp"] / "out").exists()  # no case made an output folder


@pytest.mark.parametrize(
    "fn, good, bad",
    [
        (cli_types.positive_int, ["1", "64"], ["0", "-5", "2.5", "x", ""]),
        (cli_types.nonneg_int, ["0", "7"], ["-1", "1e3", "nan"]),
        (cli_types.finite_nonneg_float, ["0", "0.05"], ["-0.1", "nan", "inf", "-inf", "a"]),
        (cli_types.finite_positive_float, ["3", "1e-3"], ["0", "-1", "nan", "inf"]),
        (cli_types.device_name, ["cpu", "cuda", "cuda:1"], ["gpu", "cuda:x", "CPU", "mps"]),
    ],
)
def test_bad_input_argparse_types(fn, good, bad):
    for text in good:
        fn(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="must be .*, got"):
            fn(text)


def test_library_checks_refuse_nan_and_inf():
    """The same values refused by the library functions, for callers that skip the CLI."""
    from benchmarks.blur import degrade, gaussian_kernel, make_blur

    for sigma in (float("inf"), float("nan"), 0.0):
        with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
            gaussian_kernel(5, sigma)
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        degrade(x, make_blur(kernel_size=5, sigma=1.0), noise=float("nan"))
    assert json.loads(json.dumps(make_blur().meta()))["sigma"] == 3.0  # defaults unchanged
