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

SIX = dict(size=6, context=3, stride=3, coder="hals", code_iter=10)
BIG = dict(n_patches=16000, fit_iter=60)

# (label, settings) — each row changes one thing from the row it follows where possible.
COUPLED: list[tuple[str, dict[str, Any]]] = [
    (
        "k=1 r128, sharp target, no context, no normalisation (textbook)",
        dict(target="sharp", context=0, normalise="none", refit=False),
    ),
    ("k=1 r128, residual split", dict(context=0, normalise="none", refit=False)),
    ("+ 16px blurred context (8px predicted)", dict(context=4, normalise="none", refit=False)),
    ("+ mean normalisation", dict(context=4, normalise="mean", refit=False)),
    (
        "+ contrast normalisation (mean/std, ± split)",
        dict(context=4, normalise="contrast", refit=False),
    ),
    (
        "+ output block refit on test-time codes [nmf-coupled]",
        dict(context=4, normalise="contrast"),
    ),
    ("  blurred block weight 2", dict(context=4, normalise="contrast", blur_weight=2.0)),
    ("  patch 6px (context 3)", dict(size=6, context=3, stride=3, normalise="contrast")),
    ("k=2 r(128,64) ≈ same parameters [dnmf-coupled]", dict(ranks=(128, 64))),
    ("k=3 r(128,64,32)", dict(ranks=(128, 64, 32))),
    ("k=1 r256 (2x parameters)", dict(ranks=(256,))),
    # second round (6 px patches, HALS coding; see notes/deblur-notes.md)
    ("6px k=1 r128, MU coding 60 it", dict(SIX, ranks=(128,), coder="mu", code_iter=60)),
    ("6px k=1 r128, HALS coding 10 sweeps", dict(SIX, ranks=(128,))),
    ("6px k=1 r128, HALS 10, restore stride 2", dict(SIX, ranks=(128,), restore_stride=2)),
    ("6px k=1 r256, 16k patches, HALS 10 [nmf-coupled]", dict(SIX, **BIG, ranks=(256,))),
    ("6px k=2 r(256,128), 16k patches, HALS 10, one stage", dict(SIX, **BIG, ranks=(256, 128))),
    ("6px k=3 r(256,128,64), 16k patches, HALS 10", dict(SIX, **BIG, ranks=(256, 128, 64))),
    ("6px k=1 r256, two stages", dict(SIX, **BIG, ranks=(256,), stages=2)),
    (
        "6px k=2 r(256,128), two stages (stage 2 trained on stage-1 outputs) [dnmf-coupled]",
        dict(SIX, **BIG, ranks=(256, 128), stages=2),
    ),
]
RIDGE = [
    (
        "ridge ceiling: linear map from the 12px normalised context to the residual "
        "(signed, not NMF), 50k patches",
        dict(size=6, context=3, stride=3, n_patches=50000, lam=1.0),
    )
]
COUPLED_BASE = dict(
    size=8,
    context=4,
    stride=4,
    ranks=(128,),
    target="residual",
    normalise="contrast",
    refit=True,
    n_patches=12000,
    fit_iter=80,
    code_iter=60,
)

P6 = dict(size=6, stride=2, ranks=(128, 96), n_patches=12000, coder="hals", code_iter=10)
PRIOR: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "k=1 r128, start from codes of y, plain MU, 40 it",
        dict(ranks=(128,)),
        dict(init="y", accelerate=False, n_iter=40),
    ),
    (
        "k=1 r128, start from codes of y, accelerated MU, 40 it",
        dict(ranks=(128,)),
        dict(init="y", accelerate=True, n_iter=40),
    ),
    (
        "k=1 r128, start from Wiener codes, accelerated MU, 40 it",
        dict(ranks=(128,)),
        dict(init="x0", accelerate=True, n_iter=40),
    ),
    (
        "k=2 r(192,96) ≈ 1.1x params, Wiener codes, accelerated [dnmf-prior]",
        dict(ranks=(192, 96)),
        dict(init="x0", accelerate=True, n_iter=40),
    ),
    (
        "k=3 r(192,96,48), Wiener codes, accelerated",
        dict(ranks=(192, 96, 48)),
        dict(init="x0", accelerate=True, n_iter=40),
    ),
    (
        "k=1 r96, 6px patches stride 3, Wiener codes",
        dict(ranks=(96,), size=6, stride=3),
        dict(init="x0", accelerate=True, n_iter=40),
    ),
    # second round: HALS start codes (10 sweeps), 6 px patches, 12k patches
    (
        "6px k=1 r96, HALS start, stride 3, 10 it",
        dict(P6, ranks=(96,), stride=3),
        dict(init="x0", n_iter=10),
    ),
    (
        "6px k=2 r(128,96), HALS start, stride 3, 10 it",
        dict(P6, stride=3),
        dict(init="x0", n_iter=10),
    ),
    ("6px k=2 r(128,96), HALS start, stride 2, 10 it", dict(P6), dict(init="x0", n_iter=10)),
    (
        "6px k=2 r(128,96), HALS start, stride 2, start balance 0.56x, 10 it [dnmf-prior]",
        dict(P6),
        dict(init="x0", n_iter=10, start_factor=0.56),
    ),
    (
        "6px k=1 r240 (≈ k=2 parameters), HALS start, stride 2, start balance 0.56x, 10 it",
        dict(P6, ranks=(240,)),
        dict(init="x0", n_iter=10, start_factor=0.56),
    ),
    (
        "6px k=3 r(128,96,64), HALS start, stride 2, start balance 0.56x, 10 it",
        dict(P6, ranks=(128, 96, 64)),
        dict(init="x0", n_iter=10, start_factor=0.56),
    ),
]
PRIOR_BASE = dict(size=8, stride=4, ranks=(128,), n_patches=8000, fit_iter=50, code_iter=200)


