"""The Robustness page's tables, from the two sweeps' ``per_image.csv`` files in this folder.

``main/per_image.csv`` is the sweep of every row but EPLL over the whole grid; ``epll/`` is the
sweep of the blurred input and EPLL over Gaussian σ = 3 and the eight Levin kernels (fewer test
faces: EPLL costs minutes per cell). Every difference is paired over the same test faces of one
sweep, with a 95 % t-interval. Run from the repository root:

    python docs/results/robustness-128/make_tables.py

It prints the markdown tables and writes them to ``tables.md`` beside this script.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

HERE = Path(__file__).resolve().parent


def load(name: str) -> pd.DataFrame:
    return pd.read_csv(HERE / name / "per_image.csv")


def paired(df: pd.DataFrame, a: str, b: str, kernel: str, noise: float) -> tuple[float, float, int]:
    """Mean and 95 % half-width of PSNR(a) − PSNR(b) over the faces both scored."""
    cell = df[(df.kernel == kernel) & np.isclose(df.noise, noise)]
    pa = cell[cell.method == a].set_index("image").psnr
    pb = cell[cell.method == b].set_index("image").psnr
    d = (pa - pb).dropna()
    if len(d) < 2:
        raise SystemExit(f"no paired faces for {a} - {b} at {kernel}, noise {noise}")
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(half), len(d)


def mean_psnr(df: pd.DataFrame, method: str, kernel: str, noise: float) -> float:
    cell = df[(df.method == method) & (df.kernel == kernel) & np.isclose(df.noise, noise)]
    return float(cell.psnr.mean())


def fmt(d: tuple[float, float, int]) -> str:
    mean, half, _ = d
    mark = "**" if mean - half > 0 else ""
    return f"{mark}{mean:+.2f} ± {half:.2f}{mark}"


def levin_table(main: pd.DataFrame, epll: pd.DataFrame) -> tuple[list[str], dict[str, int]]:
    rows = [
        "| kernel | blurred input (dB) | Wiener − input | R–L − input | EPLL − input | "
        "dnmf-prior − input | dnmf-prior − Wiener | U-Net σ=3 − Wiener | generalist − Wiener |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    wins = {"all non-blind above input": 0, "dnmf-prior > Wiener": 0, "generalist > Wiener": 0}
    levin = sorted({k for k in main.kernel if k.startswith("levin09:")})
    for k in levin:
        gains = {
            "wiener": paired(main, "wiener", "identity", k, 0.01),
            "richardson-lucy": paired(main, "richardson-lucy", "identity", k, 0.01),
            "epll": paired(epll, "epll", "identity", k, 0.01),
            "dnmf-prior": paired(main, "dnmf-prior", "identity", k, 0.01),
        }
        prior_vs_w = paired(main, "dnmf-prior", "wiener", k, 0.01)
        unet_vs_w = paired(main, "convae-unet", "wiener", k, 0.01)
        gen_vs_w = paired(main, "convae-unet@generalist", "wiener", k, 0.01)
        wins["all non-blind above input"] += all(m - h > 0 for m, h, _ in gains.values())
        wins["dnmf-prior > Wiener"] += prior_vs_w[0] - prior_vs_w[1] > 0
        wins["generalist > Wiener"] += gen_vs_w[0] - gen_vs_w[1] > 0
        rows.append(
            f"| {k} | {mean_psnr(main, 'identity', k, 0.01):.2f} | "
            + " | ".join(fmt(g) for g in gains.values())
            + f" | {fmt(prior_vs_w)} | {fmt(unet_vs_w)} | {fmt(gen_vs_w)} |"
        )
    return rows, {f"{k} (of {len(levin)} kernels)": v for k, v in wins.items()}


def gaussian_table(main: pd.DataFrame) -> list[str]:
    methods = [m for m in dict.fromkeys(main.method) if m != "identity"]
    rows = [
        "| σ | noise | input (dB) | " + " | ".join(f"{m} − input" for m in methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    gauss = {k for k in main.kernel if k.startswith("gaussian:")}
    gauss = sorted(gauss, key=lambda k: float(k[9:]))
    for noise in sorted(set(main.noise)):
        for k in gauss:
            if not ((main.kernel == k) & np.isclose(main.noise, noise)).any():
                continue
            cells = [fmt(paired(main, m, "identity", k, noise)) for m in methods]
            rows.append(
                f"| {k[9:]} | {noise:g} | {mean_psnr(main, 'identity', k, noise):.2f} | "
                + " | ".join(cells)
                + " |"
            )
    return rows


def main() -> None:
    main_df, epll_df = load("main"), load("epll")
    levin, wins = levin_table(main_df, epll_df)
    spec = paired(main_df, "convae-unet@generalist", "convae-unet", "gaussian:3", 0.0)
    out = [
        "## The Levin kernels, noise 0.01",
        "",
        *levin,
        "",
        "Counts over the kernels (a difference counts when its 95 % interval lies above 0):",
        "",
        *(f"- {k}: {v}" for k, v in wins.items()),
        "",
        "## The generalist against the specialist at the specialist's own blur",
        "",
        f"Gaussian σ = 3, noise 0: generalist − specialist U-Net = {fmt(spec)} dB "
        f"({spec[2]} test faces).",
        "",
        "## Gaussian blurs: gain over the blurred input (dB)",
        "",
        *gaussian_table(main_df),
        "",
    ]
    text = "\n".join(out)
    (HERE / "tables.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
