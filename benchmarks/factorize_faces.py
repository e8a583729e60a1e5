"""``deblur-bench factorize``: faces as a matrix, factorized by ``dnmf.factorize``.

Every image of a folder (searched recursively; JPEG, PNG, PGM) is center-cropped to a square,
resized to ``--size`` and flattened into one column of ``V`` (pixels × images, values in
[0, 1]). The run writes the factors (``factors.npz``, readable with ``dnmf.load``), one figure of
atoms per layer (the columns of ``W1…Wl`` shown as images), the loss curve, a few
reconstructions and ``run.json`` with the settings and timings.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.errors import UserError
from benchmarks.images import image_files, read_or_warn, suffixes_text
from benchmarks.io_utils import naming, write_json
from benchmarks.rank_search import SEARCH_OPTIONS, check_search_flags, parse_ranks_arg
from benchmarks.rank_search import search as search_ranks
from benchmarks.rank_search import write_outputs as write_search_outputs
from benchmarks.run_dir import MARKER, RunFolder


class FaceFolderError(UserError):
    """A missing folder, or one without a single readable image."""


def load_face_matrix(
    data_dir: str | Path, size: int = 64, gray: bool = False, max_images: int | None = None
) -> tuple[np.ndarray, list[str], tuple[int, ...]]:
    """Read a folder of images into ``V`` (float32, one flattened image per column).

    Returns ``V`` of shape ``(size·size·channels, n_images)``, the relative paths of the images
    used (sorted, so the columns are reproducible) and the image shape ``(size, size[, 3])``.
    Unreadable files are skipped with a warning that names them.  Images are read at their
    full depth (16-bit files too) and upright (EXIF orientation), like every benchmarks path.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FaceFolderError(f"--data-dir {root} does not exist or is not a folder")
    if size < 1:
        raise UserError(f"--size must be an integer >= 1, got {size}")
    files = image_files(root)
    columns: list[np.ndarray] = []
    names: list[str] = []
    for path in files:
        if max_images is not None and len(columns) >= max_images:
            break
        pic = read_or_warn(path, gray=gray, category=RuntimeWarning)
        if pic is None:
            continue
        chw = pic.center_square().resize(size).array()  # (C, S, S): columns are channels-last
        arr = chw[0] if gray else chw.transpose(1, 2, 0)
        columns.append(np.clip(arr, 0.0, 1.0).reshape(-1))
        names.append(str(path.relative_to(root)))
    if not columns:
        what = "no readable images" if files else f"no images ({suffixes_text()})"
        raise FaceFolderError(f"--data-dir {root} holds {what}")
    shape = (size, size) if gray else (size, size, 3)
    return np.stack(columns, axis=1), names, shape


def _atoms_figure(
    W: np.ndarray, shape: tuple[int, ...], title: str, path: Path, max_atoms: int = 64
) -> None:
    """The first ``max_atoms`` columns of ``W`` as images, each on its own scale."""
    import matplotlib.pyplot as plt

    from benchmarks.figures import tile_atoms

    r = min(W.shape[1], max_atoms)
    cols = int(np.ceil(np.sqrt(r)))
    rows = int(np.ceil(r / cols))
    fig, ax = plt.subplots(figsize=(1.2 * cols, 1.2 * rows + 0.4))
    ax.imshow(tile_atoms(W[:, :r].T.reshape(r, *shape), normalise="max"), interpolation="nearest")
    ax.axis("off")
    fig.suptitle(title + (f" (first {r} of {W.shape[1]})" if W.shape[1] > r else ""), fontsize=9)
    fig.tight_layout()
    with naming(path):  # a full disk names the figure
        fig.savefig(path, dpi=100)
    plt.close(fig)


