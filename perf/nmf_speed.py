"""``python -m perf.nmf_speed``: per-iteration cost of dnmf next to scikit-learn and torchnmf.

Every dnmf fit here runs ``solver="mu"``: the tables compare one multiplicative update with
scikit-learn's ``NMF(solver="mu")`` (``python -m perf.time_to_target`` compares the time to an
accurate answer, each library with its default solver).

One run, one random nonnegative matrix, the same initial factors for every method, the same
number of iterations (``tol=0``), threads pinned. Reports the median over repeats of the time
per iteration of the *public* call of each library (validation and set-up included, spread
over the iterations), the final loss ½‖V − WH‖² (float64, computed the same way for all), the
ratios to scikit-learn, a batched comparison, and on CUDA the achieved TFLOP/s next to a plain
``torch.matmul`` of the same shape. Importable: :func:`run_nmf_speed` returns the JSON dict.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from perf._fits import dnmf_mu, sklearn_mu, torchnmf_mu
from perf._problems import random_problem, random_problem_on
from perf._timing import environment, time_round_robin

FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------
# helpers
def _time(
    fn: Callable[[], Any], repeats: int, device: torch.device
) -> tuple[float, list[float], Any]:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up run."""
    return time_round_robin([fn], repeats, device)[0]


def _fro_loss(V: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    """½‖V − W H‖² in float64, by blocks of rows (same code for every method)."""
    total = 0.0
    Wd, Hd = W.astype(np.float64), H.astype(np.float64)
    for i in range(0, V.shape[0], 512):
        R = V[i : i + 512].astype(np.float64) - Wd[i : i + 512] @ Hd
        total += float(np.einsum("ij,ij->", R, R))
    return 0.5 * total


def _chain(Ws: list[np.ndarray]) -> np.ndarray:
    out = Ws[-1]
    for W in reversed(Ws[:-1]):
        out = W @ out
    return out


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _deep_init(W0: np.ndarray, H0: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """W1 = W0 and near-identity positive W2…Wk (W1…Wk H0 stays close to W0 H0)."""
    r = W0.shape[1]
    rng = np.random.default_rng(seed + 1)
    Ws = [W0]
    for _ in range(k - 1):
        Ws.append((0.9 * np.eye(r) + 0.1 * rng.random((r, r)) * 2 / r).astype(W0.dtype))
    return Ws


def _flops_per_iter(m: int, n: int, ranks: list[int]) -> float:
    """Multiply-adds ×2 of one dnmf Frobenius sweep (two products with V dominate)."""
    r1, rk = ranks[0], ranks[-1]
    big = 2 * m * n * rk + 2 * m * n * min(r1, rk)
    small = 2 * n * rk * rk * 2 + 2 * m * r1 * (rk + r1 + r1)
    small += sum(
        2 * ranks[l - 1] * ranks[l] * (rk + ranks[l] + ranks[l - 1]) for l in range(1, len(ranks))
    )
    return float(big + small)


# --------------------------------------------------------------------------------------------
def run_nmf_speed(
    m: int = 4096,
    n: int = 2048,
    rank: int = 64,
    n_iter: int = 60,
    repeats: int = 5,
    threads: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    seed: int = 0,
    layers: tuple[int, ...] = (2, 3),
    batch: tuple[int, int, int, int] | None = (256, 64, 96, 8),
    batch_iter: int = 200,
    include_sklearn: bool = True,
    include_torchnmf: bool = True,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Run the benchmark and return a JSON-ready dict (``markdown`` holds the tables)."""
    log = log or (lambda s: None)
    dev = torch.device(device)
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    np_dtype = np.dtype(dtype)
    V, W0, H0 = random_problem(m, n, rank, np_dtype, seed)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        threadpool_limits = None

    results: list[dict[str, Any]] = []
    notes: list[str] = []

    def record(name, per_iter, times, W, H, n_done, **extra):
        loss = _fro_loss(V, W, H)
        row = {
            "method": name,
            "ms_per_iter": 1e3 * per_iter,
            "repeat_ms_per_iter": [1e3 * t / n_iter for t in times],
            "final_loss": loss,
            "iterations": int(n_done),
            **extra,
        }
        results.append(row)
        log(f"  {name:<22} {1e3 * per_iter:8.2f} ms/iter  loss {loss:.6e}")

    log(
        f"nmf-speed: V {m}x{n} rank {rank} {dtype} on {dev}, {n_iter} iterations, "
        f"median of {repeats} interleaved rounds, {threads} threads"
    )
    Vdev = torch.from_numpy(V).to(dev)
    # Each entry: name, the fit to time, and how to read (W, H, n_iter, extra) from its output.
    # The tensor input keeps the data on the device, as a user would.
    entries: list[tuple[str, Callable[[], Any], Callable[[Any], tuple]]] = []
    entries.append(
        (
            "dnmf k=1",
            dnmf_mu(Vdev, [W0], H0, n_iter, dev),
            lambda res: (_np(res.Ws[0]), _np(res.H), res.n_iter, {"ranks": [rank]}),
        )
    )
    if include_sklearn:  # on a GPU machine: scikit-learn on its CPU, the user's alternative
        try:
            import sklearn  # noqa: F401

            fit = sklearn_mu(V, W0, H0, n_iter)
            if threadpool_limits is not None:

                def fit(_fit=fit):
                    with threadpool_limits(limits=threads):
                        return _fit()

            entries.append(("sklearn NMF(mu)", fit, lambda out: (*out, {})))
        except ImportError:
            notes.append("scikit-learn not importable: skipped")
        if dev.type != "cpu":
            notes.append(
                f"scikit-learn runs on this machine's CPU ({threads} threads); the "
                f"× scikit-learn column compares {dev.type} against it"
            )
    if include_torchnmf:
        try:
            import torchnmf  # noqa: F401

            entries.append(
                (
                    "torchnmf",
                    torchnmf_mu(V, W0, H0, n_iter, dev),
                    lambda out: (_np(out[0]), _np(out[1]), out[2], {}),
                )
            )
        except ImportError:
            notes.append("torchnmf not importable (pip install 'deblur-toolkit[bench]'): skipped")
    for k in layers:
        entries.append(
            (
                f"dnmf k={k}",
                dnmf_mu(Vdev, _deep_init(W0, H0, k, seed), H0, n_iter, dev),
                lambda res, k=k: (
                    _chain([_np(W) for W in res.Ws]),
                    _np(res.H),
                    res.n_iter,
                    {"ranks": [rank] * k},
                ),
            )
        )

    # Round robin: every round times each method once, so a slow spell of a shared machine
    # hits all of them alike instead of one method's block of repeats.
    timed = time_round_robin([fn for _, fn, _ in entries], repeats, dev)
    for (name, _, read), (t, times, out) in zip(entries, timed):
        W, H, n_done, extra = read(out)
        record(name, t / n_iter, times, W, H, n_done, **extra)
    dnmf_k1 = timed[0][0] / n_iter
    times_of = {name: tt[1] for (name, _, _), tt in zip(entries, timed)}

    ref = next((r for r in results if r["method"].startswith("sklearn")), None)
    for r in results:
        r["ratio_to_sklearn"] = r["ms_per_iter"] / ref["ms_per_iter"] if ref else None
        r["loss_rel_to_sklearn"] = (r["final_loss"] / ref["final_loss"] - 1) if ref else None
        r["ratio_to_dnmf_k1"] = r["ms_per_iter"] / (1e3 * dnmf_k1)

    out: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "benchmark": "nmf-speed",
        "config": {
            "m": m,
            "n": n,
            "rank": rank,
            "n_iter": n_iter,
            "repeats": repeats,
            "threads": threads,
            "device": str(dev),
            "dtype": dtype,
            "seed": seed,
            "layers": list(layers),
        },
        "environment": environment(threads, dev),
        "results": results,
        "notes": notes,
    }
    if "sklearn NMF(mu)" in times_of:  # the per-round ratio: robust to drifts in machine load
        per_round = [a / b for a, b in zip(times_of["dnmf k=1"], times_of["sklearn NMF(mu)"])]
        out["k1_over_sklearn_per_round"] = {
            "median": statistics.median(per_round),
            "min": min(per_round),
            "max": max(per_round),
        }

    if dev.type == "cuda":
        A = Vdev
        B = torch.from_numpy(H0.T.copy()).to(dev)
        t_mm, _, _ = _time(lambda: torch.matmul(A, B), max(repeats, 10), dev)
        mm_tflops = 2 * m * n * rank / t_mm / 1e12
        for r in results:
            if r["method"].startswith("dnmf"):
                r["tflops"] = _flops_per_iter(m, n, r["ranks"]) / (r["ms_per_iter"] / 1e3) / 1e12
                r["fraction_of_matmul"] = r["tflops"] / mm_tflops
        out["matmul_tflops"] = mm_tflops

    if batch:
        out["batched"] = _batched(
            batch,
            batch_iter,
            repeats,
            np_dtype,
            seed,
            dev,
            threads,
            threadpool_limits,
            include_sklearn,
            log,
        )
    out["markdown"] = to_markdown(out)
    return out


def parse_size(text: str) -> tuple[int, int, int]:
    """``"8192x8192x128"`` → ``(m, n, rank)``; a clear error for anything else."""
    parts = text.lower().split("x")
    try:
        m, n, r = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size {text!r} is not MxNxRANK (e.g. 8192x8192x128)"
        ) from None
    if min(m, n, r) < 1 or r > min(m, n):
        raise argparse.ArgumentTypeError(
            f"size {text!r}: need positive M, N, RANK with RANK <= min(M, N)"
        )
    return m, n, r


DEFAULT_SWEEP_CUDA = ("4096x4096x128", "8192x8192x128", "16384x16384x128", "32768x32768x128")
DEFAULT_SWEEP_CPU = ("1024x1024x64", "2048x2048x128", "4096x4096x128")


def run_throughput_sweep(
    sizes: list[tuple[int, int, int]],
    *,
    n_iter: int = 20,
    repeats: int = 3,
    threads: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Achieved FLOP/s of one ``dnmf`` (k=1, Frobenius) iteration next to ``torch.matmul``.

    For each ``(m, n, rank)`` the matrix is generated on the device (no host copy, so sizes up
    to the device's memory work), ``dnmf.factorize`` runs ``n_iter`` iterations from fixed
    factors (``tol=0``) and the product ``V @ Hᵀ`` of the same shape is timed on its own. The
    sweep stops at the first size that does not fit in memory and records it.
    """
    import dnmf

    log = log or (lambda s: None)
    dev = torch.device(device)
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    tdtype = getattr(torch, dtype)
    rows: list[dict[str, Any]] = []
    gen = torch.Generator(device=dev).manual_seed(seed)
    for m, n, r in sizes:
        row: dict[str, Any] = {"m": m, "n": n, "rank": r}
        V = W0 = H0 = Ht = None
        try:
            V, W0, H0 = random_problem_on(m, n, r, gen, dev, tdtype)
            Ht = H0.T.contiguous()
            t_mm, _, _ = _time(lambda V=V, Ht=Ht: torch.matmul(V, Ht), max(repeats, 5), dev)

            def fit(V=V, W0=W0, H0=H0, r=r):
                return dnmf.factorize(
                    V, [r], init="custom", Ws=[W0], H=H0, max_iter=n_iter, tol=0, solver="mu"
                )

            t_fit, _, res = _time(fit, repeats, dev)
            per_iter = t_fit / n_iter
            row.update(
                ms_per_iter=1e3 * per_iter,
                tflops=_flops_per_iter(m, n, [r]) / per_iter / 1e12,
                matmul_tflops=2 * m * n * r / t_mm / 1e12,
                iterations=int(res.n_iter),
            )
            row["fraction_of_matmul"] = row["tflops"] / row["matmul_tflops"]
            if dev.type == "cuda":
                row["peak_mem_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
            log(
                f"  {m}x{n} rank {r}: {row['ms_per_iter']:.2f} ms/iter, "
                f"{row['tflops']:.3f} TFLOP/s "
                f"({row['fraction_of_matmul']:.2f} x matmul {row['matmul_tflops']:.3f})"
            )
        except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as exc:
            if "out of memory" not in str(exc).lower() and not isinstance(
                exc, (torch.cuda.OutOfMemoryError, MemoryError)
            ):
                raise
            row["error"] = "out of memory"
            log(f"  {m}x{n} rank {r}: out of memory, sweep stops here")
            rows.append(row)
            break
        finally:  # drop this size's tensors before the next one is allocated
            V = W0 = H0 = Ht = None
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
        rows.append(row)
    out = {
        "format_version": FORMAT_VERSION,
        "benchmark": "nmf-speed-sweep",
        "config": {
            "n_iter": n_iter,
            "repeats": repeats,
            "threads": threads,
            "device": str(dev),
            "dtype": dtype,
            "seed": seed,
        },
        "environment": environment(threads, dev),
        "sweep": rows,
    }
    out["markdown"] = sweep_markdown(out)
    return out


def sweep_markdown(out: dict[str, Any]) -> str:
    """The sweep as a markdown table (TFLOP/s of dnmf and of torch.matmul at each size)."""
    c, env = out["config"], out["environment"]
    where = env.get("gpu") or f"{c['threads']} CPU thread(s)"
    lines = [
        f"Throughput sweep: dnmf k=1 (Frobenius MU) vs torch.matmul, {c['dtype']}, "
        f"{c['device']} ({where}), "
        f"{c['n_iter']} iterations, median of {c['repeats']}",
        "",
        "| V (m × n) | rank | ms / iteration | dnmf TFLOP/s | torch.matmul TFLOP/s | × matmul |",
        "|---|---|---|---|---|---|",
    ]
    for r in out["sweep"]:
        if "error" in r:
            lines.append(f"| {r['m']} × {r['n']} | {r['rank']} | {r['error']} | – | – | – |")
        else:
            lines.append(
                f"| {r['m']} × {r['n']} | {r['rank']} | {r['ms_per_iter']:.2f} | "
                f"{r['tflops']:.3f} | "
                f"{r['matmul_tflops']:.3f} | {r['fraction_of_matmul']:.2f} |"
            )
    return "\n".join(lines)


def _batched(
    batch, n_iter, repeats, np_dtype, seed, dev, threads, threadpool_limits, with_sklearn, log
):
    import dnmf

    B, m, n, r = batch
    V, W0, H0 = random_problem(m, n, r, np_dtype, seed + 7, batch=B)
    Vdev = torch.from_numpy(V).to(dev)

    def fit():
        return dnmf.factorize(
            Vdev, r, init="custom", Ws=[W0], H=H0, max_iter=n_iter, tol=0, solver="mu"
        )

    t_b, _, res = _time(fit, repeats, dev)
    Wb, Hb = _np(res.Ws[0]), _np(res.H)
    loss_b = np.array([_fro_loss(V[i], Wb[i], Hb[i]) for i in range(B)])
    row: dict[str, Any] = {
        "B": B,
        "m": m,
        "n": n,
        "rank": r,
        "n_iter": n_iter,
        "dnmf_batched_s": t_b,
        "dnmf_mean_loss": float(loss_b.mean()),
    }
    log(f"  batched {B} x ({m}x{n}) rank {r}: dnmf {t_b:.3f} s")
    if with_sklearn:
        from sklearn.decomposition import NMF

        def loop():
            out = []
            for i in range(B):
                est = NMF(n_components=r, solver="mu", init="custom", max_iter=n_iter, tol=0)
                Wi = est.fit_transform(V[i], W=W0[i].copy(), H=H0[i].copy())
                out.append((Wi, est.components_))
            return out

        ctx = threadpool_limits(limits=threads) if threadpool_limits else contextlib.nullcontext()
        with ctx:
            t_s, _, outs = _time(loop, max(1, min(repeats, 3)), dev)
        loss_s = np.array([_fro_loss(V[i], *outs[i]) for i in range(B)])
        row.update(
            sklearn_loop_s=t_s,
            sklearn_mean_loss=float(loss_s.mean()),
            speedup=t_s / t_b,
            max_loss_rel_diff=float(np.max(np.abs(loss_b / loss_s - 1))),
        )
        log(f"  batched: sklearn loop {t_s:.3f} s, speed-up {t_s / t_b:.1f}x")
    return row


def to_markdown(out: dict[str, Any]) -> str:
    """The results as markdown tables."""
    c, e = out["config"], out["environment"]
    lines = [
        f"V {c['m']}×{c['n']}, rank {c['rank']}, {c['dtype']}, {c['n_iter']} iterations, "
        f"median of {c['repeats']} interleaved rounds, {c['threads']} threads, device {c['device']}"
        + (f" ({e['gpu']})" if "gpu" in e else ""),
        "",
    ]
    cuda = "matmul_tflops" in out
    head = (
        "| method | ms / iteration | × scikit-learn | × dnmf k=1 | final ½‖V−WH‖² "
        "| loss vs scikit-learn |"
    )
    if cuda:
        head += " TFLOP/s | × torch.matmul |"
    lines += [head, "|" + "---|" * (8 if cuda else 6)]
    for r in out["results"]:
        ratio = f"{r['ratio_to_sklearn']:.2f}" if r.get("ratio_to_sklearn") is not None else "–"
        rel = (
            f"{100 * r['loss_rel_to_sklearn']:+.3f}%"
            if r.get("loss_rel_to_sklearn") is not None
            else "–"
        )
        line = (
            f"| {r['method']} | {r['ms_per_iter']:.2f} | {ratio} | {r['ratio_to_dnmf_k1']:.2f} | "
            f"{r['final_loss']:.6e} | {rel} |"
        )
        if cuda:
            tf = r.get("tflops")
            line += f" {tf:.2f} | {r['fraction_of_matmul']:.2f} |" if tf is not None else " – | – |"
        lines.append(line)
    pr = out.get("k1_over_sklearn_per_round")
    if pr:
        lines.append(
            f"\ndnmf k=1 / scikit-learn within each round: median {pr['median']:.2f} "
            f"(range {pr['min']:.2f}–{pr['max']:.2f})"
        )
    if cuda:
        lines.append(
            f"\ntorch.matmul ({c['m']}×{c['n']} @ {c['n']}×{c['rank']}): "
            f"{out['matmul_tflops']:.2f} TFLOP/s"
        )
    b = out.get("batched")
    if b:
        lines += [
            "",
            f"Batched: {b['B']} independent {b['m']}×{b['n']} matrices, rank {b['rank']}, "
            f"{b['n_iter']} iterations",
            "",
            "| method | seconds | speed-up | mean final loss |",
            "|---|---|---|---|",
            f"| dnmf, one batched call | {b['dnmf_batched_s']:.3f} | "
            + (f"{b['speedup']:.1f}×" if "speedup" in b else "–")
            + f" | {b['dnmf_mean_loss']:.6e} |",
        ]
        if "sklearn_loop_s" in b:
            lines.append(
                f"| scikit-learn NMF(mu), loop | {b['sklearn_loop_s']:.3f} | 1.0× | "
                f"{b['sklearn_mean_loss']:.6e} |"
            )
            lines.append(
                f"\nlargest per-matrix loss difference: {100 * b['max_loss_rel_diff']:.3f}%"
            )
    for note in out.get("notes", []):
        lines.append(f"\nNote: {note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# command line: python -m perf.nmf_speed
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m perf.nmf_speed``."""
    from perf import _cli

    parser.add_argument(
        "--m", type=_cli.positive_int, default=4096, help="rows of V (default 4096)"
    )
    parser.add_argument(
        "--n", type=_cli.positive_int, default=2048, help="columns of V (default 2048)"
    )
    parser.add_argument("--rank", type=_cli.positive_int, default=64, help="rank (default 64)")
    parser.add_argument(
        "--iters", type=_cli.positive_int, default=60, help="iterations per fit (default 60)"
    )
    parser.add_argument(
        "--repeats",
        type=_cli.positive_int,
        default=5,
        help="timed repeats; the median is reported (default 5)",
    )
    parser.add_argument(
        "--threads",
        type=_cli.positive_int,
        default=None,
        help="threads for torch and BLAS (default: all cores)",
    )
    parser.add_argument(
        "--device",
        type=_cli.device_name,
        default="cpu",
        help="torch device for dnmf/torchnmf: cpu, cuda or cuda:N (default cpu)",
    )
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--seed", type=_cli.seed, default=0)
    parser.add_argument(
        "--layers",
        type=_cli.positive_int,
        nargs="*",
        default=[2, 3],
        help="deeper dnmf models to time, all ranks = --rank (default 2 3)",
    )
    parser.add_argument(
        "--batch",
        type=_cli.positive_int,
        nargs=4,
        default=[256, 64, 96, 8],
        metavar=("B", "M", "N", "RANK"),
        help="batched comparison (default 256 64 96 8)",
    )
    parser.add_argument("--batch-iters", type=_cli.positive_int, default=200)
    parser.add_argument("--no-batch", action="store_true", help="skip the batched comparison")
    parser.add_argument(
        "--no-torchnmf", action="store_true", help="skip torchnmf even if installed"
    )
    parser.add_argument(
        "--json",
        type=_cli.output_file,
        default=None,
        help="write the results as JSON to this file",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="instead: achieved TFLOP/s of dnmf vs torch.matmul over --sizes "
        "(up to the memory limit)",
    )
    parser.add_argument(
        "--sizes",
        type=parse_size,
        nargs="+",
        default=None,
        metavar="MxNxRANK",
        help=f"sizes for --sweep (default on CUDA {' '.join(DEFAULT_SWEEP_CUDA)}; "
        f"on CPU {' '.join(DEFAULT_SWEEP_CPU)})",
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m perf.nmf_speed``: print the markdown table, optionally write JSON."""
    from perf import _cli

    parser = argparse.ArgumentParser(
        prog="python -m perf.nmf_speed", description=_cli.description(__doc__)
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available here")
    b, bm, bn, br = args.batch
    if not args.no_batch and br > min(bm, bn):
        parser.error(f"--batch: RANK {br} must be at most min(M, N) = {min(bm, bn)}")
    if args.sweep:
        names = DEFAULT_SWEEP_CUDA if args.device.startswith("cuda") else DEFAULT_SWEEP_CPU
        sizes = args.sizes or [parse_size(t) for t in names]
        out = run_throughput_sweep(
            sizes,
            n_iter=min(args.iters, 20),
            repeats=args.repeats,
            threads=args.threads,
            device=args.device,
            dtype=args.dtype,
            seed=args.seed,
            log=lambda s: print(s, file=sys.stderr),
        )
    else:
        out = _run_from_args(args)
    print(out["markdown"])
    if args.json:
        from benchmarks.io_utils import write_json

        with _cli.refusing(parser):
            write_json(args.json, out)  # makes the folder, writes atomically
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


def _run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return run_nmf_speed(
        m=args.m,
        n=args.n,
        rank=args.rank,
        n_iter=args.iters,
        repeats=args.repeats,
        threads=args.threads,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        layers=tuple(args.layers),
        batch=None if args.no_batch else tuple(args.batch),
        batch_iter=args.batch_iters,
        include_torchnmf=not args.no_torchnmf,
        log=lambda s: print(s, file=sys.stderr),
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
