"""Ablation of the Deep NMF deblurring models on the VALIDATION people (never the test people).

Fits every variant on the training split and scores it on the validation split of the same
``prepare_splits`` the runner uses, then writes a markdown table::

    python -m benchmarks.experiments.deblur_ablation --data-dir ../shared/data/gt_faces \\
        --size 128 --out notes/ablation.md [--only coupled|prior] [--quick]

``--quick`` uses fewer training patches/iterations (the numbers in notes/README-deblur.md say
which budget produced them). Identity and padded Wiener (balance chosen on the same
validation images) are listed for reference.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.blur import BlurOperator
from benchmarks.classical import wiener_padded
from benchmarks.metrics import psnr, ssim
from benchmarks.pipeline import prepare_splits
from benchmarks.presets import get_preset
from dnmf.deblur.coupled import CoupledDeblur
from dnmf.deblur.prior import DeepNMFPrior

BALANCES = [float(b) for b in np.logspace(-5, 0, 21)]

# (label, settings) — each row changes one thing from the row it follows where possible.
COUPLED: list[tuple[str, dict[str, Any]]] = [
    ("k=1 r128, sharp target, no context, no normalisation (textbook)",
     dict(target="sharp", context=0, normalise="none", refit=False)),
    ("k=1 r128, residual split", dict(context=0, normalise="none", refit=False)),
    ("+ 16px blurred context (8px predicted)", dict(context=4, normalise="none", refit=False)),
    ("+ mean normalisation", dict(context=4, normalise="mean", refit=False)),
    ("+ contrast normalisation (mean/std, ± split)", dict(context=4, normalise="contrast", refit=False)),
    ("+ output block refit on test-time codes [nmf-coupled]", dict(context=4, normalise="contrast")),
    ("  blurred block weight 2", dict(context=4, normalise="contrast", blur_weight=2.0)),
    ("  patch 6px (context 3)", dict(size=6, context=3, stride=3, normalise="contrast")),
    ("k=2 r(128,64) ≈ same parameters [dnmf-coupled]", dict(ranks=(128, 64))),
    ("k=3 r(128,64,32)", dict(ranks=(128, 64, 32))),
    ("k=1 r256 (2x parameters)", dict(ranks=(256,))),
]
COUPLED_BASE = dict(size=8, context=4, stride=4, ranks=(128,), target="residual",
                    normalise="contrast", refit=True, n_patches=12000, fit_iter=80, code_iter=60)

PRIOR: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("k=1 r128, start from codes of y, plain MU, 40 it", dict(ranks=(128,)),
     dict(init="y", accelerate=False, n_iter=40)),
    ("k=1 r128, start from codes of y, accelerated MU, 40 it", dict(ranks=(128,)),
     dict(init="y", accelerate=True, n_iter=40)),
    ("k=1 r128, start from Wiener codes, accelerated MU, 40 it", dict(ranks=(128,)),
     dict(init="x0", accelerate=True, n_iter=40)),
    ("k=2 r(192,96) ≈ 1.1x params, Wiener codes, accelerated [dnmf-prior]", dict(ranks=(192, 96)),
     dict(init="x0", accelerate=True, n_iter=40)),
    ("k=3 r(192,96,48), Wiener codes, accelerated", dict(ranks=(192, 96, 48)),
     dict(init="x0", accelerate=True, n_iter=40)),
    ("k=1 r96, 6px patches stride 3, Wiener codes", dict(ranks=(96,), size=6, stride=3),
     dict(init="x0", accelerate=True, n_iter=40)),
]
PRIOR_BASE = dict(size=8, stride=4, ranks=(128,), n_patches=8000, fit_iter=50, code_iter=200)


def scores(x: torch.Tensor, s: torch.Tensor) -> tuple[float, float]:
    x = x.clamp(0, 1)
    return float(psnr(x, s).mean()), float(ssim(x, s).mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="ablation.md")
    ap.add_argument("--only", choices=["coupled", "prior"], default=None)
    ap.add_argument("--quick", action="store_true", help="fewer patches / iterations")
    ap.add_argument("--max-val", type=int, default=40, help="validation images scored")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    preset = get_preset("fast").with_overrides(size=a.size)
    blur = BlurOperator.gaussian(25, 3.0)
    sp = prepare_splits(preset, a.data_dir, seed=a.seed, blur=blur)
    tr, va = sp.train, sp.val
    idx = torch.linspace(0, len(va) - 1, min(len(va), a.max_val)).round().long()
    yv, sv = va.blurred[idx], va.sharp[idx]
    rows: list[str] = []
    ref_p, ref_s = scores(yv, sv)
    wo = wiener_padded(yv, blur.kernel, BALANCES)
    wb = int(np.argmax([scores(o, sv)[0] for o in wo]))
    xw = wo[wb].clamp(0, 1)
    w_p, w_s = scores(xw, sv)
    rows.append(f"| identity (blurred input) | – | {ref_p:.2f} | {ref_s:.4f} | – | – | – |")
    rows.append(f"| wiener (balance {BALANCES[wb]:.2g} on val) | yes | {w_p:.2f} | {w_s:.4f} | – | – | – |")
    quick = dict(n_patches=6000, fit_iter=40) if a.quick else {}

    def emit(label, sees, x, n_par, fit_s, sec_img):
        p, s = scores(x, sv)
        rows.append(f"| {label} | {sees} | {p:.2f} | {s:.4f} | {n_par} | {fit_s:.0f} | {sec_img:.2f} |")
        print(rows[-1], flush=True)

    if a.only in (None, "coupled"):
        for label, kw in COUPLED:
            cfg = {**COUPLED_BASE, **kw, **quick}
            m = CoupledDeblur(**cfg, seed=a.seed)
            t0 = time.perf_counter()
            m.fit(tr.blurred, tr.sharp)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            x = m.restore(yv)
            emit(f"coupled: {label}", "no", x, m.n_parameters(), fit_s,
                 (time.perf_counter() - t0) / len(yv))
    if a.only in (None, "prior"):
        for label, kw, rk in PRIOR:
            cfg = {**PRIOR_BASE, **kw, **quick}
            m = DeepNMFPrior(**cfg, seed=a.seed)
            t0 = time.perf_counter()
            m.fit(tr.sharp)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = m.restore(yv, blur, x0=xw, **rk)
            emit(f"prior: {label}", "yes", res.x, m.n_parameters(), fit_s,
                 (time.perf_counter() - t0) / len(yv))

    head = (f"Validation people only ({len(yv)} images of {len(set(va.identities))} people, "
            f"{a.size}px RGB, Gaussian 25x25 σ=3, 8-bit input, seed {a.seed}; "
            f"{'quick budget' if a.quick else 'method budget'}). Timings on a shared 2-core CPU, 1 thread.\n\n"
            "| variant | sees PSF | val PSNR | val SSIM | parameters | fit s | s / image |\n"
            "|---|---|---|---|---|---|---|\n")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(head + "\n".join(rows) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
