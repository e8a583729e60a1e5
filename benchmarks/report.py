"""Tables from per-image results: means with 95% t-intervals and paired differences.

Per-image values are the source of truth; every reduction happens here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from benchmarks.metrics import t_interval

METRIC_COLS = ("psnr", "ssim", "mse")


def summarize(
    per_image: pd.DataFrame,
    fit_seconds: dict[str, float] | None = None,
    baseline: str = "identity",
    order: Iterable[str] | None = None,
) -> pd.DataFrame:
    """One row per method: mean, 95% CI half-width and std of each metric, seconds per image,
    fit seconds, and the paired difference to ``baseline`` on the same images."""
    fit_seconds = fit_seconds or {}
    methods = list(order) if order is not None else list(dict.fromkeys(per_image["method"]))
    key = ["run", "image"] if "run" in per_image.columns else ["image"]
    base = (
        per_image[per_image["method"] == baseline].set_index(key)
        if baseline in set(per_image["method"])
        else None
    )
    rows = []
    for m in methods:
        d = per_image[per_image["method"] == m]
        if d.empty:
            continue
        row: dict[str, object] = {"method": m, "n_images": len(d)}
        for col in METRIC_COLS:
            mean, half = t_interval(d[col])
            row[f"{col}_mean"], row[f"{col}_ci95"] = mean, half
            row[f"{col}_std"] = float(d[col].std(ddof=1)) if len(d) > 1 else math.nan
        if base is not None:
            joined = d.set_index(key).join(  # pandas 2 and 3: no rsuffix/suffixes needed
                base[list(METRIC_COLS)].add_suffix("_base"), how="inner"
            )
            for col in ("psnr", "ssim"):
                mean, half = t_interval(joined[col] - joined[f"{col}_base"])
                row[f"d{col}_vs_{baseline}"], row[f"d{col}_vs_{baseline}_ci95"] = mean, half
        row["sec_per_image"] = float(d["seconds"].mean()) if "seconds" in d else math.nan
        row["fit_seconds"] = float(fit_seconds.get(m, math.nan))
        rows.append(row)
    return pd.DataFrame(rows)


def _pm(mean: float, half: float, digits: int) -> str:
    if not np.isfinite(mean):
        return "–"
    if not np.isfinite(half):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def _signed(mean: float, half: float, digits: int) -> str:
    if not np.isfinite(mean):
        return "–"
    s = f"{mean:+.{digits}f}"
    return s if not np.isfinite(half) else f"{s} ± {half:.{digits}f}"


def _secs(v: float) -> str:
    if not np.isfinite(v):
        return "–"
    return f"{v:.4f}" if v < 0.1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def to_markdown(summary: pd.DataFrame, baseline: str = "identity") -> str:
    """The summary as a markdown table (means ± 95% CI half-widths)."""
    dp, ds = f"dpsnr_vs_{baseline}", f"dssim_vs_{baseline}"
    head = [
        "method",
        "n",
        "PSNR (dB)",
        "SSIM",
        "MSE",
        f"ΔPSNR vs {baseline}",
        f"ΔSSIM vs {baseline}",
        "s / image",
        "fit s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary.to_dict("records"):
        cells = [
            str(r["method"]),
            str(r["n_images"]),
            _pm(r["psnr_mean"], r["psnr_ci95"], 2),
            _pm(r["ssim_mean"], r["ssim_ci95"], 4),
            _pm(r["mse_mean"], r["mse_ci95"], 5),
            _signed(r.get(dp, math.nan), r.get(f"{dp}_ci95", math.nan), 2),
            _signed(r.get(ds, math.nan), r.get(f"{ds}_ci95", math.nan), 4),
            _secs(r["sec_per_image"]),
            _secs(r["fit_seconds"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
