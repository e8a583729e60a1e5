"""The flags of every ``deblur-bench`` subcommand, each declared once.

A group of flags that several subcommands take (data, blur, CNN training, CNN data, protocol)
is one ``add_<group>_args`` function; each subcommand's ``<name>_flags`` function lists the
groups and the flags of its own. `benchmarks.cli` builds the parser from them and
`benchmarks.runner.RunConfig.from_args` reads ``run``'s values by their names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.cli_types import (
    device_name,
    finite_nonneg_float,
    finite_positive_float,
    jpeg_quality,
    kernel_family,
    kernel_spec,
    noise_range,
    nonneg_int,
    positive_int,
    seed,
)
from benchmarks.presets import PRESETS
from benchmarks.rank_search import candidate, ranks_or_auto

#: A parser or one of its argument groups (both take ``add_argument``).
Parser = argparse._ActionsContainer


# --------------------------------------------------------------------------- shared groups
def add_quiet_arg(p: Parser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")


def add_device_arg(p: Parser, default: str | None = "cpu") -> None:
    p.add_argument(
        "--device", type=device_name, default=default, help="cpu, cuda or cuda:N (default cpu)"
    )


def add_data_args(p: Parser) -> None:
    """The face data, the preset whose budget applies, the seed, the device and threads."""
    g = p.add_argument_group("data and budget")
    g.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="fast",
        help="data size and training budget (default: fast)",
    )
    g.add_argument(
        "--data-dir",
        help="folder of face images, searched recursively, or builtin:faces / builtin:photos "
        "(default: the shipped face set)",
    )
    g.add_argument(
        "--size", type=positive_int, help="square image side in px (overrides the preset)"
    )
    g.add_argument("--gray", action="store_true", default=None, help="grayscale instead of RGB")
    g.add_argument(
        "--max-images",
        type=nonneg_int,
        help="cap on images loaded (overrides the preset; 0 = all)",
    )
    g.add_argument(
        "--seed", type=seed, default=0, help="split / noise / training seed (0 to 2**32 - 1)"
    )
    add_device_arg(g)
    g.add_argument("--threads", type=positive_int, help="torch CPU threads")


def add_blur_args(p: Parser, *, noise: bool = False) -> None:
    """The blur kernel: ``--kernel SPEC``, a user PSF, or the Gaussian of ``--sigma`` /
    ``--kernel-size``; with ``noise``, also the noise added before the 8-bit rounding (``run``,
    ``train`` and ``sweep`` degrade images). `benchmarks.degradation.degradation_from_flags`
    builds the degradation from them."""
    g = p.add_argument_group("degradation")
    g.add_argument(
        "--kernel",
        type=kernel_spec,
        metavar="SPEC",
        help="blur kernel: gaussian:SIGMA, gaussian:SX,SY,THETA (anisotropic, THETA in "
        "degrees), levin09:N (Levin et al.'s camera-shake kernel N = 1..8), motion:SEED[,LENGTH] "
        "(a seeded random camera-shake trajectory) or psf:FILE (default: gaussian:3, 25 px)",
    )
    g.add_argument("--sigma", type=finite_positive_float, help="Gaussian blur sigma (default 3)")
    g.add_argument(
        "--kernel-size",
        type=positive_int,
        help="side of a Gaussian kernel (default 25, or 2 ceil(3 sigma) + 1 when larger) or of "
        "a motion kernel (default 31)",
    )
    g.add_argument("--psf", help="user PSF (.npy or grayscale image), replaces the Gaussian")
    if not noise:
        return
    g.add_argument(
        "--noise",
        type=finite_nonneg_float,
        default=0.0,
        help="Gaussian noise std on the [0, 1] scale, added before quantization",
    )


def add_protocol_args(p: Parser) -> None:
    """The flags that override a preset's protocol fields."""
    g = p.add_argument_group("protocol (overrides the preset's)")
    g.add_argument(
        "--jpeg-quality",
        type=jpeg_quality,
        metavar="Q",
        help="save the sharp and the blurred images as JPEG at quality Q (1-95) and read them "
        "back, as the source's data script did (the seed preset: 75)",
    )
    g.add_argument(
        "--ssim-weight",
        type=finite_nonneg_float,
        metavar="W",
        help="CNN loss MSE + W (1 - SSIM) (default 0.1; the seed preset: 0, MSE alone)",
    )


def add_cnn_training_args(p: Parser) -> None:
    """The CNNs' training budget and schedule (override the preset and the method)."""
    g = p.add_argument_group("CNN training")
    g.add_argument(
        "--epochs",
        type=positive_int,
        help="CNN training epochs (overrides the preset; a resumed `train` continues to this)",
    )
    g.add_argument(
        "--max-minutes",
        type=finite_positive_float,
        help="CNN training time cap per method (of this call, for a resumed `train`)",
    )
    g.add_argument(
        "--batch-size",
        type=positive_int,
        help="CNN training batch (overrides the method's; per process under torchrun)",
    )
    g.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        help="CNN learning-rate schedule: constant (default) or cosine decay to 0 over "
        "--epochs or over --max-minutes, whichever ends first",
    )


