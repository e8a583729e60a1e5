"""``python -m perf.subnormals``: what subnormal factor entries cost, and what flushing reaches.

1. ``torch.set_flush_denormal(True)`` with several intra-op threads: the share of a parallel
   elementwise result and of a matrix product that comes out flushed (only the calling
   thread's floating-point state is set).
2. The products of one β = 2 multiplicative sweep on the face-sized shapes (4096 × 750,
   rank 64: ``V Hᵀ``, ``Wᵀ V``, ``H Hᵀ``, ``W (H Hᵀ)``, the ratio), timed with a share of the
   factor entries subnormal, with the same entries raised to dnmf's floor
   (``dnmf._solvers.fpstate.raise_tiny_``), and with none, in interleaved rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from dnmf._solvers.fpstate import raise_tiny_
from perf._timing import environment


def flush_reach(threads: int) -> dict[str, float]:
    """Fractions of a parallel result flushed to zero with ``set_flush_denormal(True)``."""
    torch.set_num_threads(threads)
    tiny = torch.finfo(torch.float32).tiny
    x = torch.full((1 << 20,), tiny / 16)
    A = torch.full((512, 512), 1e-20)
    try:
        torch.set_flush_denormal(True)
        elem = float((x * 1.0 == 0).float().mean())
        mat = float(((A @ A) == 0).float().mean())
    finally:
        torch.set_flush_denormal(False)
    return {"elementwise_flushed": elem, "matmul_flushed": mat}


def sweep_cost(
    threads: int,
    fractions: list[float],
    rounds: int,
    seed: int = 0,
    shape: tuple[int, int, int] = (4096, 750, 64),
) -> list[dict]:
    """Median ms of one sweep's products with ``fraction`` of the factor entries subnormal,
    floored, or clean (interleaved, rotated rounds)."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    m, n, r = shape
    V = torch.rand(m, n, generator=g)
    W, H = torch.rand(m, r, generator=g) * 0.1, torch.rand(r, n, generator=g) * 0.1

    def step(W, H):
        A, B, G = V @ H.T, W.T @ V, H @ H.T
        return B, A / (W @ G)

    rows = []
    for frac in fractions:
        sub = []
        for F in (W, H):
            F = F.clone()
            F[torch.rand(F.shape, generator=g) < frac] = torch.finfo(torch.float32).tiny / 16
            sub.append(F)
        variants = {"subnormal": sub, "floored": [raise_tiny_(F.clone()) for F in sub]}
        variants["clean"] = [W, H]
        times: dict[str, list[float]] = {k: [] for k in variants}
        names = list(variants)
        for r in range(rounds):
            for j in range(len(names)):
                k = names[(r + j) % len(names)]
                t0 = time.perf_counter()
                for _ in range(3):
                    step(*variants[k])
                times[k].append((time.perf_counter() - t0) / 3 * 1e3)
        row: dict[str, Any] = {"fraction": frac}
        row.update({f"{k}_ms": statistics.median(v) for k, v in times.items()})
        rows.append(row)
    return rows


def to_markdown(out: dict[str, Any]) -> str:
    lines = ["| threads | elementwise flushed | matmul flushed |", "|---|---|---|"]
    for t, f in out["flush"].items():
        lines.append(f"| {t} | {f['elementwise_flushed']:.2f} | {f['matmul_flushed']:.2f} |")
    lines += ["", "| threads | subnormal share | subnormal ms | floored ms | clean ms |"]
    lines.append("|---|---|---|---|---|")
    for t, rows in out["sweep"].items():
        for r in rows:
            lines.append(
                f"| {t} | {100 * r['fraction']:.1f} % | {r['subnormal_ms']:.1f} | "
                f"{r['floored_ms']:.1f} | {r['clean_ms']:.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from perf import _cli

    p = argparse.ArgumentParser(
        prog="python -m perf.subnormals", description=_cli.description(__doc__)
    )
    p.add_argument("--threads", type=_cli.positive_int, nargs="+", default=[1, 2])
    p.add_argument(
        "--fractions",
        type=_cli.fraction,
        nargs="+",
        default=[0.003, 0.05, 0.2],
        help="shares of the factor entries made subnormal, each in (0, 1] (default 0.003 0.05 0.2)",
    )
    p.add_argument("--rounds", type=_cli.positive_int, default=7)
    p.add_argument(
        "--out", type=_cli.output_folder, default=None, help="folder for result.json and result.md"
    )
    a = p.parse_args(argv)
    before = torch.get_num_threads()
    try:
        out = {
            "benchmark": "subnormals",
            "config": vars(a) | {"out": str(a.out)},
            "flush": {str(t): flush_reach(t) for t in a.threads},
            "sweep": {str(t): sweep_cost(t, a.fractions, a.rounds) for t in a.threads},
        }
    finally:
        torch.set_num_threads(before)
    md = to_markdown(out)
    print(md)
    if a.out:
        from benchmarks.io_utils import write_json, write_text

        out["environment"] = environment(max(a.threads), torch.device("cpu"))
        with _cli.refusing(p):
            write_json(a.out / "result.json", out)
            write_text(a.out / "result.md", md + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
