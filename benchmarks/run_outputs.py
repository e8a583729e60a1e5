"""The files of a ``deblur-bench run`` folder: ``summary.md``/``.csv``, ``per_image.csv``,
``examples.png``, ``run.json`` with the checksums of ``per_image.csv`` (`benchmarks.run_tables`;
``report`` checks them), and, with ``--save-images``, the restored test images.

Every file is written atomically into the run's folder, which `RunFolder` swaps into
place only when all of them are complete.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from benchmarks.figures import examples_figure, save_png
from benchmarks.io_utils import atomic_write, write_json, write_text
from benchmarks.methods import get_method
from benchmarks.pairs import PairSet
from benchmarks.report import summarize, to_markdown
from benchmarks.run_dir import RunFolder
from benchmarks.run_info import git_commit, peak_rss_mib, versions
from benchmarks.run_plan import MethodRun, RunPlan
from benchmarks.run_tables import CHECKSUMS_KEY, TABLE, write_table

if TYPE_CHECKING:
    from benchmarks.pipeline import Splits

FORMAT_VERSION = 1
N_EXAMPLES = 6


class Examples:
    """The rows of ``examples.png``: sharp, blurred, then each method, on a few test images
    spread over the test set (so several people are shown)."""

    def __init__(self, test: PairSet) -> None:
        n = len(test)
        self.idx = torch.linspace(0, n - 1, min(N_EXAMPLES, n)).round().long()
        self.rows: dict[str, torch.Tensor] = {
            "sharp": test.sharp[self.idx],
            "blurred (input)": test.blurred[self.idx],
        }

    def add(self, name: str, x_hat: torch.Tensor) -> None:
        if name != "identity":  # the "blurred (input)" row already shows it
            self.rows[name] = x_hat[self.idx]

    def write(self, path: Path, per_image: pd.DataFrame, names: list[str]) -> None:
        """The figure, each image titled with its PSNR."""
        psnrs = {
            n: [per_image[per_image.method == n]["psnr"].iloc[int(i)] for i in self.idx]
            for n in names
        }
        if "identity" in psnrs:
            psnrs["blurred (input)"] = psnrs.pop("identity")
        examples_figure(path, self.rows, psnrs)


def save_restorations(folder: Path, x_hat: torch.Tensor, names: list[str]) -> None:
    """``--save-images``: each restored test image as ``<folder>/<stem>.png``."""
    for img, name in zip(x_hat, names):
        save_png(folder / (Path(name).stem + ".png"), img)


def _method_notes(plan: RunPlan) -> str:
    """What the run's options change in its methods' rows, each sentence once."""
    notes: list[str] = []
    for name in plan.names:
        for note in get_method(name).run_notes(plan.options):
            if note not in notes:
                notes.append(note)
    return "".join(" " + n for n in notes)


def _header(plan: RunPlan, splits: Splits) -> str:
    preset, cfg = plan.preset, plan.cfg
    return (
        f"# deblur-bench run — preset {preset.name}, {preset.size}px "
        f"{'gray' if preset.gray else 'RGB'}, seed {cfg.seed}\n\n"
        f"Data: {splits.source}; test: {len(splits.test)} images of "
        f"{len(splits.meta['test_ids'])} held-out identities. Degradation: "
        f"{plan.degradation.describe()}. Means ± 95% t-interval over test images."
        f"{_method_notes(plan)}"
        f"\n\n"
    )


def _training_mse_table(infos: dict[str, Any]) -> str:
    """The learned rows' last-epoch training MSE next to the held-out table.

    This is how the source measured its ConvAE: the mean training loss (MSE) over the
    batches of its last epoch, on images it trained on, not on held-out people.
    """
    rows = [(n, i) for n, i in infos.items() if i.get("train_mse_last_epoch") is not None]
    if not rows:
        return ""
    lines = [
        "",
        "Training-set MSE of the last epoch (mean over its batches, on the training images; "
        "the figure the source reported) next to the held-out MSE above:",
        "",
        "| method | epochs trained | training MSE, last epoch | weights scored: epoch |",
        "|---|---|---|---|",
    ]
    for name, info in rows:
        lines.append(
            f"| {name} | {info.get('epochs_trained')} | {info['train_mse_last_epoch']:.5f} "
            f"| {info.get('weights_epoch')} |"
        )
    return "\n".join(lines) + "\n"


def _record(
    plan: RunPlan, splits: Splits, runs: list[MethodRun], out: Path, data_seconds: float
) -> dict[str, Any]:
    """``run.json``: the command, config, preset, degradation (whole, and the blur operator's
    fields under ``blur`` as earlier runs recorded them), split, versions, timings, memory."""
    from dataclasses import asdict

    cfg, device = plan.cfg, plan.device
    figures = [str(p.relative_to(out)) for r in runs for p in r.figures]
    return {
        "format_version": FORMAT_VERSION,
        "command": sys.argv,
        "config": asdict(cfg),
        "preset": plan.preset.to_dict(),
        "degradation": plan.degradation.to_json(),
        "blur": plan.degradation.blur_fields(),
        "data": {"source": splits.source, **splits.meta},
        "versions": versions(),
        "git_commit": git_commit(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "seeds": {"split": cfg.seed, "noise": cfg.seed + 1, "torch": cfg.seed},
        "timings": {
            "data_seconds": data_seconds,
            "fit_seconds": {r.name: r.fit_seconds for r in runs},
        },
        "memory": {
            "peak_rss_mib": peak_rss_mib(),
            "cuda_max_allocated_mib": (
                torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
            ),
        },
        "methods": {r.name: r.info for r in runs},
        "figures": ["examples.png", *figures],
    }


def write_run(
    folder: RunFolder,
    plan: RunPlan,
    splits: Splits,
    runs: list[MethodRun],
    rows: list[dict[str, Any]],
    examples: Examples,
    data_seconds: float,
) -> dict[str, Any]:
    """Write the tables, the figure and ``run.json``, put the folder in place, print the
    table; returns ``{"out", "summary", "per_image", "record"}``."""
    out = folder.path
    per_image = pd.DataFrame(rows)
    summary = summarize(per_image, {r.name: r.fit_seconds for r in runs}, order=plan.names)
    header = _header(plan, splits)
    md = to_markdown(summary) + _training_mse_table({r.name: r.info for r in runs})
    write_text(out / "summary.md", header + md)
    atomic_write(out / "summary.csv", lambda p: summary.to_csv(p, index=False))
    sums = write_table(out, per_image)  # per_image.csv, and checksums of its exact bytes
    examples.write(out / "examples.png", per_image, plan.names)
    record = folder.relocate(_record(plan, splits, runs, out, data_seconds))
    record[CHECKSUMS_KEY] = {TABLE: sums}  # `report` refuses a table changed after the run
    write_json(out / "run.json", record)  # paths into the staging folder name the run folder
    final = folder.commit()
    print(header + md, flush=True)
    if not plan.cfg.quiet:
        print(f"results written to {final}", file=sys.stderr, flush=True)
    return {"out": final, "summary": summary, "per_image": per_image, "record": record}