def add_cnn_data_args(p: Parser) -> None:
    """Extra CNN training pairs; validation and test stay faces of held-out people."""
    g = p.add_argument_group("CNN training data")
    g.add_argument(
        "--extra-photos",
        type=nonneg_int,
        default=0,
        metavar="N",
        help="CNNs also train on N random crops of scikit-image's bundled photographs, "
        "degraded the same way (validation/test stay faces)",
    )
    g.add_argument(
        "--augment-photos",
        action="store_true",
        help="give each extra photo crop a random flip / 90-degree turn before it is "
        "degraded (8 variants of every crop)",
    )
    g.add_argument(
        "--augment-faces",
        action="store_true",
        help="CNNs also train on the flips / 90-degree turns of the training faces under "
        "which the blur kernel is symmetric (all 8 for the Gaussian); exact extra pairs",
    )


def add_overwrite_arg(p: Parser) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace a run folder this tool made")


# --------------------------------------------------------------------------- subcommands
def run_flags(p: Parser) -> None:
    """``deblur-bench run``."""
    add_data_args(p)
    add_blur_args(p, noise=True)
    p.add_argument("--methods", nargs="+", help="methods to run (default: all; see `list`)")
    p.add_argument("--out", help="run folder (default results/<date-time>-<preset>/)")
    add_overwrite_arg(p)
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="METHOD=PATH",
        help="load a trained method instead of training it (repeatable)",
    )
    p.add_argument("--save-images", action="store_true", help="write restored test images")
    add_cnn_training_args(p)
    p.add_argument(
        "--tta",
        action="store_true",
        help="CNNs restore with the 8-flip/turn self-ensemble (8x inference time; "
        "needs a blur symmetric under flips and quarter turns)",
    )
    add_cnn_data_args(p)
    add_protocol_args(p)


def train_flags(p: Parser) -> None:
    """``deblur-bench train MODEL``."""
    p.add_argument("model", help="CNN method to train (convae, convae-unet)")
    add_data_args(p)
    add_blur_args(p, noise=True)
    g = p.add_argument_group("generalist (a new degradation per image and epoch)")
    g.add_argument(
        "--kernels",
        type=kernel_family,
        metavar="FAMILY",
        help="train on kernels drawn at random instead of one: gaussian:LO-HI (sigma), "
        "anisotropic:LO-HI (both sigmas, any angle), motion (random camera shake; "
        "motion:LO-HI sets its length in px), or several joined by '+' "
        "(e.g. gaussian:0.5-5+motion); never the Levin kernels, the sweep's test set",
    )
    g.add_argument(
        "--noise-range",
        type=noise_range,
        metavar="LO-HI",
        help="with --kernels: the noise std of each training image drawn uniformly from "
        "[LO, HI] (e.g. 0-0.03)",
    )
    add_cnn_training_args(p)
    p.add_argument("--lr", type=finite_positive_float, help="Adam learning rate")
    add_cnn_data_args(p)
    add_protocol_args(p)
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--resume", help="last.pt of an interrupted run to continue")
    p.add_argument("--out", help="checkpoint folder (default results/<date-time>-train-MODEL/)")
    add_overwrite_arg(p)
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model constructor argument, repeatable (e.g. --model-arg width=32)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="DistributedDataParallel training; on by itself under torchrun with "
        "WORLD_SIZE > 1 (start with: torchrun --nproc_per_node=N -m "
        "benchmarks train ...); --batch-size is then per process",
    )


def sweep_flags(p: Parser) -> None:
    """``deblur-bench sweep``."""
    add_data_args(p)
    add_blur_args(p, noise=True)
    p.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD[@TAG]",
        help="method rows (default: the preset's; see `list`); METHOD@TAG names a second row of "
        "a method, loaded with --checkpoint METHOD@TAG=PATH (e.g. convae-unet@generalist)",
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="METHOD=PATH",
        help="load a trained row instead of fitting it (repeatable)",
    )
    g = p.add_argument_group("grid")
    g.add_argument(
        "--grid",
        nargs="+",
        metavar="KERNEL[@NOISE,...]",
        help="the degradations scored: --kernel specs (levin09 alone: all eight), each at every "
        "--grid-noise level or at the levels after '@'; full, fast and smoke name the preset "
        "grids (default: the preset's; full: gaussian:1 1.5 2 3 4 5 and levin09, noise 0 0.01 "
        "0.03)",
    )
    g.add_argument(
        "--grid-noise",
        nargs="+",
        type=finite_nonneg_float,
        metavar="SIGMA",
        help="noise levels of the --grid kernels without '@'",
    )
    g.add_argument(
        "--tune-images",
        type=positive_int,
        help="validation images a non-blind method is re-tuned on per degradation (default "
        "10; the fast preset 5)",
    )
    g.add_argument(
        "--test-images",
        type=nonneg_int,
        help="test images scored per cell, spread over the test people (0: all; default: all, "
        "the fast preset 40)",
    )
    g.add_argument(
        "--baseline",
        help="method of the paired differences (default: wiener when swept, else identity)",
    )
    p.add_argument(
        "--generalist",
        action="append",
        metavar="METHOD[@TAG]=FAMILY",
        help="train this CNN row on a degradation drawn per image and epoch from FAMILY "
        "(as train --kernels, e.g. convae-unet@generalist=gaussian:0.5-5+motion; repeatable)",
    )
    p.add_argument(
        "--generalist-noise",
        type=noise_range,
        metavar="LO-HI",
        help="the --generalist rows' noise std, drawn per image from [LO, HI] (default 0)",
    )
    p.add_argument("--out", help="sweep folder (default results/<date-time>-sweep-<preset>/)")
    add_overwrite_arg(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the sweep in --out: its finished cells are kept, the missing ones "
        "computed (the settings must be the same)",
    )
    add_cnn_training_args(p)
    add_protocol_args(p)


