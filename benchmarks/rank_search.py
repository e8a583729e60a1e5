"""``deblur-bench factorize --ranks auto``: choose the ranks by masked cross-validation first.

The search is `dnmf.select_ranks` over ``--rank-candidates`` (``R`` for one layer,
``R1,R2,…`` for a deep model; by default the library's own, `dnmf.select.default_candidates`,
which fit the data), with the run's β, iterations, tolerance, initialization and seed.  The
search's flags left out take the library's defaults too, and are refused with fixed ranks.
The run then factorizes with the chosen ranks as usual and adds ``rank_selection.csv``
(the table), ``rank_selection.png`` (held-out and training loss per entry against the
candidate, next to the chosen model's atoms) and a ``rank_selection`` entry in ``run.json``.
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
from benchmarks.io_utils import atomic_write, naming

#: The ``argparse`` destinations of the search's options, and their parameters of
#: `dnmf.select_ranks` (each flag defaults to None: the library's default applies).
SEARCH_OPTIONS = {
    "rank_candidates": "candidates",
    "cv_folds": "folds",
    "cv_holdout": "holdout",
    "cv_rule": "rule",
}


def ranks_or_auto(text: str) -> int | str:
    """argparse type of ``--ranks``: a positive int, or 'auto'."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int or 'auto', got {text!r}")
    return value


def candidate(text: str) -> int | tuple[int, ...]:
    """argparse type of ``--rank-candidates``: ``R`` or ``R1,R2,…`` (positive ints)."""
    try:
        ranks = tuple(int(p) for p in text.split(","))
    except ValueError:
        ranks = ()
    if not ranks or min(ranks) < 1:
        raise argparse.ArgumentTypeError(
            f"a candidate is R or R1,R2,... with positive ints, got {text!r}"
        )
    return ranks[0] if len(ranks) == 1 else ranks


def flag(dest: str) -> str:
    """The command-line flag of an ``argparse`` destination (``cv_folds`` -> ``--cv-folds``)."""
    return "--" + dest.replace("_", "-")


def check_search_flags(ranks: list[int] | None, search: dict[str, Any]) -> None:
    """Refuse the search's flags when the ranks are fixed: they would be ignored silently."""
    given = [flag(k) for k in SEARCH_OPTIONS if search.get(k) is not None]
    if ranks is not None and given:
        shown = " ".join(map(str, ranks))
        verb, them = ("apply", "them") if len(given) > 1 else ("applies", "it")
        raise UserError(
            f"{', '.join(given)} only {verb} to --ranks auto, and the ranks are fixed "
            f"(--ranks {shown}); pass --ranks auto or drop {them}"
        )


def parse_ranks_arg(ranks: list[Any]) -> list[int] | None:
    """``--ranks``: the fixed ranks, or None for ``--ranks auto`` (alone)."""
    if "auto" in ranks:
        if len(ranks) > 1:
            raise ValueError("--ranks auto cannot be combined with fixed ranks")
        return None
    return [int(r) for r in ranks]


def search(
    V: np.ndarray, args: dict[str, Any], fit: dict[str, Any], device: Any, *, quiet: bool = False
) -> Any:
    """Run the search; prints the table and the choice (not when ``quiet``).

    ``args`` holds the search's flags by destination (None: the library's default), ``fit``
    the run's settings.
    """
    import dnmf
    from dnmf.select import default_candidates

    options = {SEARCH_OPTIONS[k]: v for k, v in args.items() if v is not None}
    if not quiet:
        n = len(options.get("candidates") or default_candidates(V.shape))
        print(f"dnmf.select_ranks: {n} candidates ...", flush=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", dnmf.ConvergenceWarning)
        sel = dnmf.select_ranks(V, **options, device=device, **fit)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if not quiet:
        print(sel.table.to_string(index=False), flush=True)
        print(f"chosen: {sel.best} ({sel.rule} rule, {sel.seconds:.1f} s)", flush=True)
    return sel


def write_outputs(out: Path, sel: Any, res: Any, shape: tuple[int, ...]) -> dict[str, Any]:
    """``rank_selection.csv`` and ``.png`` into ``out``; returns the run.json entry."""
    table = sel.table
    atomic_write(out / "rank_selection.csv", lambda p: table.to_csv(p, index=False))
    _figure(sel, res, shape, out / "rank_selection.png")
    res_cv = sel.cv_results()
    return {
        "candidates": [list(c) if isinstance(c, tuple) else c for c in sel.candidates],
        "chosen": list(sel.best) if isinstance(sel.best, tuple) else sel.best,
        "rule": sel.rule,
        "criterion": sel.criterion,
        "pattern": sel.pattern,
        "solver": sel.solver,
        "holdout": sel.holdout,
        "folds": sel.folds,
        "mean_heldout_loss": res_cv["mean_heldout_loss"].tolist(),
        "std_heldout_loss": res_cv["std_heldout_loss"].tolist(),
        "mean_train_loss": res_cv["mean_train_loss"].tolist(),
        "n_converged": res_cv["n_converged"].tolist(),
        "n_fits": res_cv["n_fits"].tolist(),
        "seconds": sel.seconds,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _figure(sel: Any, res: Any, shape: tuple[int, ...], path: Path, n_atoms: int = 16) -> None:
    """Held-out and training loss per entry against the candidate, beside the chosen atoms."""
    import matplotlib.pyplot as plt

    from benchmarks.figures import tile_atoms

    res_cv = sel.cv_results()
    labels = [",".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in sel.candidates]
    deep = any(isinstance(c, tuple) for c in sel.candidates)
    # one layer: the loss against the rank itself; rank tuples: one position each
    x = np.arange(len(labels)) if deep else np.asarray(sel.candidates, dtype=float)
    fig = plt.figure(figsize=(10, 4))
    ax = fig.add_axes((0.1, 0.15, 0.4, 0.75))
    ax.errorbar(
        x,
        res_cv["mean_heldout_loss"],
        yerr=res_cv["std_heldout_loss"],
        marker="o",
        capsize=3,
        label="held-out entries",
    )
    ax.errorbar(
        x,
        res_cv["mean_train_loss"],
        yerr=res_cv["std_train_loss"],
        marker="s",
        capsize=3,
        label="training entries",
    )
    best = sel.best_index
    ax.axvline(x[best], color="k", lw=0.8, ls="--")
    ax.set_xticks(x, labels, rotation=45 if len(labels) > 8 else 0, fontsize=8)
    ax.set_xlabel("candidate ranks")
    ax.set_ylabel(f"loss per entry (β = {sel.beta:g})")
    ax.set_title(f"{sel.folds}-fold masked CV, chosen {labels[best]} ({sel.rule})", fontsize=9)
    ax.legend(fontsize=8)
    W = res.W()
    r = min(W.shape[1], n_atoms)
    atoms = fig.add_axes((0.55, 0.1, 0.43, 0.8))
    atoms.imshow(
        tile_atoms(W[:, :r].T.reshape(r, *shape), normalise="max"), interpolation="nearest"
    )
    atoms.axis("off")
    fig.text(
        0.76,
        0.94,
        f"atoms of the chosen model (first {r} of {W.shape[1]})",
        ha="center",
        fontsize=9,
    )
    with naming(path):  # a full disk names the figure
        fig.savefig(path, dpi=100)
    plt.close(fig)
