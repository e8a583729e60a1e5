"""Seconds per face of the two patch priors (and Wiener), interleaved in one process.

Loads the models a ``deblur-bench run`` fitted (the dictionaries cached in its
``methods/<name>/`` folders), restores the same validation faces with each in turn —
rounds rotate the order, so a busy moment hits every method alike — and writes the median
seconds per face and the ratios to ``--out`` (``timing.json``, ``timing.md``)::

    python -m experiments.prior_timing --run-dir RUN --data-dir benchmarks/data/gt_faces \\
        --threads 2 --faces 8 --rounds 3 --out docs/results/deblur-prior-128/timing

Only the validation people are loaded (the same split as the run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.blur import BlurOperator
from benchmarks.classical import wiener_padded
from benchmarks.gmm_prior import EPLL
from benchmarks.io_utils import write_json, write_text
from benchmarks.pipeline import prepare_splits
from benchmarks.presets import get_preset
from dnmf.deblur.prior import DeepNMFPrior


def _model(run: Path, name: str, cls: Any) -> Any:
    """The run's fitted model (its cache file), with the weight the run chose on validation."""
    files = sorted((run / "methods" / name).glob(f"{name}-dictionary-*.npz"))
    if not files:
        raise SystemExit(f"no fitted {name} model in {run / 'methods' / name}")
    model = cls.load(files[-1])
    info = json.loads((run / "run.json").read_text()).get("methods", {}).get(name, {})
    weight = info.get("params", {}).get("weight")
    if weight is not None:
        model.weight = float(weight)
    return model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", required=True, type=Path)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--faces", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    blur = BlurOperator.gaussian(25, 3.0)
    preset = get_preset("fast").with_overrides(size=a.size, max_images=750)
    val = prepare_splits(preset, a.data_dir, seed=0, blur=blur).val
    y = val.blurred[: a.faces]
    methods = {
        "wiener": lambda: wiener_padded(y, blur.kernel, 3e-4),
        "epll": _model(a.run_dir, "epll", EPLL).restore,
        "dnmf-prior": _model(a.run_dir, "dnmf-prior", DeepNMFPrior).restore,
    }
    calls = {
        "wiener": methods["wiener"],
        "epll": lambda: methods["epll"](y, blur),
        "dnmf-prior": lambda: methods["dnmf-prior"](y, blur),
    }
    names = list(calls)
    times: dict[str, list[float]] = {n: [] for n in names}
    calls["wiener"]()  # warm-up (FFT plans, thread pools)
    for r in range(a.rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
            time.sleep(0.25)
            t0 = time.perf_counter()
            calls[n]()
            times[n].append((time.perf_counter() - t0) / len(y))
    med = {n: statistics.median(v) for n, v in times.items()}
    result = {
        "seconds_per_face": med,
        "all_rounds": times,
        "ratio_dnmf_prior_to_epll": med["dnmf-prior"] / med["epll"],
        "threads": a.threads,
        "faces": len(y),
        "rounds": a.rounds,
        "load_average_at_end": os.getloadavg(),
        "cpu_count": os.cpu_count(),
    }
    write_json(a.out / "timing.json", result)
    rows = "".join(f"| {n} | {med[n]:.3f} | {min(times[n]):.3f} |\n" for n in names)
    write_text(
        a.out / "timing.md",
        f"{len(y)} validation faces, {a.size} px RGB, {a.threads} threads, {a.rounds} rotated "
        f"rounds; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.\n\n"
        "| method | median s / face | fastest round s / face |\n|---|---|---|\n" + rows,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
