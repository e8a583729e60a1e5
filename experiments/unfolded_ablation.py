"""Unfolded Deep NMF variants scored on the VALIDATION people (never the test people).

Every variant of ``dnmf-unfolded`` (`dnmf.deblur.unfolded.UnfoldedCoupled`) starts as the
adapter starts it (`benchmarks.methods.dnmf_unfolded.DNMFUnfolded.prepare_model`: a
`CoupledDeblur` fitted on the training pairs, or random factors), trains with the shared loop
(`convae.train`) for a FIXED number of epochs (not wall-clock: the CPU is shared, so equal
minutes would not be equal work) on the training split of the runner's ``prepare_splits``
(seed 0), keeps its best-validation epoch, and is scored on the validation faces::

    python -m experiments.unfolded_ablation --size 128 --epochs 6 --threads 1 \\
        --cache /tmp/unfolded-cache --out docs/results/unfolded/ablation

``--only NAME ...`` runs some rows; a row already in ``ablation.json`` is kept, not rerun.
Reference rows (``identity``, ``dnmf-coupled``, ``convae-unet`` for the same epochs) are
rows like the others.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

import convae
from benchmarks.io_utils import write_json
from benchmarks.methods import get_method
from benchmarks.methods._tuning import mean_scores
from benchmarks.methods.base import MethodContext
from benchmarks.methods.dnmf_unfolded import DNMFUnfolded
from benchmarks.presets import get_preset
from experiments._cnn_setup import add_data_args, face_splits

#: name -> (what it changes, model kwargs over the defaults)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("defaults", {}),
    "K1": ("K = 1 layer", {"layers": 1}),
    "K3": ("K = 3 layers", {"layers": 3}),
    "K10": ("K = 10 layers", {"layers": 10}),
    "k1": ("depth k = 1, rank 16, every layer's W1 untied", {"ranks": (16,), "untie": "all"}),
    "k3": ("depth k = 3, ranks (32, 16, 16)", {"ranks": (32, 16, 16)}),
    "tied": ("tied layers (one W1 W2 for all)", {"untie": "none"}),
    "untie-all": ("every factor untied per layer", {"untie": "all"}),
    "random": ("random start (identity output)", {"init": "random"}),
    "softplus": ("softplus reparametrisation, Adam", {"nonneg": "softplus"}),
    "multiplicative": ("multiplicative step W ⊙ ∇⁻/∇⁺", {"nonneg": "multiplicative"}),
}
REFERENCES = ("identity", "dnmf-coupled", "convae-unet")


def _context(args: argparse.Namespace, meta: dict[str, Any], work: Path | None) -> MethodContext:
    preset = get_preset("fast").with_overrides(size=args.size, max_images=args.max_images)
    return MethodContext(preset=preset, seed=0, work_dir=work, quiet=True, blur_meta=meta)


def _scores(out: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
    p, s = mean_scores(out, sharp)
    return {"val_psnr": p, "val_ssim": s}


def _restore(model: torch.nn.Module, y: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(b).clamp(0, 1) for b in y.split(32)])


def run_variant(name: str, args: argparse.Namespace, data: tuple) -> dict[str, Any]:
    blur, meta, splits = data
    tr, va = splits.train, splits.val
    what, kw = VARIANTS[name]
    method = DNMFUnfolded(_context(args, meta, Path(args.cache)))
    torch.manual_seed(0)  # the random start's factors
    model = convae.build_model("dnmf-unfolded", in_channels=int(tr.blurred.shape[1]), **kw)
    method.prepare_model(model, tr, va, blur)
    start = _scores(_restore(model, va.blurred), va.sharp)
    cfg = convae.TrainConfig(epochs=args.epochs, batch_size=16, lr=args.lr, seed=0)
    r = convae.train(model, tr, va, cfg, progress=False)
    return {
        "variant": name,
        "what": what,
        "model_kwargs": model.init_kwargs,
        "parameters": r.parameters,
        "untrained": start,
        **_scores(_restore(model, va.blurred), va.sharp),
        "epochs": r.epochs_completed,
        "best_epoch": r.best_epoch,
        "best_val_loss": r.best_val_loss,
        "images_per_s": r.images_per_s,
        "train_seconds": r.seconds,
        "init": method.start,
        "history": r.history,
    }


def run_reference(name: str, args: argparse.Namespace, data: tuple) -> dict[str, Any]:
    blur, meta, splits = data
    tr, va = splits.train, splits.val
    if name == "identity":
        return {"variant": name, "what": "the blurred input", "parameters": 0,
                **_scores(va.blurred, va.sharp)}  # fmt: skip
    ctx = _context(args, meta, Path(args.cache))
    if name == "convae-unet":
        ctx.options = {"epochs": args.epochs}
    method = get_method(name)(ctx)
    t0 = time.perf_counter()
    method.fit(tr, va, blur)
    info = method.info()
    return {
        "variant": name,
        "what": f"reference: {name}" + (f", {args.epochs} epochs" if name == "convae-unet" else ""),
        "parameters": info.get("parameters", info.get("n_parameters")),
        **_scores(method.restore(va.blurred, blur), va.sharp),
        "train_seconds": time.perf_counter() - t0,
        "images_per_s": info.get("train_images_per_s"),
    }


def table(rows: list[dict[str, Any]], epochs: int) -> str:
    lines = [
        f"| variant | parameters | untrained val PSNR | val PSNR after {epochs} epochs | val SSIM "
        "| best epoch | train images/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        u = r.get("untrained", {}).get("val_psnr")
        ips = r.get("images_per_s")
        par = r.get("parameters")
        lines.append(
            f"| {r['what']} [{r['variant']}] | {f'{par:,}' if par is not None else '–'} | "
            f"{f'{u:.2f}' if u is not None else '–'} | {r['val_psnr']:.2f} | "
            f"{r['val_ssim']:.4f} | {r.get('best_epoch') or '–'} | "
            f"{f'{ips:.1f}' if ips else '–'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(p)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--only", nargs="*", help=f"rows to run: {[*REFERENCES, *VARIANTS]}")
    p.add_argument(
        "--custom",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "JSON"),
        help="an extra row: its name and model kwargs as JSON (exploration)",
    )
    p.add_argument("--cache", required=True, help="folder for the fitted starting models")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done_path = out / "ablation.json"
    rows: list[dict[str, Any]] = json.loads(done_path.read_text()) if done_path.is_file() else []
    for name, kw in args.custom:
        VARIANTS[name] = (f"custom: {kw}", json.loads(kw))
    names = args.only or [*REFERENCES, *VARIANTS]
    data = face_splits(args)
    for name in names:
        if any(r["variant"] == name for r in rows):
            continue
        print(f"{name} ...", flush=True)
        row = (
            run_reference(name, args, data) if name in REFERENCES else run_variant(name, args, data)
        )
        rows.append(row)
        print(f"  val PSNR {row['val_psnr']:.2f} dB", flush=True)
        write_json(done_path, rows)
        (out / "ablation.md").write_text(table(rows, args.epochs))
    print(table(rows, args.epochs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
