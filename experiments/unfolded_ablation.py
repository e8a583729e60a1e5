"""Unfolded Deep NMF variants scored on the VALIDATION people (never the test people).

Every variant of ``dnmf-unfolded`` (`dnmf.deblur.unfolded.UnfoldedCoupled`) and of
``dnmf-prior-unfolded`` (`dnmf.deblur.unfolded_prior.UnfoldedPrior`) starts as its adapter
starts it (``prepare_model``: a `CoupledDeblur` fitted on the training pairs, or `DeepNMFPrior`
fitted on the sharp training images and tuned on the validation pairs; or random factors),
trains with the shared loop (`convae.train`) and the adapter's learning rate for a FIXED number
of epochs (not wall-clock: the CPU is shared, so equal minutes would not be equal work) on the
training split of the runner's ``prepare_splits`` (seed 0), keeps its best-validation epoch,
and is scored on the validation faces::

    python -m experiments.unfolded_ablation --size 64 --epochs 3 --threads 1 \\
        --cache /tmp/unfolded-cache --out docs/results/unfolded

The variants change one thing each against the defaults (``default``: K = 5 layers, a k = 2
model with ranks (32, 16), W2 untied per layer, started from the NMF fit, exp
reparametrisation); the table groups them by the question they answer, with the default row
repeated in every group; the default rows also leave their atoms before and after training
and their training curve as figures. ``--only NAME ...`` runs some rows; a row already in
``ablation.json`` is kept, not rerun. Reference rows (``identity``, ``dnmf-coupled``) are rows
like the others.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

import convae
from benchmarks.io_utils import write_json
from benchmarks.methods import _fitted_models as common
from benchmarks.methods import get_method
from benchmarks.methods._tuning import mean_scores
from benchmarks.methods._unfolded import UnfoldedMethod
from benchmarks.methods.base import MethodContext
from benchmarks.methods.dnmf_prior_unfolded import DNMFPriorUnfolded
from benchmarks.methods.dnmf_unfolded import DNMFUnfolded
from benchmarks.presets import get_preset
from experiments._cnn_setup import add_data_args, face_splits

DEFAULT = "defaults: K = 5, k = 2 (32, 16), W2 untied per layer, NMF start, exp"
#: name -> (the question it answers, what it changes, model kwargs over the defaults)
VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "default": ("", DEFAULT, {}),
    "K1": ("layers K", "K = 1 layer", {"layers": 1}),
    "K3": ("layers K", "K = 3 layers", {"layers": 3}),
    "K10": ("layers K", "K = 10 layers", {"layers": 10}),
    "k1": ("depth k", "k = 1, rank 16 (W1 untied per layer)", {"ranks": (16,), "untie": "all"}),
    "k3": ("depth k", "k = 3, ranks (32, 16, 16)", {"ranks": (32, 16, 16)}),
    "tied": ("tied or untied", "tied: one W1 W2 for every layer", {"untie": "none"}),
    "untie-all": ("tied or untied", "W1 and W2 untied per layer", {"untie": "all"}),
    "random": ("start", "random start (the output starts as the identity)", {"init": "random"}),
    "multiplicative": (
        "nonnegativity",
        "multiplicative step W ⊙ ∇⁻/∇⁺",
        {"nonneg": "multiplicative"},
    ),
    "softplus": ("nonnegativity", "softplus reparametrisation, Adam", {"nonneg": "softplus"}),
}
PRIOR_DEFAULT = "non-blind, defaults: dnmf-prior's stages, one dictionary per stage, exp"
#: the same for ``dnmf-prior-unfolded`` (rows named ``prior-…``)
PRIOR_VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "prior-default": ("", PRIOR_DEFAULT, {}),
    "prior-tied": ("non-blind", "one dictionary for every stage", {"untie": "none"}),
    "prior-multiplicative": (
        "non-blind",
        "multiplicative step W ⊙ ∇⁻/∇⁺",
        {"nonneg": "multiplicative"},
    ),
}
REFERENCES = ("identity", "dnmf-coupled")
#: rows whose before/after atom figure and training curve are written beside the table
FIGURE_ROWS = ("default", "prior-default")
QUESTIONS = ("layers K", "depth k", "tied or untied", "start", "nonnegativity", "non-blind")


def _context(args: argparse.Namespace, meta: dict[str, Any], work: Path | None) -> MethodContext:
    preset = get_preset("fast").with_overrides(size=args.size, max_images=args.max_images)
    return MethodContext(preset=preset, seed=0, work_dir=work, quiet=True, blur_meta=meta)


def _scores(out: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
    p, s = mean_scores(out, sharp)
    return {"val_psnr": p, "val_ssim": s}


def _restore(model: torch.nn.Module, y: torch.Tensor, batch: int) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(b).clamp(0, 1) for b in y.split(batch)])


def run_variant(name: str, args: argparse.Namespace, data: tuple) -> dict[str, Any]:
    blur, meta, splits = data
    tr, va = splits.train, splits.val
    prior = name in PRIOR_VARIANTS
    n_train = args.prior_train_images if prior else args.train_images
    if n_train:
        tr = type(tr)(tr.blurred[:n_train], tr.sharp[:n_train])
    question, what, kw = (PRIOR_VARIANTS if prior else VARIANTS)[name]
    cls: type[UnfoldedMethod] = DNMFPriorUnfolded if prior else DNMFUnfolded
    method = cls(_context(args, meta, Path(args.cache)))
    torch.manual_seed(0)  # the random start's factors
    model = convae.build_model(cls.architecture, in_channels=int(tr.blurred.shape[1]), **kw)
    t0 = time.perf_counter()
    method.prepare_model(model, tr, va, blur)  # the fit (cached), the operator
    init_seconds = time.perf_counter() - t0
    if "val_psnr_untrained" in method.start:  # the adapter scored the fitted start already
        start = {k: method.start[f"{k}_untrained"] for k in ("val_psnr", "val_ssim")}
    else:
        start = _scores(_restore(model, va.blurred, cls.infer_batch_size), va.sharp)
    lr = args.lr if args.lr is not None else cls.train_lr
    epochs = args.prior_epochs if prior else args.epochs
    cfg = convae.TrainConfig(epochs=epochs, batch_size=args.batch_size, lr=lr, seed=0)
    r = convae.train(model, (tr.blurred, tr.sharp), (va.blurred, va.sharp), cfg, progress=False)
    if name in FIGURE_ROWS:  # what training did to the atoms, and the curve
        out = Path(args.out)
        common.plot_atoms(
            out / f"{name}_atoms_before_after.png",
            method.atom_panels(model),
            f"{cls.name} at {args.size} px: atoms before and after {epochs} epochs (at most 64)",
        )
        convae.plot_history(r.history, out / f"{name}_training_curve.png", title=f"{cls.name}")
    return {
        "variant": name,
        "question": question,
        "what": what,
        "model": cls.name,
        "model_kwargs": model.init_kwargs,
        "parameters": r.parameters,
        "untrained": start,
        **_scores(_restore(model, va.blurred, cls.infer_batch_size), va.sharp),
        "lr": lr,
        "batch_size": args.batch_size,
        "train_images": len(tr),
        "epochs": r.epochs_completed,
        "best_epoch": r.best_epoch,
        "best_val_loss": r.best_val_loss,
        "images_per_s": r.images_per_s,
        "train_seconds": r.seconds,
        "init_seconds": init_seconds,
        "init": method.start,
        "history": r.history,
    }


def run_reference(name: str, args: argparse.Namespace, data: tuple) -> dict[str, Any]:
    blur, meta, splits = data
    tr, va = splits.train, splits.val
    if name == "identity":
        return {"variant": name, "question": "", "what": "the blurred input", "parameters": 0,
                **_scores(va.blurred, va.sharp)}  # fmt: skip
    method = get_method(name)(_context(args, meta, Path(args.cache)))
    t0 = time.perf_counter()
    method.fit(tr, va, blur)
    info = method.info()
    return {
        "variant": name,
        "question": "",
        "what": f"reference: {name} (fitted, not trained)",
        "parameters": info.get("parameters", info.get("n_parameters")),
        **_scores(method.restore(va.blurred, blur), va.sharp),
        "init_seconds": time.perf_counter() - t0,
    }


def _row(r: dict[str, Any]) -> str:
    u = r.get("untrained", {}).get("val_psnr")
    budget = f"{r['epochs']} × {r['train_images']}" if "train_images" in r else "–"
    par = r.get("parameters")
    gain = r["val_psnr"] - u if u is not None else None
    ips = r.get("images_per_s")
    return (
        f"| {r['what']} [`{r['variant']}`] | {f'{par:,}' if par is not None else '–'} | "
        f"{budget} | "
        f"{f'{u:.2f}' if u is not None else '–'} | {r['val_psnr']:.2f} | "
        f"{f'{gain:+.2f}' if gain is not None else '–'} | {r['val_ssim']:.4f} | "
        f"{r.get('best_epoch') or '–'} | {f'{ips:.1f}' if ips else '–'} |"
    )


def table(rows: list[dict[str, Any]]) -> str:
    """The references, then one table per question with its default row first."""
    head = (
        "| variant | parameters | trained (epochs × images) | val PSNR untrained (dB) | "
        "val PSNR trained (dB) | gain (dB) | val SSIM | best epoch | train images/s |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    by_name = {r["variant"]: r for r in rows}
    out = []
    refs = [by_name[n] for n in REFERENCES if n in by_name]
    if refs:
        out += ["**References**", "", head, *map(_row, refs), ""]
    for q in QUESTIONS:
        group = [r for r in rows if r.get("question") == q]
        if not group:
            continue
        base = by_name.get("prior-default" if q == "non-blind" else "default")
        out += [f"**{q}**", "", head, *map(_row, ([base] if base else []) + group), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(p)
    p.add_argument("--epochs", type=int, default=3, help="training epochs of a dnmf-unfolded row")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, help="learning rate (default: the adapter's train_lr)")
    p.add_argument(
        "--train-images", type=int, default=0, help="train on the first N training pairs (0: all)"
    )
    # the non-blind network trains about 20 times slower (an FFT x-step and HALS z-steps per
    # stage): its rows get their own, smaller budget, stated in the table
    p.add_argument("--prior-epochs", type=int, default=1, help="epochs of a prior-… row")
    p.add_argument(
        "--prior-train-images", type=int, default=128, help="training pairs of a prior-… row"
    )
    rows_known = [*REFERENCES, *VARIANTS, *PRIOR_VARIANTS]
    p.add_argument("--only", nargs="*", help=f"rows to run: {rows_known}")
    p.add_argument("--cache", required=True, help="folder for the fitted starting models")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    unknown = sorted(set(args.only or []) - set(rows_known))
    if unknown:
        p.error(f"--only: unknown rows {unknown}; choose from {rows_known}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done_path = out / "ablation.json"
    record: dict[str, Any] = (
        json.loads(done_path.read_text()) if done_path.is_file() else {"rows": []}
    )
    given = sys.argv[1:] if argv is None else list(argv)
    # every command that added rows, in order (a rerun of some rows appends its own)
    record.setdefault("commands", []).append(
        ["python", "-m", "experiments.unfolded_ablation", *given]
    )
    record["settings"] = {k: v for k, v in vars(args).items() if k not in ("only",)}
    rows: list[dict[str, Any]] = record["rows"]
    names = args.only or rows_known
    data = face_splits(args)
    record["data"] = {"train": len(data[2].train), "val": len(data[2].val), **data[2].meta}
    for name in names:
        if any(r["variant"] == name for r in rows):
            continue
        print(f"{name} ...", flush=True)
        t0 = time.perf_counter()
        row = (
            run_reference(name, args, data) if name in REFERENCES else run_variant(name, args, data)
        )
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(f"  val PSNR {row['val_psnr']:.2f} dB ({row['seconds']:.0f} s)", flush=True)
        write_json(done_path, record)
        (out / "ablation.md").write_text(table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