def _loss_figure(res: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for l, h in enumerate(res.pretrain_loss_histories):
        ax.plot(np.arange(len(h)), h, lw=1, alpha=0.6, label=f"pretraining, layer {l + 1}")
    ax.plot(res.loss_iters, res.loss_history, lw=2, color="k", label="joint fine-tuning")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (β-divergence)")
    ax.set_title(f"dnmf.factorize, ranks {list(res.ranks)}, β = {res.beta:g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with naming(path):
        fig.savefig(path, dpi=100)
    plt.close(fig)


def _reconstructions_figure(
    V: np.ndarray, R: np.ndarray, shape: tuple[int, ...], path: Path, k: int = 6
) -> None:
    import matplotlib.pyplot as plt

    idx = np.linspace(0, V.shape[1] - 1, min(k, V.shape[1])).astype(int)
    fig, axes = plt.subplots(2, len(idx), figsize=(1.6 * len(idx), 3.6), squeeze=False)
    for j, i in enumerate(idx):
        for row, M in enumerate((V, R)):
            ax = axes[row, j]
            ax.imshow(
                np.clip(M[:, i], 0, 1).reshape(shape),
                cmap="gray" if len(shape) == 2 else None,
                vmin=0,
                vmax=1,
            )
            ax.axis("off")
        axes[0, j].set_title(f"#{i}", fontsize=8)
    axes[0, 0].text(
        -0.1, 0.5, "image", transform=axes[0, 0].transAxes, ha="right", va="center", fontsize=8
    )
    axes[1, 0].text(
        -0.1, 0.5, "W1…Wk H", transform=axes[1, 0].transAxes, ha="right", va="center", fontsize=8
    )
    fig.tight_layout()
    with naming(path):
        fig.savefig(path, dpi=100)
    plt.close(fig)


class JointProgress:
    """``dnmf.factorize`` callback that draws a progress bar of the joint iterations.

    The bar starts at the first joint iteration, not before the fit: the layer-wise
    pretraining that comes first reports no iterations, and counting its time as the first
    one's made the rate and the time left wrong (seconds per iteration for a fast fit).
    """

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.bar: Any = None

    def __call__(self, it: int, loss: float) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total, initial=it, desc="dnmf.factorize", unit="it", file=sys.stderr
            )
        else:
            self.bar.update(it - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.4g}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fit(
    V: np.ndarray, ranks: list[int], *, progress: bool, quiet: bool = False, **kw: Any
) -> tuple[Any, float]:
    """``dnmf.factorize`` with the progress bar (none when ``quiet``); its warnings printed as
    ``warning: ...``."""
    import dnmf

    progress = progress and not quiet
    bar = JointProgress(kw["max_iter"], progress)
    if progress:
        dnmf.check_ranks(ranks, kw["init"], V.shape)  # factorize's refusal, before this line
        print("dnmf.factorize: pretraining the layers ...", file=sys.stderr, flush=True)
    t1 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", dnmf.ConvergenceWarning)
            res = dnmf.factorize(V, ranks, callback=bar, **kw)
    finally:
        bar.close()
    t_fit = time.perf_counter() - t1
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return res, t_fit


def _write_figures(out: Path, res: Any, V: np.ndarray, shape: tuple[int, ...]) -> float:
    """Factors, atoms, loss curve and reconstructions into ``out``; returns the relative error."""
    with naming(out / "factors.npz"):
        res.save(out / "factors.npz")
    prefix = res.Ws[0]
    for l in range(len(res.Ws)):
        if l > 0:
            prefix = prefix @ res.Ws[l]
        title = "columns of W1" if l == 0 else f"columns of W1…W{l + 1}"
        _atoms_figure(prefix, shape, f"layer {l + 1}: {title}", out / f"atoms_layer{l + 1}.png")
    _loss_figure(res, out / "loss.png")
    R = res.reconstruct()
    _reconstructions_figure(V, R, shape, out / "reconstructions.png")
    return float(np.linalg.norm(V - R) / np.linalg.norm(V))


def run_factorize(
    data_dir: str | Path,
    ranks: list[int] | None,
    out: str | Path,
    *,
    beta: float = 2.0,
    device: str | None = None,
    size: int = 64,
    gray: bool = False,
    max_iter: int = 500,
    tol: float = 1e-5,
    init: str = "nndsvda",
    seed: int = 0,
    max_images: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    quiet: bool = False,
    search: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Load the faces, factorize, write every output into ``out``; returns the run summary.

    ``ranks=None`` (``--ranks auto``) chooses them first by `dnmf.select_ranks` with the
    options in ``search`` (``benchmarks.rank_search``).  ``progress``: the progress bar of the
    joint iterations; ``quiet``: no bar and no log lines at all (warnings still go to stderr).

    The run is written into a staging folder beside ``out`` and put in place at the end, so
    an error (or ``--overwrite`` of an earlier run) never leaves half a run behind.
    """
    import matplotlib

    matplotlib.use("Agg")

    if device is not None:
        from benchmarks.run_info import resolve_device

        resolve_device(device)  # a clear error for cuda without CUDA, before any work
    folder = RunFolder(out, kind="factorize", overwrite=overwrite, protect=[data_dir])
    with folder:
        t0 = time.perf_counter()
        V, names, shape = load_face_matrix(data_dir, size=size, gray=gray, max_images=max_images)
        t_load = time.perf_counter() - t0
        fit = {"beta": beta, "max_iter": max_iter, "tol": tol, "init": init, "seed": seed}
        sel = None
        if ranks is None:
            sel = search_ranks(V, search or {}, fit, device, quiet=quiet)
            ranks = list(sel.best) if isinstance(sel.best, tuple) else [sel.best]
        res, t_fit = _fit(V, ranks, progress=progress, quiet=quiet, device=device, **fit)
        rel = _write_figures(folder.path, res, V, shape)
        chosen = None if sel is None else write_search_outputs(folder.path, sel, res, shape)
        summary = {
            "format_version": 1,
            "data_dir": str(data_dir),
            "n_images": len(names),
            "image_shape": list(shape),
            "V_shape": list(V.shape),
            "ranks": list(res.ranks),
            "beta": res.beta,
            "init": init,
            "seed": seed,
            "max_iter": max_iter,
            "tol": tol,
            "n_iter": int(res.n_iter),
            "converged": bool(res.converged),
            "final_loss": float(res.loss),
            "relative_error": rel,
            "device": str(device or "cpu"),
            "seconds": {"load": t_load, "factorize": t_fit}
            | ({} if sel is None else {"rank_selection": sel.seconds}),
            "images": names,
            "outputs": sorted(p.name for p in folder.path.iterdir() if p.name != MARKER)
            + ["run.json"],
        }
        if chosen is not None:
            summary["rank_selection"] = chosen
        write_json(folder.path / "run.json", summary)
        folder.commit()
    return summary


def main(args: argparse.Namespace) -> int:
    """Run ``deblur-bench factorize``; returns the exit code (2 for bad input).

    With ``--quiet`` only the one-line result is printed (and warnings and errors).
    """
    out = args.out or Path("results") / time.strftime("factorize-%Y%m%d-%H%M%S")
    quiet = getattr(args, "quiet", False)
    search = {k: getattr(args, k) for k in SEARCH_OPTIONS}
    try:
        ranks = parse_ranks_arg(args.ranks)
        check_search_flags(ranks, search)
        summary = run_factorize(
            args.data_dir,
            ranks,
            out,
            beta=args.beta,
            device=args.device,
            size=args.size,
            gray=args.gray,
            max_iter=args.max_iter,
            tol=args.tol,
            init=args.init,
            seed=args.seed,
            max_images=args.max_images,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            quiet=quiet,
            search=search,
        )
    except (FaceFolderError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{summary['n_images']} images {summary['image_shape']} -> V {summary['V_shape'][0]}x"
        f"{summary['V_shape'][1]}; ranks {summary['ranks']}, {summary['n_iter']} iterations in "
        f"{summary['seconds']['factorize']:.1f} s; relative error {summary['relative_error']:.4f}"
    )
    if not quiet:
        print(f"wrote {out}/: {', '.join(summary['outputs'])}")
    return 0
