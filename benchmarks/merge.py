"""``deblur-bench report``: merge finished run folders into one table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.errors import UserError
from benchmarks.report import summarize, to_markdown
from benchmarks.run_tables import read_run

DEFAULT_BASELINE = "identity"
REPORT_TITLE = "# Merged report of "  # how every report file starts (so it can be replaced)


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
    none of the runs holds is an error that lists the methods present.  Every run is read by
    `benchmarks.run_tables.read_run`, so a damaged ``per_image.csv`` (or one that disagrees with
    its ``run.json``) is an error naming the file and the row before anything is computed.
    """
    frames: list[pd.DataFrame] = []
    fits: dict[str, list[float]] = {}
    labels: list[str] = []
    for d in map(Path, run_dirs):
        run = read_run(d)  # every run checked before anything is computed or written
        label = d.name
        if label in labels:
            label = f"{label}#{len(labels)}"
        labels.append(label)
        run.per_image.insert(0, "run", label)
        frames.append(run.per_image)
        for m, s in run.fit_seconds.items():
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
