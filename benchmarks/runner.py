"""``deblur-bench run``: every method on the same held-out people, scored and written out."""

from __future__ import annotations

import datetime as _dt
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from benchmarks import __version__
from benchmarks.blur import make_blur
from benchmarks.errors import UserError
from benchmarks.extra_pairs import check_cnn_data, cnn_training_pairs, psf_symmetries
from benchmarks.figures import examples_figure, save_png
from benchmarks.io_utils import write_json, write_text
from benchmarks.methods import MethodContext, get_method, registry
from benchmarks.methods._cnn import _CNNMethod
from benchmarks.metrics import all_metrics
from benchmarks.pairs import PairSet
from benchmarks.pipeline import prepare_splits
from benchmarks.presets import Preset, get_preset
from benchmarks.report import summarize, to_markdown
from benchmarks.run_dir import RunFolder

FORMAT_VERSION = 1
N_EXAMPLES = 6


@dataclass
class RunConfig:
    """Everything that defines a run; CLI flags map onto these fields one to one."""

    preset: str = "fast"
    data_dir: str | None = None
    size: int | None = None
    gray: bool | None = None
    methods: list[str] | None = None
    sigma: float | None = None  # None: 3.0 (refused together with psf)
    kernel_size: int | None = None  # None: 25 (refused together with psf)
    psf: str | None = None
    noise: float = 0.0
    seed: int = 0
    out: str | None = None
    overwrite: bool = False
    device: str = "cpu"
    threads: int | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)
    save_images: bool = False
    quiet: bool = False
    epochs: int | None = None
    max_minutes: float | None = None
    max_images: int | None = None
    batch_size: int | None = None
    tta: bool = False  # CNNs restore with the 8-flip self-ensemble
    # CNN rows only (as `train`): extra training pairs and the lr schedule
    extra_photos: int = 0
    augment_photos: bool = False
    augment_faces: bool = False
    lr_schedule: str | None = None
    jpeg_quality: int | None = None  # JPEG round trip of both images (overrides the preset)
    ssim_weight: float | None = None  # CNN rows: loss MSE + w (1 - SSIM) (overrides the preset)

    def resolved_preset(self) -> Preset:
        return get_preset(self.preset).with_overrides(
            size=self.size,
            gray=self.gray,
            epochs=self.epochs,
            max_minutes=self.max_minutes,
            max_images=self.max_images,
            jpeg_quality=self.jpeg_quality,
            ssim_weight=self.ssim_weight,
        )


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda[:k]``, with a clear error when CUDA is asked for but absent."""
    try:
        dev = torch.device(name)
    except RuntimeError:  # torch's message for a malformed device string
        raise UserError(f"--device must be cpu, cuda or cuda:N, got {name!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {name!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"--device {name}: no CUDA device is available here (this torch "
            f"{'has no CUDA support' if torch.version.cuda is None else 'finds no GPU'}); "
            f"use --device cpu"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(
            f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible"
        )
    return dev


def data_folder(data_dir: str | Path | None) -> Path | None:
    """The folder a ``--data-dir`` value reads (the shipped faces for builtin:/None)."""
    from benchmarks.faces import SHIPPED_FACES

    if data_dir is None or str(data_dir) == "builtin:faces":
        return SHIPPED_FACES
    return None if str(data_dir).startswith("builtin:") else Path(data_dir)


def check_checkpoint_files(checkpoints: dict[str, str]) -> None:
    """Every ``--checkpoint METHOD=PATH`` names an existing file (checked before any work)."""
    for name, path in checkpoints.items():
        if not Path(path).is_file():
            what = "is a folder, not a file" if Path(path).is_dir() else "does not exist"
            raise FileNotFoundError(f"--checkpoint {name}={path}: {path} {what}")


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
        return (sha + ("-dirty" if dirty.strip() else "")) if sha else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    import numpy
    import scipy
    import skimage
    import sklearn

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-image": skimage.__version__,
        "scikit-learn": sklearn.__version__,
        "deblur-toolkit": __version__,
        "platform": platform.platform(),
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cnn_data_note(cfg: RunConfig) -> str:
    parts = ["their flips/turns"] if cfg.augment_faces else []
    parts += (
        [
            f"{cfg.extra_photos} degraded photo crops"
            + (" (flipped/turned)" if cfg.augment_photos else "")
        ]
        if cfg.extra_photos
        else []
    )
    return f" CNNs trained here on the training images and {' and '.join(parts)}." if parts else ""


def _jpeg_note(preset: Preset) -> str:
    q = preset.jpeg_quality
    return f", then sharp and blurred images both saved as JPEG (quality {q})" if q else ""


def _training_mse_table(infos: dict[str, Any]) -> str:
    """The learned rows' last-epoch training MSE next to the held-out table.

    This is how the source measured its ConvAE: the mean training loss (MSE) over the
    batches of its last epoch, on images it trained on, not on held-out people.
    """
    rows = [(n, i) for n, i in infos.items() if i.get("train_mse_last_epoch") is not None]
    if not rows:
        return ""
    lines = [
        "",
        "Training-set MSE of the last epoch (mean over its batches, on the training images; "
        "the figure the source reported) next to the held-out MSE above:",
        "",
        "| method | epochs trained | training MSE, last epoch | weights scored: epoch |",
        "|---|---|---|---|",
    ]
    for name, info in rows:
        lines.append(
            f"| {name} | {info.get('epochs_trained')} | {info['train_mse_last_epoch']:.5f} "
            f"| {info.get('weights_epoch')} |"
        )
    return "\n".join(lines) + "\n"


def check_tta(tta: bool, blur: Any) -> None:
    """``--tta`` averages over all 8 flips / quarter turns: refuse a blur that they change."""
    if tta and psf_symmetries(blur) != list(range(8)):
        raise ValueError(
            "--tta needs a blur kernel unchanged by flips and quarter turns (like "
            "the default Gaussian); this one is not, so the flipped inputs would "
            "be blurred differently: drop --tta"
        )


def default_out(preset: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{stamp}-{preset}"


def log(cfg: RunConfig, msg: str) -> None:
    if not cfg.quiet:
        print(msg, file=sys.stderr, flush=True)


def run_benchmark(cfg: RunConfig) -> dict[str, Any]:
    """Run every requested method, write the run folder, return the run record."""
    preset = cfg.resolved_preset()
    device = resolve_device(cfg.device)
    names = cfg.methods or list(registry())
    for n in names:
        get_method(n)  # unknown names fail before any work is done
    for n in cfg.checkpoints:
        if n not in names:
            raise ValueError(f"--checkpoint given for {n!r}, which is not among --methods")
    if cfg.threads is not None and cfg.threads < 1:
        raise UserError(f"--threads must be an integer >= 1, got {cfg.threads}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    blur = make_blur(kernel_size=cfg.kernel_size, sigma=cfg.sigma, psf=cfg.psf)
    check_tta(cfg.tta, blur)  # before the run folder exists
    check_cnn_data(cfg.extra_photos, cfg.augment_faces, blur)
    check_checkpoint_files(cfg.checkpoints)
    folder = RunFolder(
        cfg.out or default_out(preset.name),
        kind="run",
        overwrite=cfg.overwrite,
        protect=[data_folder(cfg.data_dir)],
    )
    with folder:  # locked; a replaced run is swapped in only by folder.commit() at the end
        return _run_into(folder, cfg, preset, device, names, blur)


def _run_into(
    folder: RunFolder,
    cfg: RunConfig,
    preset: Preset,
    device: torch.device,
    names: list[str],
    blur: Any,
) -> dict[str, Any]:
    """Fit, restore and score every method, writing into ``folder.path``."""
    out = folder.path
    torch.manual_seed(cfg.seed)

    t0 = time.perf_counter()
    splits = prepare_splits(preset, cfg.data_dir, seed=cfg.seed, blur=blur, noise=cfg.noise)
    data_seconds = time.perf_counter() - t0
    log(
        cfg,
        f"data: {splits.source} — {splits.meta['n_images']} images of "
        f"{splits.meta['n_identities']} identities, {preset.size}px "
        f"{'gray' if preset.gray else 'RGB'}; train/val/test images "
        f"{splits.meta['n_train']}/{splits.meta['n_val']}/{splits.meta['n_test']}",
    )
    if cfg.data_dir is None:
        print(
            f"No --data-dir given: using the {splits.source} (see data/README.md for its "
            f"terms and for using your own face folder).",
            flush=True,
        )
    blur_meta = {**blur.meta(), "noise": cfg.noise, "quantization": "8-bit"}

    test = splits.test
    # The CNNs' training pairs: the training faces plus what --extra-photos / --augment-*
    # add, built only when a CNN row will be trained here.
    cnn_train = splits.train
    if (cfg.extra_photos or cfg.augment_faces) and any(
        issubclass(get_method(n), _CNNMethod) and n not in cfg.checkpoints for n in names
    ):
        cnn_train = PairSet(
            *cnn_training_pairs(
                splits.train.blurred,
                splits.train.sharp,
                blur,
                extra_photos=cfg.extra_photos,
                augment_photos=cfg.augment_photos,
                augment_faces=cfg.augment_faces,
                noise=cfg.noise,
                seed=cfg.seed,
            )
        )
        log(
            cfg,
            f"CNN training pairs: {len(cnn_train) - cfg.extra_photos} faces + "
            f"{cfg.extra_photos} photo crops",
        )

    rows: list[dict[str, Any]] = []
    fit_seconds: dict[str, float] = {}
    infos: dict[str, Any] = {}
    # Example columns spread over the test set, so several people are shown.
    ex_idx = torch.linspace(0, len(test) - 1, min(N_EXAMPLES, len(test))).round().long()
    examples: dict[str, torch.Tensor] = {
        "sharp": test.sharp[ex_idx],
        "blurred (input)": test.blurred[ex_idx],
    }
    figures: list[str] = []
    for name in names:
        cls = get_method(name)
        work = out / "methods" / name
        ctx = MethodContext(
            preset=preset,
            device=device,
            seed=cfg.seed,
            work_dir=work,
            quiet=cfg.quiet,
            blur_meta=blur_meta,
            options={
                k: v
                for k, v in {
                    "epochs": cfg.epochs,
                    "max_minutes": cfg.max_minutes,
                    "batch_size": cfg.batch_size,
                    "tta": cfg.tta or None,
                    "lr_schedule": cfg.lr_schedule,
                }.items()
                if v is not None
            },
        )
        method = cls(ctx)
        t0 = time.perf_counter()
        if name in cfg.checkpoints:
            method.load(cfg.checkpoints[name])
            log(cfg, f"[{name}] loaded {cfg.checkpoints[name]}")
        else:
            log(cfg, f"[{name}] fitting ...")
            method.fit(cnn_train if issubclass(cls, _CNNMethod) else splits.train, splits.val, blur)
        fit_seconds[name] = time.perf_counter() - t0
        outputs = []
        t0 = time.perf_counter()
        batches = list(zip(test.blurred.split(64), test.sharp.split(64)))
        for yb, _ in tqdm(batches, desc=f"restore {name}", disable=cfg.quiet, leave=False):
            outputs.append(method.restore(yb, blur).to("cpu", torch.float32).clamp(0, 1))
        restore_seconds = time.perf_counter() - t0
        x_hat = torch.cat(outputs)
        if x_hat.shape != test.sharp.shape:
            raise RuntimeError(
                f"method {name} returned {tuple(x_hat.shape)}, expected {tuple(test.sharp.shape)}"
            )
        scores = all_metrics(x_hat, test.sharp)
        per_img_sec = restore_seconds / max(1, len(test))
        for i in range(len(test)):
            rows.append(
                {
                    "method": name,
                    "image": test.names[i],
                    "identity": test.identities[i],
                    "mse": float(scores["mse"][i]),
                    "psnr": float(scores["psnr"][i]),
                    "ssim": float(scores["ssim"][i]),
                    "seconds": per_img_sec,
                }
            )
        if name != "identity":  # the "blurred (input)" row already shows it
            examples[name] = x_hat[ex_idx]
        if cfg.save_images:
            for i in range(len(test)):
                save_png(out / "images" / name / (Path(test.names[i]).stem + ".png"), x_hat[i])
        infos[name] = {
            "fit_seconds": fit_seconds[name],
            "restore_seconds": restore_seconds,
            "sec_per_image": per_img_sec,
            "sees_psf": cls.sees_psf,
            "learns": cls.learns,
            **method.info(),
        }
        figures += [str(p.relative_to(out)) for p in method.figures(work)]
        log(
            cfg,
            f"[{name}] PSNR {float(scores['psnr'].mean()):.2f} dB, "
            f"SSIM {float(scores['ssim'].mean()):.4f} "
            f"(fit {fit_seconds[name]:.1f}s, {per_img_sec * 1000:.1f} ms/image)",
        )

    per_image = pd.DataFrame(rows)
    summary = summarize(per_image, fit_seconds, order=names)
    md = to_markdown(summary)
    header = (
        f"# deblur-bench run — preset {preset.name}, {preset.size}px "
        f"{'gray' if preset.gray else 'RGB'}, seed {cfg.seed}\n\n"
        f"Data: {splits.source}; test: {len(test)} images of "
        f"{len(splits.meta['test_ids'])} held-out identities. Blur: {blur_meta['kind']} "
        f"{blur_meta['kernel_shape'][0]}×{blur_meta['kernel_shape'][1]}"
        f"{', sigma ' + str(blur.sigma) if blur.sigma else ''}, noise {cfg.noise}, "
        f"8-bit{_jpeg_note(preset)}. Means ± 95% t-interval over test images."
        f"{' CNN rows use the 8-flip test-time self-ensemble (--tta).' if cfg.tta else ''}"
        f"{_cnn_data_note(cfg)}"
        f"\n\n"
    )
    md += _training_mse_table(infos)
    write_text(out / "summary.md", header + md)
    from benchmarks.io_utils import atomic_write

    atomic_write(out / "summary.csv", lambda p: summary.to_csv(p, index=False))
    atomic_write(out / "per_image.csv", lambda p: per_image.to_csv(p, index=False))
    psnrs = {
        n: [per_image[per_image.method == n]["psnr"].iloc[int(i)] for i in ex_idx] for n in names
    }
    if "identity" in psnrs:
        psnrs["blurred (input)"] = psnrs.pop("identity")
    examples_figure(out / "examples.png", examples, psnrs)

    record = {
        "format_version": FORMAT_VERSION,
        "command": sys.argv,
        "config": asdict(cfg),
        "preset": preset.to_dict(),
        "blur": blur_meta,
        "data": {"source": splits.source, **splits.meta},
        "versions": versions(),
        "git_commit": git_commit(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "seeds": {"split": cfg.seed, "noise": cfg.seed + 1, "torch": cfg.seed},
        "timings": {"data_seconds": data_seconds, "fit_seconds": fit_seconds},
        "memory": {
            "peak_rss_mib": peak_rss_mib(),
            "cuda_max_allocated_mib": (
                torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
            ),
        },
        "methods": infos,
        "figures": ["examples.png", *figures],
    }
    record = folder.relocate(record)  # paths into the staging folder name the run folder
    write_json(out / "run.json", record)
    out = folder.commit()
    print(header + md, flush=True)
    log(cfg, f"results written to {out}")
    return {"out": out, "summary": summary, "per_image": per_image, "record": record}
