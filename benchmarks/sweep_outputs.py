"""The files of a ``deblur-bench sweep`` folder, made from its cells (`benchmarks.sweep_cmd`).

- ``per_image.csv``: one row per method × degradation × test image (PSNR, SSIM, MSE), with
  its checksums in ``run.json`` (`benchmarks.run_tables.write_table`);
- ``summary.csv``: per method and degradation, the means with 95 % t-intervals, the paired
  gain over the blurred input and the paired difference to the baseline method;
- ``summary.md``: the same as matrices (methods × kernels, one per noise level);
- ``psnr_vs_sigma.png``, ``gain_heatmap.png``, ``examples_per_kernel.png``;
- ``run.json``: configuration, grid, methods, which cells were computed by this call.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.degradation import Degradation  # noqa: E402
from benchmarks.figures import to_hwc  # noqa: E402
from benchmarks.io_utils import atomic_write, write_json, write_text  # noqa: E402
from benchmarks.pairs import PairSet  # noqa: E402
from benchmarks.report import summarize  # noqa: E402
from benchmarks.run_dir import RunFolder  # noqa: E402
from benchmarks.run_info import git_commit, peak_rss_mib, versions  # noqa: E402
from benchmarks.run_tables import CHECKSUMS_KEY, TABLE, write_table  # noqa: E402
from benchmarks.sweep_plan import Fitted, SweepPlan, cell_path  # noqa: E402

if TYPE_CHECKING:
    from benchmarks.pipeline import Splits

FIGURES = ("psnr_vs_sigma.png", "gain_heatmap.png", "examples_per_kernel.png")
INPUT = "identity"  # the blurred input's row: the gains are paired against it


def per_image_table(plan: SweepPlan, cells: dict[tuple[Degradation, str], dict]) -> pd.DataFrame:
    """The long table of the grid's cells, in grid order then method order."""
    rows = []
    for d in plan.grid:
        for label in plan.labels:
            rec = cells[(d, label)]
            for r in rec["rows"]:
                rows.append(
                    {
                        "method": label,
                        "kernel": d.kernel.spec,
                        "noise": d.noise,
                        "degradation": d.label,
                        **r,
                        "seconds": rec["sec_per_image"],
                    }
                )
    return pd.DataFrame(rows)


def summary_table(plan: SweepPlan, per_image: pd.DataFrame) -> pd.DataFrame:
    """Per degradation (`benchmarks.report.summarize`): means, intervals, the paired gain over
    the input and the paired difference to ``plan.baseline``."""
    parts = []
    for d in plan.grid:
        sub = per_image[per_image["degradation"] == d.label]
        s = summarize(sub, baseline=INPUT, order=plan.labels)
        if plan.baseline != INPUT:
            b = summarize(sub, baseline=plan.baseline, order=plan.labels)
            cols = [
                c
                for c in b.columns
                if c.endswith(f"_vs_{plan.baseline}") or c.endswith(f"_vs_{plan.baseline}_ci95")
            ]
            s = s.join(b[cols])
        s.insert(1, "kernel", d.kernel.spec)
        s.insert(2, "noise", d.noise)
        s.insert(3, "degradation", d.label)
        parts.append(s.drop(columns=["fit_seconds"]))
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- markdown
def _kernels(plan: SweepPlan, noise: float) -> list[Degradation]:
    return [d for d in plan.grid if d.noise == noise]


def _noises(plan: SweepPlan) -> list[float]:
    return sorted({float(d.noise or 0.0) for d in plan.grid})


def _cell(v: float, h: float, digits: int = 2, signed: bool = False) -> str:
    if not np.isfinite(v):
        return "–"
    s = f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    return s if not np.isfinite(h) else f"{s} ± {h:.{digits}f}"


