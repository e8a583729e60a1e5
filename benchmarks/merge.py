"""``deblur-bench report``: merge finished run folders into one table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from benchmarks.report import summarize, to_markdown


def merge_runs(run_dirs: list[str | Path], baseline: str = "identity") -> str:
    """Pool the per-image rows of several runs; paired differences are taken within a run."""
    frames, fits, labels = [], {}, []
    for d in map(Path, run_dirs):
        csv = d / "per_image.csv"
        if not csv.is_file():
            raise FileNotFoundError(f"{d} is not a finished run folder (no per_image.csv)")
        df = pd.read_csv(csv)
        label = d.name
        if label in labels:
            label = f"{label}#{len(labels)}"
        labels.append(label)
        df.insert(0, "run", label)
        frames.append(df)
        rec = d / "run.json"
        if rec.is_file():
            for m, s in json.loads(rec.read_text())["timings"]["fit_seconds"].items():
                fits.setdefault(m, []).append(s)
    per_image = pd.concat(frames, ignore_index=True)
    order = list(dict.fromkeys(per_image["method"]))
    fit_mean = {m: sum(v) / len(v) for m, v in fits.items()}
    summary = summarize(per_image, fit_mean, baseline=baseline, order=order)
    per_run = per_image.groupby(["method", "run"], sort=False)["psnr"].mean().unstack("run")
    lines = [
        f"# Merged report of {len(labels)} runs: {', '.join(labels)}",
        "",
        "Pooled over all test images of all runs; differences are paired per image "
        "within each run.",
        "",
        to_markdown(summary, baseline=baseline),
        "Mean PSNR (dB) per run:",
        "",
        "| method | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for m in order:
        vals = [
            f"{per_run.loc[m, r]:.2f}"
            if r in per_run.columns and pd.notna(per_run.loc[m, r])
            else "–"
            for r in labels
        ]
        lines.append(f"| {m} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"