def scores(x: torch.Tensor, s: torch.Tensor) -> tuple[float, float]:
    x = x.clamp(0, 1)
    return float(psnr(x, s).mean()), float(ssim(x, s).mean())


def ridge_ceiling(
    b_tr: torch.Tensor,
    s_tr: torch.Tensor,
    y: torch.Tensor,
    *,
    size: int,
    context: int,
    stride: int,
    n_patches: int,
    lam: float,
    seed: int = 0,
    floor: float = 0.02,
) -> torch.Tensor:
    """A linear (signed) ridge regression from the contrast-normalised blurred context to the
    normalised residual — the same features and target as the coupled NMF, without the
    nonnegative coding: an upper reference for what the NMF coding loses (not a method)."""
    from dnmf.deblur.patches import PatchGrid

    def feats(b):
        grid = PatchGrid(b.shape[-2], b.shape[-1], size, stride)
        B = grid.extract(b, context=context, mode="reflect")
        Bc = grid.extract(b, mode="reflect")
        mu = B.std(dim=-2, keepdim=True) + floor
        Z = (B - B.mean(dim=-2, keepdim=True)) / mu
        return grid, torch.cat([Z, torch.ones_like(Z[:, :1])], dim=1), Bc, mu

    _, Z, Bc, mu = feats(b_tr)
    S = PatchGrid(b_tr.shape[-2], b_tr.shape[-1], size, stride).extract(s_tr, mode="reflect")
    T = (S - Bc) / mu
    Z = Z.permute(1, 0, 2).reshape(Z.shape[1], -1).double()
    T = T.permute(1, 0, 2).reshape(T.shape[1], -1).double()
    g = torch.Generator().manual_seed(int(seed))
    sel = torch.randperm(Z.shape[1], generator=g)[:n_patches]
    Z, T = Z[:, sel], T[:, sel]
    R = torch.linalg.solve(Z @ Z.T + lam * torch.eye(Z.shape[0], dtype=Z.dtype), Z @ T.T).T.float()
    grid, Zy, Bcy, muy = feats(y)
    return grid.assemble(Bcy + (R @ Zy) * muy).clamp(0, 1)


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
    ap.add_argument("--match", default=None, help="only rows whose label contains this text")
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
    rows.append(
        f"| wiener (balance {BALANCES[wb]:.2g} on val) | yes | {w_p:.2f} | {w_s:.4f} | – | – | – |"
    )
    quick = dict(n_patches=6000, fit_iter=40) if a.quick else {}

    def emit(label, sees, x, n_par, fit_s, sec_img):
        p, s = scores(x, sv)
        rows.append(
            f"| {label} | {sees} | {p:.2f} | {s:.4f} | {n_par} | {fit_s:.0f} | {sec_img:.2f} |"
        )
        print(rows[-1], flush=True)

    if a.only in (None, "coupled"):
        for label, kw in COUPLED:
            if a.match and a.match not in label:
                continue
            cfg = {**COUPLED_BASE, **kw, **quick}
            m = CoupledDeblur(**cfg, seed=a.seed)
            t0 = time.perf_counter()
            m.fit(tr.blurred, tr.sharp)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            x = m.restore(yv)
            emit(
                f"coupled: {label}",
                "no",
                x,
                m.n_parameters(),
                fit_s,
                (time.perf_counter() - t0) / len(yv),
            )
    if a.only in (None, "prior"):
        for label, kw, rk in PRIOR:
            if a.match and a.match not in label:
                continue
            cfg = {**PRIOR_BASE, **kw, **quick}
            m = DeepNMFPrior(**cfg, seed=a.seed)
            t0 = time.perf_counter()
            m.fit(tr.sharp)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            rk = dict(rk)
            f = rk.pop("start_factor", None)
            x0 = xw if f is None else wiener_padded(yv, blur.kernel, BALANCES[wb] * f).clamp(0, 1)
            res = m.restore(yv, blur, x0=x0, **rk)
            emit(
                f"prior: {label}",
                "yes",
                res.x,
                m.n_parameters(),
                fit_s,
                (time.perf_counter() - t0) / len(yv),
            )

    if a.only in (None, "coupled"):
        for label, kw in RIDGE:
            if a.match and a.match not in label:
                continue
            t0 = time.perf_counter()
            x = ridge_ceiling(tr.blurred, tr.sharp, yv, **kw, seed=a.seed)
            emit(label, "no", x, 0, time.perf_counter() - t0, 0.0)

    head = (
        f"Validation people only ({len(yv)} images of {len(set(va.identities))} people, "
        f"{a.size}px RGB, Gaussian 25x25 σ=3, 8-bit input, seed {a.seed}; "
        f"{'quick budget' if a.quick else 'method budget'}). Timings on a shared 2-core CPU, "
        "1 thread.\n\n"
        "| variant | sees PSF | val PSNR | val SSIM | parameters | fit s | s / image |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(head + "\n".join(rows) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
