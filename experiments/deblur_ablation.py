"""Ablation of the deblurring priors on the VALIDATION people (the test people are never loaded).

Every row fits its model on the sharp training faces and is scored on ``--max-val`` validation
faces of the same identity split the runner uses; each half-quadratic-splitting row is set to
the noise level measured on the validation pairs and gets its own x-step weight from the
adapters' grid, chosen on the same images (as the methods do at fit time). Writes
``ablation.json`` and ``ablation.md`` into ``--out`` after every row (a rerun into the same
folder skips the rows already there)::

    python -m experiments.deblur_ablation --data-dir benchmarks/data/gt_faces --size 128 \\
        --max-val 10 --out docs/results/deblur-prior/ablation [--only prior epll coupled]
        [--match TEXT] [--noise 0.01] [--cache DIR]

Rows marked in the label with ``[dnmf-prior]`` / ``[epll]`` are the shipped settings; every
other row changes one ingredient of those.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.blur import BlurOperator
from benchmarks.classical import wiener_padded
from benchmarks.gmm_prior import EPLL
from benchmarks.io_utils import write_json, write_text
from benchmarks.methods import _hqs_common as hqs
from benchmarks.methods._tuning import best_wiener_balance
from benchmarks.methods.dnmf_prior import DNMFPrior
from benchmarks.methods.epll import EPLL as EPLLMethod
from benchmarks.metrics import psnr, ssim
from benchmarks.pipeline import prepare_splits
from benchmarks.presets import get_preset
from dnmf.deblur.coupled import CoupledDeblur
from dnmf.deblur.prior import DeepNMFPrior
from experiments._coupled_rows import COUPLED, COUPLED_BASE, RIDGE, ridge_ceiling
from experiments.mu_prior import MU_ITER_GRID, MU_SETTINGS, MU_START_FACTORS, DeepNMFPriorMU

BASE = dict(DNMFPrior.settings)
EPLL_BASE = dict(EPLLMethod.settings)


def _ranks_like(base: tuple[int, ...], d2: int, k: int) -> tuple[int, ...]:
    """Ranks for depth ``k`` with about the parameters of ``base`` (first layer ``d2`` rows)
    and the same number of atoms ``base[-1]`` where the depth allows it."""
    target = d2 * base[0] + sum(a * b for a, b in zip(base, base[1:]))
    atoms = base[-1]
    if k == 1:
        return (round(target / d2),)
    # (r1, atoms, …, atoms): d2·r1 + r1·atoms + (k − 2)·atoms² = target
    r1 = round((target - (k - 2) * atoms**2) / (d2 + atoms))
    return (r1,) + (atoms,) * (k - 1)


D2 = 2 * BASE["size"] ** 2  # ON/OFF rows of a grey (opponent) patch
R = tuple(BASE["ranks"])

#: (label, kind, overrides of BASE / EPLL_BASE / MU_SETTINGS)
PRIOR: list[tuple[str, str, dict[str, Any]]] = [
    ("Deep NMF prior, shipped settings [dnmf-prior]", "hqs", {}),
    ("splitting → multiplicative updates through the blur (first version)", "mu", {}),
    ("dictionary by dnmf.factorize's default solver (HALS), 30000 patches, 100 iterations",
     "hqs", dict(fit_solver="auto", n_patches=30000, fit_iter=100)),
    ("no mean removal", "hqs", dict(remove_mean=False)),
    ("ON/OFF coding instead of semi-NMF", "hqs", dict(coding="onoff")),
    ("no sparsity (l1 = 0)", "hqs", dict(sparsity=0.0)),
    ("sparsity ∝ σ (power 1) instead of σ^1.5", "hqs", dict(sparsity_power=1.0)),
    ("stride 1 (every overlapping patch)", "hqs", dict(stride=1)),
    ("stride 3", "hqs", dict(stride=3)),
    ("no annealing (one stage at σ_min)", "hqs", dict(n_stages=1)),
    ("no annealing (8 stages at σ_min)", "hqs", dict(sigma_max=BASE["sigma_min"])),
    ("4 stages instead of 8", "hqs", dict(n_stages=4)),
    (f"depth k=1, r = {R[-1]} (as many atoms, fewer parameters)", "hqs", dict(ranks=R[-1:])),
    (f"depth k=1, r = {_ranks_like(R, D2, 1)[0]} (≈ parameters)", "hqs",
     dict(ranks=_ranks_like(R, D2, 1))),
    (f"depth k=3, r = {_ranks_like(R, D2, 3)} (≈ parameters), product", "hqs",
     dict(ranks=_ranks_like(R, D2, 3))),
    ("depth as a prior on the codes: layer-centric penalty γ = 1·(σ/0.02)², k=2", "hqs",
     dict(depth="layered", gamma=1.0, gamma_power=2.0, n_outer=1)),
    ("both polarities of every atom (mirror)", "hqs", dict(mirror=True)),
    ("RGB patches instead of the opponent rotation", "hqs", dict(colour="rgb")),
    ("x-step by conjugate gradients (exact for the operator)", "hqs", dict(x_step="cg")),
    ("5 HALS sweeps per stage instead of 2", "hqs", dict(code_iter=5)),
    ("16 stages instead of 8", "hqs", dict(n_stages=16)),
    ("last stage at σ = 0.0025 instead of 0.005", "hqs", dict(sigma_min=0.0025)),
    ("8 px patches, ranks (192, 96)", "hqs", dict(size=8, ranks=(192, 96))),
    ("dictionary from 40000 patches, 120 iterations", "hqs", dict(n_patches=40000, fit_iter=120)),
]  # fmt: skip
EPLL_ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("EPLL, shipped settings [epll]", "epll", {}),
    ("EPLL, stride 1 (every overlapping patch)", "epll", dict(stride=1)),
]


def _wanted(a: argparse.Namespace, group: str) -> bool:
    return a.only is None or group in a.only


def scores(x: torch.Tensor, s: torch.Tensor) -> tuple[float, float]:
    x = x.clamp(0, 1)
    return float(psnr(x, s).mean()), float(ssim(x, s).mean())


def _cached(cls: Any, settings: dict[str, Any], sharp: torch.Tensor, cache: Path | None) -> Any:
    """A fitted model for these settings (fitted once per cache folder)."""
    if cache is None:
        return cls(**settings).fit(sharp)
    key = hashlib.sha1(json.dumps([cls.__name__, settings], sort_keys=True, default=str).encode())
    path = cache / f"{cls.__name__}-{key.hexdigest()[:12]}.npz"
    if path.is_file():
        return cls.load(path)
    model = cls(**settings).fit(sharp)
    model.save(path)
    return model


def run_hqs_row(model: Any, yv, sv, blur, sigma: float, method: Any):
    """The adapters' choice of weight (noise level ``sigma`` measured on validation), on these
    images: (psnr, ssim, s/img, weight)."""
    sc = hqs.set_noise_level(
        model, yv, sv, blur, sigma, float(model.sigma_min),
        weight_per_noise=method.weight_per_noise, weight_factors=method.weight_factors,
    )  # fmt: skip
    best = max(sc, key=lambda d: d["val_psnr"])
    return best["val_psnr"], best["val_ssim"], best["s_per_image"], best["weight"]


def run_mu_row(model: DeepNMFPriorMU, yv, sv, blur, balance: float):
    """The first version: Wiener start at 0.3/0.56/1× the best balance, 5/10/20 MU iterations
    (`experiments.mu_prior.MU_START_FACTORS`, ``MU_ITER_GRID``); the best pair on these images."""
    best = None
    for f in MU_START_FACTORS:
        x0 = wiener_padded(yv, blur.kernel, balance * f).clamp(0, 1)
        t0 = time.perf_counter()
        res = model.restore(yv, blur, x0=x0, n_iter=max(MU_ITER_GRID), snapshots=MU_ITER_GRID)
        sec = (time.perf_counter() - t0) / len(yv)
        for n in MU_ITER_GRID:
            p, s = scores(res.snapshots[n], sv)
            if best is None or p > best[0]:
                best = (p, s, sec, f"start {f}×, {n} MU iterations")
    return best


def prior_rows(a, tr, yv, sv, blur, balance, sigma, emit, done) -> None:
    cache = Path(a.cache) if a.cache else None
    rows = (PRIOR if _wanted(a, "prior") else []) + (EPLL_ROWS if _wanted(a, "epll") else [])
    for label, kind, kw in rows:
        if (a.match and a.match not in label) or label in done:
            continue
        t0 = time.perf_counter()
        if kind == "mu":
            model = _cached(DeepNMFPriorMU, {**MU_SETTINGS, **kw}, tr.sharp, cache)
            fit_s = time.perf_counter() - t0
            p, s, sec, chosen = run_mu_row(model, yv, sv, blur, balance)
        else:
            cls, base = (EPLL, EPLL_BASE) if kind == "epll" else (DeepNMFPrior, BASE)
            model = _cached(cls, {**base, **kw}, tr.sharp, cache)
            fit_s = time.perf_counter() - t0
            method = EPLLMethod if kind == "epll" else DNMFPrior
            p, s, sec, w = run_hqs_row(model, yv, sv, blur, sigma, method)
            chosen = f"weight {w:.2g}"
        emit(label, "yes", p, s, model.n_parameters(), fit_s, sec, chosen)


def coupled_rows(a, tr, yv, sv, emit, done) -> None:
    for label, kw in COUPLED:
        if (a.match and a.match not in label) or f"coupled: {label}" in done:
            continue
        m = CoupledDeblur(**{**COUPLED_BASE, **kw}, seed=a.seed)
        t0 = time.perf_counter()
        m.fit(tr.blurred, tr.sharp)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        x = m.restore(yv)
        p, s = scores(x, sv)
        sec = (time.perf_counter() - t0) / len(yv)
        emit(f"coupled: {label}", "no", p, s, m.n_parameters(), fit_s, sec, "–")
    for label, kw in RIDGE:
        if (a.match and a.match not in label) or label in done:
            continue
        t0 = time.perf_counter()
        p, s = scores(ridge_ceiling(tr.blurred, tr.sharp, yv, **kw, seed=a.seed), sv)
        emit(label, "no", p, s, 0, time.perf_counter() - t0, 0.0, "–")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--max-images", type=int, default=750)
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="folder for ablation.json and ablation.md")
    ap.add_argument("--only", choices=["prior", "epll", "coupled"], nargs="+", default=None)
    ap.add_argument("--max-val", type=int, default=10, help="validation images scored")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--match", default=None, help="only rows whose label contains this text")
    ap.add_argument("--cache", default=None, help="folder to keep fitted models between runs")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.cache:
        Path(a.cache).mkdir(parents=True, exist_ok=True)

    preset = get_preset("fast").with_overrides(size=a.size, max_images=a.max_images)
    blur = BlurOperator.gaussian(25, 3.0)
    sp = prepare_splits(preset, a.data_dir, seed=a.seed, blur=blur, noise=a.noise)
    tr, va = sp.train, sp.val  # sp.test is never used here
    idx = torch.linspace(0, len(va) - 1, min(len(va), a.max_val)).round().long()
    yv, sv = va.blurred[idx], va.sharp[idx]
    balance, _ = best_wiener_balance(yv, blur.kernel, sv)  # the wiener method's own rule
    out = Path(a.out)
    meta = dict(
        n_val_images=len(yv), val_people=sorted(set(va.identities)), size=a.size,
        noise=a.noise, seed=a.seed, threads=a.threads, max_images=a.max_images,
        command="python -m experiments.deblur_ablation " + " ".join(argv or []),
    )  # fmt: skip
    old = out / "ablation.json"  # rows already scored by an interrupted run are kept
    rows: list[dict[str, Any]] = json.loads(old.read_text())["rows"] if old.is_file() else []
    done = {r["variant"] for r in rows}

    def emit(label, sees, p, s, n_par, fit_s, sec, chosen):
        rows.append(dict(variant=label, sees_psf=sees, val_psnr=p, val_ssim=s, parameters=n_par,
                         fit_seconds=fit_s, seconds_per_image=sec, chosen=chosen))  # fmt: skip
        print(f"{label}: {p:.2f} dB {s:.4f} ({chosen}, {sec:.2f} s/img)", flush=True)
        write_json(out / "ablation.json", {"meta": meta, "rows": rows})  # after every row
        write_text(out / "ablation.md", _table(rows, meta))

    if "identity (blurred input)" not in done:
        emit("identity (blurred input)", "–", *scores(yv, sv), 0, 0.0, 0.0, "–")
        wx = wiener_padded(yv, blur.kernel, balance)
        emit("wiener", "yes", *scores(wx, sv), 0, 0.0, 0.0, f"balance {balance:.2g}")
    if _wanted(a, "prior") or _wanted(a, "epll"):
        prior_rows(a, tr, yv, sv, blur, balance, hqs.noise_sigma(va, blur), emit, done)
    if _wanted(a, "coupled"):
        coupled_rows(a, tr, yv, sv, emit, done)
    print(f"wrote {out / 'ablation.md'}")


def _table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    head = (
        f"Validation people only ({meta['n_val_images']} images of "
        f"{len(meta['val_people'])} people, {meta['size']} px RGB, Gaussian 25×25 σ = 3, "
        f"noise {meta['noise']}, 8-bit input, seed {meta['seed']}); one thread on a shared "
        "CPU.\n\n| variant | sees PSF | val PSNR | val SSIM | chosen on these images | "
        "parameters | fit s | s / image |\n|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['variant']} | {r['sees_psf']} | {r['val_psnr']:.2f} | {r['val_ssim']:.4f} | "
        f"{r['chosen']} | {r['parameters']} | {r['fit_seconds']:.0f} | "
        f"{r['seconds_per_image']:.2f} |\n"
        for r in rows
    )
    return head + body


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
