import torch

import convae
from benchmarks.blur import make_blur
from benchmarks.pipeline import prepare_splits
from benchmarks.presets import get_preset

torch.set_num_threads(1)
blur = make_blur()
meta = {**blur.meta(), "noise": 0.0, "quantization": "8-bit"}
sp = prepare_splits(
    get_preset("fast").with_overrides(size=128, max_images=750),
    "../shared/data/gt_faces",
    seed=0,
    blur=blur,
)
with torch.random.fork_rng(devices=[]):
    torch.manual_seed(0)
    m = convae.build_model("convae-unet", in_channels=3, width=32)
r = convae.train(
    m,
    sp.train,
    sp.val,
    convae.TrainConfig(epochs=500, batch_size=16, max_minutes=13, seed=0),
    checkpoint_dir="/tmp/u7/unet32",
    meta=meta,
)
convae.plot_history(r.history, "/tmp/u7/unet32/training_curve.png", title="convae-unet width 32")
print("best", r.best_val_loss, r.best_epoch, r.epochs_completed, r.images_per_s)
