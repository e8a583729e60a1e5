"""The equal-budget table of the unfolded page: rows of two runs on the same test faces, paired.

``per_image.csv`` here is the run of the three trained rows (``dnmf-unfolded``,
``dnmf-prior-unfolded``, ``convae-unet``, loaded from their 15-minute checkpoints) with the
blurred input and Wiener; ``docs/results/deblur-prior-128/per_image.csv`` holds EPLL,
``dnmf-coupled`` and ``dnmf-prior`` of the same protocol (128 px, all 750 faces, seed 0, the
same ten test people, Gaussian σ = 3). The two runs degrade every test face identically, which
this script checks (the blurred input's PSNR per face must agree to 1e-9 dB) before it pairs
faces by name. Run from the repository root:

    python docs/results/unfolded/all128/pair.py

It prints the table and the paired differences and writes them to ``table.md`` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

HERE = Path(__file__).resolve().parent
OTHER = HERE.parents[1] / "deblur-prior-128"
ROWS = [
    "identity",
    "wiener",
    "epll",
    "dnmf-coupled",
    "dnmf-prior",
    "dnmf-unfolded",
    "dnmf-prior-unfolded",
    "convae-unet",
]
PAIRS = [
    ("dnmf-unfolded", "dnmf-coupled"),
    ("dnmf-unfolded", "convae-unet"),
    ("dnmf-prior-unfolded", "dnmf-prior"),
    ("dnmf-prior-unfolded", "epll"),
    ("dnmf-prior-unfolded", "convae-unet"),
    ("convae-unet", "wiener"),
]


def table(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "per_image.csv").pivot(index="image", columns="method")


def parameters(folder: Path) -> dict[str, int]:
    run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    out = {}
    for name, rec in run.get("methods", {}).items():
        info = rec.get("info", rec) if isinstance(rec, dict) else {}
        n = info.get("parameters", info.get("n_parameters"))
        if isinstance(n, int):
            out[name] = n
    return out


def interval(d: pd.Series) -> str:
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return f"{d.mean():+.2f} ± {half:.2f}"


def main() -> None:
    here, other = table(HERE), table(OTHER)
    same = here.index.equals(other.index) or set(here.index) == set(other.index)
    if not same:
        raise SystemExit("the two runs scored different test faces")
    other = other.loc[here.index]
    gap = (here["psnr"]["identity"] - other["psnr"]["identity"]).abs().max()
    if gap > 1e-9:
        raise SystemExit(f"the blurred inputs differ between the runs (up to {gap:.3g} dB)")
    psnr = pd.concat([here["psnr"], other["psnr"].drop(columns=["identity", "wiener"])], axis=1)
    ssim = pd.concat([here["ssim"], other["ssim"].drop(columns=["identity", "wiener"])], axis=1)
    n_params = {**parameters(OTHER), **parameters(HERE)}
    lines = [
        f"{len(psnr)} test faces, 128 px RGB; mean ± 95 % t-interval",
        "",
        "| method | PSNR (dB) | SSIM | parameters |",
        "|---|---|---|---|",
    ]
    for m in ROWS:
        p, s = psnr[m], ssim[m]
        hp = stats.t.ppf(0.975, len(p) - 1) * p.std(ddof=1) / np.sqrt(len(p))
        hs = stats.t.ppf(0.975, len(s) - 1) * s.std(ddof=1) / np.sqrt(len(s))
        count = f"{n_params[m]:,}" if m in n_params else "–"
        lines.append(f"| {m} | {p.mean():.2f} ± {hp:.2f} | {s.mean():.4f} ± {hs:.4f} | {count} |")
    lines += ["", "| paired difference (PSNR, dB) | mean ± 95 % t-interval |", "|---|---|"]
    for a, b in PAIRS:
        lines.append(f"| {a} − {b} | {interval(psnr[a] - psnr[b])} |")
    text = "\n".join(lines) + "\n"
    (HERE / "table.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
