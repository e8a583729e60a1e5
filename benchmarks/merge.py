"""``deblur-bench report``: merge finished run folders into one table."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.errors import UserError
from benchmarks.report import METRIC_COLS, summarize, to_markdown

DEFAULT_BASELINE = "identity"
REQUIRED_COLUMNS = ("method", "image", *METRIC_COLS)
REPORT_TITLE = "# Merged report of "  # how every report file starts (so it can be replaced)


def read_per_image(run_dir: Path) -> pd.DataFrame:
    """A run's ``per_image.csv``, checked to be a per-image result table."""
    csv = run_dir / "per_image.csv"
    if not csv.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished run folder (no per_image.csv)")
    try:
        df = pd.read_csv(csv)
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # empty, binary, malformed
        raise UserError(f"cannot read {csv}: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(
            f"{csv} is not a per-image result table: no column(s) {', '.join(missing)} "
            f"(it has {', '.join(map(str, df.columns)) or 'none'})"
        )
    text = [c for c in METRIC_COLS if not pd.api.types.is_numeric_dtype(df[c])]
    if text:
        raise UserError(f"{csv}: column(s) {', '.join(text)} hold non-numbers")
    return df


def read_fit_seconds(run_dir: Path) -> dict[str, Any]:
    """``timings.fit_seconds`` of a run's ``run.json``; {} with a warning when absent."""
    rec = run_dir / "run.json"
    if not rec.is_file():
        return {}
    try:
        data = json.loads(rec.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot read {rec}: {exc}") from None
    timings = data.get("timings") if isinstance(data, dict) else None
    fits = timings.get("fit_seconds") if isinstance(timings, dict) else None
    if not isinstance(fits, dict):
        warnings.warn(
            f"{rec} has no timings.fit_seconds; the fit seconds of {run_dir.name} are left out",
            stacklevel=3,
        )
        return {}
    return fits


def check_report_target(path: str | Path) -> None:
    """``report --out``: a new file, or a report this command wrote before (replaced)."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"--out {p} is a folder; give the report's file name")
    if p.exists():
        with open(p, "rb") as f:
            head = f.read(len(REPORT_TITLE.encode()))
        if head != REPORT_TITLE.encode():
            raise FileExistsError(
                f"--out {p} exists and is not a report written by deblur-bench report; "
                f"choose another file name"
            )


def merge_runs(run_dirs: list[str | Path], baseline: str | None = None) -> str:
    """Pool the per-image rows of several runs; paired differences are taken within a run.

    ``baseline``: the method the paired differences are taken against; ``None`` uses
    ``identity`` when the runs have it (else no difference columns).  A named baseline that
    none of the runs holds is an error that lists the methods present.
    """
    frames: list[pd.DataFrame] = []
    fits: dict[str, list[float]] = {}
    labels: list[str] = []
    for d in map(Path, run_dirs):
        df = read_per_image(d)
        label = d.name
        if label in labels:
            label = f"{label}#{len(labels)}"
        labels.append(label)
        df.insert(0, "run", label)
        frames.append(df)
        for m, s in read_fit_seconds(d).items():
            fits.setdefault(m, []).append(s)
    per_image = pd.concat(frames, ignore_index=True)
    order = list(dict.fromkeys(per_image["method"]))
    if baseline is not None and baseline not in order:
        raise UserError(
            f"--baseline {baseline!r} is not a method of these runs; they hold: {', '.join(order)}"
        )
    baseline = baseline or DEFAULT_BASELINE
    fit_mean = {m: sum(v) / len(v) for m, v in fits.items()}
    summary = summarize(per_image, fit_mean, baseline=baseline, order=order)
    per_run = per_image.groupby(["method", "run"], sort=False)["psnr"].mean().unstack("run")
    lines = [
        f"{REPORT_TITLE}{len(labels)} runs: {', '.join(labels)}",
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
