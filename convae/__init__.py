"""convae: the reference convolutional autoencoder for deblurring, its MSE + SSIM loss,
and one training loop (checkpoints, exact resume) shared by every CNN of the project.

Takes plain (N, C, H, W) float tensors in [0, 1]; never imports ``benchmarks`` or ``dnmf``.
"""

from convae.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    MetaMismatchWarning,
    UnverifiedCheckpointWarning,
    check_compatible,
    check_meta,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from convae.config import TrainConfig, TrainResult
from convae.loss import MSESSIMLoss, mse_ssim_loss, ssim
from convae.models import (
    architecture_of,
    available_architectures,
    build_model,
    count_macs,
    count_parameters,
    get_architecture,
    register,
    unwrap_model,
)
from convae.plot import plot_history
from convae.ref_model import ConvAE  # noqa: E402  (registers "convae")
from convae.train import evaluate, train
from convae.tta import dihedral, self_ensemble, undo_dihedral

__all__ = [
    "ConvAE",
    "register",
    "build_model",
    "get_architecture",
    "available_architectures",
    "architecture_of",
    "unwrap_model",
    "count_parameters",
    "count_macs",
    "ssim",
    "mse_ssim_loss",
    "MSESSIMLoss",
    "CheckpointError",
    "CheckpointWriteError",
    "MetaMismatchWarning",
    "UnverifiedCheckpointWarning",
    "save_checkpoint",
    "read_checkpoint",
    "load_model",
    "check_compatible",
    "check_meta",
    "TrainConfig",
    "TrainResult",
    "train",
    "evaluate",
    "plot_history",
    "dihedral",
    "undo_dihedral",
    "self_ensemble",
]