def restore_flags(p: Parser) -> None:
    """``deblur-bench restore IMAGE_OR_DIR ...``."""
    add_blur_args(p)
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--method", required=True, help="method name (see `list`)")
    p.add_argument("--checkpoint", help="trained checkpoint for learned methods")
    p.add_argument(
        "--tta",
        action="store_true",
        help="CNNs: average the restorations of the 8 flips/turns (8x slower)",
    )
    p.add_argument("--out", required=True, help="folder for the restored PNGs")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--gray", action="store_true", help="process as grayscale")
    add_device_arg(p)
    p.add_argument(
        "--balance", type=finite_positive_float, help="wiener: regularisation balance (> 0)"
    )
    p.add_argument("--iterations", type=positive_int, help="richardson-lucy: iterations (>= 1)")


def report_flags(p: Parser) -> None:
    """``deblur-bench report RUN_DIR ...``."""
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument(
        "--baseline",
        help="method for paired differences (default: identity, when the runs have it)",
    )
    p.add_argument("--out", help="also write the merged markdown table to this file")


def list_flags(p: Parser) -> None:
    """``deblur-bench list``: no flags of its own."""


def factorize_flags(p: Parser) -> None:
    """``deblur-bench factorize``: its own defaults (64 px, all images, ranks 128 32 8)."""
    p.add_argument(
        "--data-dir", required=True, type=Path, help="folder of face images (searched recursively)"
    )
    p.add_argument(
        "--ranks",
        type=ranks_or_auto,
        nargs="+",
        default=[128, 32, 8],
        help="layer ranks (default 128 32 8), or auto: chosen among --rank-candidates by "
        "masked cross-validation",
    )
    p.add_argument(
        "--beta", type=float, default=2.0, help="β-divergence: 2 Frobenius, 1 KL, 0 IS (default 2)"
    )
    add_device_arg(p, default=None)
    p.add_argument(
        "--size",
        type=positive_int,
        default=64,
        help="side of the square images in pixels (default 64)",
    )
    p.add_argument("--gray", action="store_true", help="grayscale instead of RGB")
    p.add_argument(
        "--max-iter", type=positive_int, default=500, help="joint iterations (default 500)"
    )
    p.add_argument(
        "--tol",
        type=finite_nonneg_float,
        default=1e-5,
        help="relative loss decrease to stop at (default 1e-5)",
    )
    p.add_argument("--init", default="nndsvda", choices=("nndsvda", "nndsvd", "nndsvdar", "random"))
    p.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed of the initialization and of --ranks auto's folds (0 to 2**32 - 1)",
    )
    p.add_argument(
        "--max-images", type=positive_int, default=None, help="use at most this many images"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default results/factorize-<date-time>)",
    )
    add_overwrite_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_rank_search_args(p)


def add_rank_search_args(p: Parser) -> None:
    """The options of ``factorize --ranks auto`` (`benchmarks.rank_search.SEARCH_OPTIONS`)."""
    g = p.add_argument_group("rank search (--ranks auto; refused with fixed ranks)")
    g.add_argument(
        "--rank-candidates",
        type=candidate,
        nargs="+",
        default=None,
        help="candidates of --ranks auto: R (one layer) or R1,R2,... (deep) (default: "
        "dnmf.select_ranks's one-layer grid, ranks up to 64 and at most half the smaller side "
        "of the pixels x images matrix)",
    )
    g.add_argument("--cv-folds", type=int, default=None, help="folds of --ranks auto (default 5)")
    g.add_argument(
        "--cv-holdout",
        type=float,
        default=None,
        help="share of entries each fold holds out (default 0.1)",
    )
    g.add_argument(
        "--cv-rule",
        choices=("min", "1se"),
        default=None,
        help="smallest held-out loss, or the simplest within one standard error (default min)",
    )