def _matrix(
    plan: SweepPlan,
    summary: pd.DataFrame,
    col: str,
    title: str,
    signed: bool,
    skip: str | None = None,
    digits: int = 2,
) -> str:
    """One markdown table per noise level: methods × kernels, ``col`` ± its interval."""
    ci = col[: -len("_mean")] + "_ci95" if col.endswith("_mean") else col + "_ci95"
    out = []
    for noise in _noises(plan):
        ds = _kernels(plan, noise)
        head = ["method", *[d.kernel.spec for d in ds]]
        lines = [
            f"### {title}, noise {noise:g}",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for label in plan.labels:
            if label == skip:
                continue
            cells = []
            for d in ds:
                r = summary[(summary["method"] == label) & (summary["degradation"] == d.label)]
                v = float(r[col].iloc[0]) if len(r) and col in r else math.nan
                h = float(r[ci].iloc[0]) if len(r) and ci in r else math.nan
                cells.append(_cell(v, h, digits, signed=signed))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _rows(plan: SweepPlan, fitted: dict[str, Fitted]) -> str:
    """Where each learned row comes from: fitted here (on what) or loaded (from where)."""
    lines = []
    for label in plan.labels:
        if not plan.cls(label).learns:
            continue
        rec = fitted[label].record
        trained = (rec.get("info") or {}).get("trained_on")
        where = f"loaded from `{rec['loaded_from']}`" if rec.get("loaded_from") else "fitted here"
        if label in plan.families:
            trained = plan.families[label].describe()
        lines.append(f"- `{label}`: {where}" + (f", trained on {trained}" if trained else ""))
    return ("Learned rows:\n\n" + "\n".join(lines) + "\n\n") if lines else ""


def markdown(
    plan: SweepPlan,
    splits: Splits,
    n_tune: int,
    test: PairSet,
    summary: pd.DataFrame,
    fitted: dict[str, Fitted],
) -> str:
    p, args = plan.preset, plan.args
    blind = [lb for lb in plan.labels if not plan.cls(lb).sees_psf and lb != INPUT]
    tuned = [lb for lb in plan.labels if plan.cls(lb).sees_psf]
    header = (
        f"# deblur-bench sweep — preset {p.name}, {p.size}px {'gray' if p.gray else 'RGB'}, "
        f"seed {args.seed}\n\n"
        f"Data: {splits.source}; test: {len(test)} images of {len(set(test.identities))} "
        f"held-out identities. {len(plan.grid)} degradations × {len(plan.labels)} methods. "
        f"Learned methods fitted once on the training people under the base degradation "
        f"({plan.base.describe()}). Non-blind methods ({', '.join(tuned) or 'none'}) re-tuned "
        f"for each degradation on {n_tune} validation images degraded by it (the rule "
        f"`run` uses for its one degradation); blind methods ({', '.join(blind) or 'none'}) "
        f"restore as fitted. Means ± 95% t-interval over test images; differences paired per "
        f"image.\n\n"
    )
    base = plan.baseline
    parts = [
        header + _rows(plan, fitted),
        "## PSNR (dB)\n\n" + _matrix(plan, summary, "psnr_mean", "PSNR (dB)", False),
        "## PSNR gain over the blurred input (dB)\n\n"
        + _matrix(plan, summary, f"dpsnr_vs_{INPUT}", "ΔPSNR vs the input", True, skip=INPUT),
    ]
    if base != INPUT:
        parts.append(
            f"## PSNR difference to {base} (dB)\n\n"
            + _matrix(plan, summary, f"dpsnr_vs_{base}", f"ΔPSNR vs {base}", True, skip=base)
        )
    parts.append("## SSIM\n\n" + _matrix(plan, summary, "ssim_mean", "SSIM", False, digits=4))
    return "\n".join(parts)


# --------------------------------------------------------------------------- figures
def _save(fig: plt.Figure, path: Path) -> Path:
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return path


def psnr_vs_sigma(plan: SweepPlan, summary: pd.DataFrame, path: Path) -> Path | None:
    """PSNR against the Gaussian sigma, one line per method with its 95 % interval, one panel
    per noise level (isotropic Gaussian cells only)."""
    gauss = [d for d in plan.grid if d.kernel.isotropic]
    if not gauss:
        return None
    noises = sorted({float(d.noise or 0.0) for d in gauss})
    fig, axes = plt.subplots(1, len(noises), figsize=(5.2 * len(noises), 4.0), squeeze=False)
    for ax, noise in zip(axes[0], noises):
        ds = sorted(
            (d for d in gauss if d.noise == noise), key=lambda d: float(d.kernel.sigma or 0)
        )
        xs = [float(d.kernel.sigma or 0) for d in ds]
        for label in plan.labels:
            rows = [
                summary[(summary.method == label) & (summary.degradation == d.label)] for d in ds
            ]
            ys = [float(r["psnr_mean"].iloc[0]) for r in rows]
            hs = [float(r["psnr_ci95"].iloc[0]) for r in rows]
            style = {"color": "k", "ls": "--"} if label == INPUT else {}
            ax.errorbar(
                xs,
                ys,
                yerr=hs,
                marker="o",
                ms=3,
                capsize=3,
                lw=1.2,
                label="blurred input" if label == INPUT else label,
                **style,
            )
        ax.set_xlabel("Gaussian blur sigma (px)")
        ax.set_ylabel("PSNR (dB), mean ± 95% CI")
        ax.set_title(f"noise {noise:g}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"PSNR vs Gaussian blur ({plan.preset.name} preset)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def gain_heatmap(plan: SweepPlan, summary: pd.DataFrame, path: Path) -> Path:
    """Methods × kernels, the PSNR gain over the blurred input (paired mean), one panel per
    noise level."""
    labels = [lb for lb in plan.labels if lb != INPUT]
    noises = _noises(plan)
    width = max(len(_kernels(plan, n)) for n in noises)
    fig, axes = plt.subplots(
        len(noises),
        1,
        figsize=(1.0 * width + 3.0, 0.45 * len(labels) * len(noises) + 1.4 * len(noises)),
        squeeze=False,
    )
    col = f"dpsnr_vs_{INPUT}"
    allv = summary[summary.method != INPUT][col].to_numpy(dtype=float)
    lim = float(np.nanmax(np.abs(allv))) if allv.size and np.isfinite(allv).any() else 1.0
    for ax, noise in zip(axes[:, 0], noises):
        ds = _kernels(plan, noise)
        grid = np.full((len(labels), len(ds)), np.nan)
        for i, label in enumerate(labels):
            for j, d in enumerate(ds):
                r = summary[(summary.method == label) & (summary.degradation == d.label)]
                grid[i, j] = float(r[col].iloc[0]) if len(r) else np.nan
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                dark = abs(v) > 0.6 * lim  # white text on the saturated cells
                ax.text(
                    j,
                    i,
                    f"{v:+.1f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
        ax.set_xticks(
            range(len(ds)), [d.kernel.spec for d in ds], rotation=35, ha="right", fontsize=7
        )
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(f"PSNR gain over the blurred input (dB), noise {noise:g}", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return _save(fig, path)


def examples_per_kernel(
    plan: SweepPlan, folder: Path, test: PairSet, example: int, cells: dict, path: Path
) -> Path:
    """One test face per kernel (rows; its first noise level in the grid): the kernel, the
    blurred input, every method's restoration, the sharp face; titles give the PSNR."""
    seen: dict[str, Degradation] = {}
    for d in plan.grid:
        seen.setdefault(d.kernel.spec, d)
    rows = list(seen.values())
    cols = ["kernel", *plan.labels, "sharp"]
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(1.45 * len(cols), 1.55 * len(rows)), squeeze=False
    )
    for i, d in enumerate(rows):
        for j, name in enumerate(cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if name == "kernel":
                k = d.kernel.tensor().numpy()
                ax.imshow(k / k.max(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_ylabel(f"{d.kernel.spec}\nnoise {d.noise:g}", fontsize=7)
            elif name == "sharp":
                img = to_hwc(test.sharp[example])
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            else:
                png = cell_path(folder, name, d).with_suffix(".png")
                with Image.open(png) as im:
                    img = np.asarray(im, dtype=np.float32) / 255.0
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
                psnr = cells[(d, name)]["rows"][example]["psnr"]
                ax.set_xlabel(f"{psnr:.1f} dB", fontsize=7)
            if i == 0:
                ax.set_title("blurred input" if name == INPUT else name, fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- the folder
def write_sweep(
    folder: RunFolder,
    plan: SweepPlan,
    splits: Splits,
    tune: PairSet,
    test: PairSet,
    fitted: dict[str, Fitted],
    cells: dict[tuple[Degradation, str], dict],
    computed: list[str],
    timings: dict[str, float],
) -> dict[str, Any]:
    """Write the tables, figures and ``run.json`` from the cells, mark the folder finished,
    print the summary; returns ``{"out", "summary", "per_image", "record"}``."""
    out = folder.path
    per_image = per_image_table(plan, cells)
    summary = summary_table(plan, per_image)
    md = markdown(plan, splits, len(tune), test, summary, fitted)
    write_text(out / "summary.md", md)
    atomic_write(out / "summary.csv", lambda p: summary.to_csv(p, index=False))
    sums = write_table(out, per_image)
    example = len(test) // 2
    figures = [
        psnr_vs_sigma(plan, summary, out / FIGURES[0]),
        gain_heatmap(plan, summary, out / FIGURES[1]),
        examples_per_kernel(plan, out, test, example, cells, out / FIGURES[2]),
    ]
    device = plan.device
    record = {
        "format_version": 1,
        "kind": "sweep",
        "command": sys.argv,
        "config": {k: v for k, v in vars(plan.args).items() if k != "func"},
        "preset": plan.preset.to_dict(),
        "base_degradation": plan.base.to_json(),
        "grid": [d.to_json() for d in plan.grid],
        "methods": {lb: {**plan.method_record(lb), **fitted[lb].record} for lb in plan.labels},
        "baseline": plan.baseline,
        "tune_images": [tune.names[i] for i in range(len(tune))],
        "test_images": [test.names[i] for i in range(len(test))],
        "data": {"source": splits.source, **splits.meta},
        "cells": {
            "total": len(cells),
            "computed_now": computed,
            "reused": len(cells) - len(computed),
        },
        "versions": versions(),
        "git_commit": git_commit(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "seeds": {"split": plan.args.seed, "cells": "sha256(seed/degradation/part)"},
        "timings": {
            **timings,
            "fit_seconds": {lb: fitted[lb].record.get("fit_seconds") for lb in plan.labels},
        },
        "memory": {"peak_rss_mib": peak_rss_mib()},
        "figures": [str(p.relative_to(out)) for p in figures if p is not None],
        "example_image": test.names[example],
    }
    record = folder.relocate(json_safe(record))
    record[CHECKSUMS_KEY] = {TABLE: sums}
    write_json(out / "run.json", record)
    final = folder.commit()
    print(md, flush=True)
    if not plan.quiet:
        print(f"sweep written to {final}", file=sys.stderr, flush=True)
    return {"out": final, "summary": summary, "per_image": per_image, "record": record}


def json_safe(obj: Any) -> Any:
    """``obj`` with dataclasses and paths as JSON types."""
    if hasattr(obj, "__dataclass_fields__"):
        return json_safe(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
