"""The second reliability review, replayed: every numbered item and each of its sub-cases, one
row each (the command or library call, its exit code, what it says now, and what was checked
afterwards). Called by ``make_tables.py``; each function gets a folder of its own.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from PIL import Image
from replay import RUN, attempt, call, faces, row, run_module, said_of, tree

import convae
import dnmf
from dnmf._io import CHECKSUM_KEY
from dnmf._memory import format_bytes
from dnmf.distributed import factorize_columns
from dnmf.select import default_candidates
from tests.benchmarks import diskfault
from tests.benchmarks import test_reliability_report as damage
from tests.convae import zipdamage
from tests.dnmf.test_reliability_distributed_cli import _FULL_DISK, _png_header
from tests.dnmf.test_reliability_library import _prior, _zero_bytes_inside

FACTORIZE = ["factorize", "--ranks", "2", "--size", "16", "--max-iter", "5", "--quiet"]
TRAIN = ["train", "convae", "--preset", "smoke", "--epochs", "1", "--quiet", "--threads", "1"]
BIG_SEED = "99999999999999999999"

TOPICS = {
    1: "masked entries",
    2: "damaged checkpoints and model files",
    3: "damaged result tables (`report`)",
    4: "`save` onto a link or a special file",
    5: "callbacks",
    6: "full disk",
    7: "what cannot fit",
    8: "seeds",
    9: "`factorize --quiet`",
    10: "non-finite training settings",
    11: "`python -m dnmf.distributed`",
    12: "`perf/` tools",
    13: "`dnmf.load` checks",
    14: "smaller",
}


def lib(item: int, case: str, fn, after: str = "", **more: object) -> dict:
    """A library call as a row (no exit code)."""
    return row(item, case, "-", attempt(fn), after, **more)


def cli(item: int, case: str, argv: list, after: str = "", **more: object) -> dict:
    """A ``deblur-bench`` command, in this process, as a row."""
    r = call(argv)
    return row(item, case, r["rc"], r["said"], after, argv=[str(a) for a in argv], **more)


def command(module: str, args: list) -> list[str]:
    """``python -m MODULE ARGS`` as the row's command."""
    return ["python", "-m", module, *map(str, args)]


def one_error(err: str) -> str:
    """The error line of ``err``, flagged when there is not exactly one."""
    n = sum(ln.startswith("error:") or ": error: " in ln for ln in err.splitlines())
    return said_of(err) + ("" if n == 1 else f" ({n} ERROR LINES)")


def absent(*paths: Path) -> str:
    """``no output written`` when none of ``paths`` exists (else names what does)."""
    there = [p.name for p in paths if p.exists()]
    return "no output written" if not there else f"WRITTEN: {', '.join(there)}"


def leftovers(folder: Path, name: str) -> list[str]:
    """Hidden files of a command writing ``folder/name``: ``.name.lock``, ``.name.tmp-PID``."""
    return sorted(p.name for p in folder.glob(f".{name}.*"))


# --------------------------------------------------------------------------- 1
def planted(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A planted rank-3 30 x 20 matrix and a mask hiding 30 % of its entries."""
    rng = np.random.default_rng(seed)
    V = rng.random((30, 3)) @ rng.random((3, 20))
    return V, rng.random(V.shape) < 0.3


def masked_cases(t: Path) -> list[dict]:
    """Item 1: a masked array's hidden entries stay missing in the rank search."""

    V, hide = planted()
    Vm, cands = np.ma.masked_array(V, mask=hide), [1, 2, 3, 4, 5]
    zeros = np.where(hide, 0.0, V)
    explicit = dnmf.select_ranks(zeros, cands, seed=0, mask=(~hide) * 1.0)

    check = {}

    def search() -> str:
        got = dnmf.select_ranks(Vm, cands, seed=0)
        check["same"] = np.array_equal(got.heldout, explicit.heldout)
        as_zero = dnmf.select_ranks(zeros, cands, seed=0).best
        return f"rank {got.best} (the hidden entries set to 0 instead: rank {as_zero})"

    def auto() -> str:
        return f"ranks {dnmf.factorize(Vm, 'auto', seed=0).ranks}"

    case = "planted rank 3, 30 x 20, 30 % masked: "
    rows = [lib(1, case + "`select_ranks(np.ma.masked_array(V, mask))`", search)]
    same = check.get("same")
    rows[0]["after"] = "held-out losses equal those with `mask=`" if same else "LOSSES DIFFER"
    return rows + [
        lib(1, case + "`factorize(Vm, 'auto')`", auto),
        lib(1, "`DeepNMF(3).fit(Vm)`", lambda: dnmf.DeepNMF(3).fit(Vm.T)),
    ]


# --------------------------------------------------------------------------- 2
def trained(t: Path) -> tuple[Path, Path]:
    """A face folder and the run folder of one epoch of ``train convae --preset smoke``."""
    f8 = faces(t / "faces")
    assert call(TRAIN + ["--data-dir", f8, "--out", t / "run"])["rc"] == 0
    return f8, t / "run"


def weights_changed(path: Path, intact: Path) -> int:
    """How many weights ``torch.load`` alone reads differently from the intact copy."""

    a, b = (torch.load(p, weights_only=True)["model_state"] for p in (path, intact))
    return sum(int((a[k] != b[k]).sum()) for k in a)


def checkpoint_cases(t: Path) -> list[dict]:
    """Item 2: bytes zeroed inside a tensor of ``last.pt`` and ``best.pt``."""

    f8, run = trained(t)
    shutil.copytree(run, t / "resumed")
    zipdamage.zero_bytes(t / "resumed" / "last.pt", 4096)
    shutil.copyfile(run / "best.pt", t / "best.pt")
    zipdamage.zero_bytes(t / "best.pt", 4000)
    before = tree(t / "resumed")
    resume = ["train", "convae", "--preset", "smoke", "--epochs", "2", "--quiet", "--threads"]
    resume += ["1", "--data-dir", f8, "--resume", t / "resumed" / "last.pt"]
    rows = [cli(2, "4 KiB zeroed inside a tensor of `last.pt`: `train --resume`", resume)]
    rows[-1]["after"] = "run folder unchanged" if tree(t / "resumed") == before else "CHANGED"
    photo = sorted(f8.iterdir())[0]
    restore = ["restore", photo, "--method", "convae", "--checkpoint", t / "best.pt", "--quiet"]
    case = "4000 bytes zeroed inside `best.pt`: `restore --checkpoint`"
    rows.append(cli(2, case, restore + ["--out", t / "o"], absent(t / "o")))
    n = weights_changed(t / "best.pt", run / "best.pt")
    rows.append(
        lib(
            2,
            "the same `best.pt`: `convae.load_model`",
            lambda: convae.load_model(t / "best.pt"),
            f"`torch.load` alone reads it, {n} weights changed",
        )
    )
    return rows + dnmf_file_cases(t)


def dnmf_file_cases(t: Path) -> list[dict]:
    """Item 2, dnmf half: a result file and a Deep NMF prior's model file, damaged."""

    res = dnmf.factorize(np.random.default_rng(0).random((12, 9)), [4, 2], seed=0, max_iter=10)
    res.save(t / "r.npz")
    _zero_bytes_inside(t / "r.npz", "W1")
    model = _prior()
    model.save(t / "prior.npz")
    with np.load(t / "prior.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["W1"][3, 1] = 0.0
    np.savez(t / "prior.npz", **arrays)  # a valid archive with a stale checksum
    return [
        lib(2, "64 bytes zeroed inside `W1` of a result file: `dnmf.load`",
            lambda: dnmf.load(t / "r.npz")),
        lib(
            2,
            "one weight changed in a `DeepNMFPrior` file (valid archive): `load`",
            lambda: type(model).load(t / "prior.npz"),
        ),
    ]  # fmt: skip


# --------------------------------------------------------------------------- 3
def report_cases(t: Path) -> list[dict]:
    """Item 3: ``report`` on copies of a real run, each damaged one way."""

    run = t / "intact" / "seed0"
    assert call(RUN[:-1] + ["wiener", "--quiet", "--out", run])["rc"] == 0
    table = "`per_image.csv`"
    cases = {
        f"{table} cut mid-row": damage.cut_mid_row,
        f"{table}: a `nan` PSNR": damage.nan_psnr,
        f"{table}: every row twice": damage.rows_twice,
        f"{table}: a text timing (`seconds` = `fast`)": damage.text_timing,
        "`run.json`: a text fit time (`1.5s`)": damage.text_fit_seconds,
        f"{table}: the `wiener` rows removed": damage.method_missing,
        f"{table}: one PSNR edited into another number": damage.edited_value,
        f"{table} cut mid-row, a run from before the checksums": damage.old_cut_mid_row,
    }
    rows = []
    for i, (case, fn) in enumerate(cases.items()):
        copy = t / f"c{i}" / "seed0"
        shutil.copytree(run, copy)
        fn(copy)
        rep = t / f"rep{i}.md"
        rows.append(cli(3, f"`report` on {case}", ["report", copy, "--out", rep]))
        rows[-1]["after"] = "no report written" if not rep.exists() else "REPORT WRITTEN"
    ok = cli(3, "`report` on the intact run", ["report", run, "--out", t / "ok.md"])
    ok["said"] = (t / "ok.md").read_text().splitlines()[0] if ok["rc"] == 0 else ok["said"]
    return rows + [ok]


# --------------------------------------------------------------------------- 4
def save_cases(t: Path) -> list[dict]:
    """Item 4: ``FactorizationResult.save`` onto a symbolic link and a FIFO."""

    res = dnmf.factorize(np.random.default_rng(0).random((12, 9)), 3, seed=0, max_iter=5)
    (t / "target.npz").write_bytes(b"keep me")
    (t / "link.npz").symlink_to(t / "target.npz")
    os.mkfifo(t / "pipe.npz")
    link = lib(4, "`save` onto a symbolic link", lambda: res.save(t / "link.npz"))
    kept = (t / "link.npz").is_symlink() and (t / "target.npz").read_bytes() == b"keep me"
    link["after"] = "the link and its target unchanged" if kept else "LINK OR TARGET CHANGED"
    fifo = lib(4, "`save` onto a FIFO", lambda: res.save(t / "pipe.npz"))
    still = stat.S_ISFIFO(os.lstat(t / "pipe.npz").st_mode)
    fifo["after"] = "still a FIFO" if still else "FIFO REPLACED"
    names = sorted(p.name for p in t.iterdir())
    fifo["after"] += "; no temporary file" if len(names) == 3 else f"; LEFT: {names}"
    return [link, fifo]


# --------------------------------------------------------------------------- 5
def callback_cases(t: Path) -> list[dict]:
    """Item 5: answers that are true without being ``True``, batches, a non-callable."""

    V = np.random.default_rng(0).random((10, 8))
    B = np.random.default_rng(0).random((3, 10, 8))

    def fit(answer, X=V) -> str:
        res = dnmf.factorize(X, 2, max_iter=50, tol=0, seed=0, callback=answer)
        return f"n_iter {np.asarray(res.n_iter).tolist()} of 50"

    answers = {
        "`np.True_`": lambda it, loss: np.True_,
        "`torch.tensor(True)`": lambda it, loss: torch.tensor(True),
        "`np.float64(loss) < 1e9`": lambda it, loss: np.float64(loss) < 1e9,
    }
    rows = [lib(5, f"callback returning {k}", lambda a=a: fit(a)) for k, a in answers.items()]
    per = lambda it, loss: np.array([it >= 4, it >= 2, False])  # noqa: E731
    rows += [
        lib(5, "batch of 3: callback `loss < 1e9` (an array)",
            lambda: fit(lambda i, x: x < 1e9, B)),
        lib(5, "batch of 3: callback `[it >= 4, it >= 2, False]`", lambda: fit(per, B)),
        lib(5, "`callback=5`, two layers", lambda: dnmf.factorize(V, [4, 2], callback=5)),
    ]  # fmt: skip
    return rows


# --------------------------------------------------------------------------- 6
def disk_cases(t: Path) -> list[dict]:
    """Item 6: ``ENOSPC`` injected at each kind of write, then a real full tmpfs (as root)."""

    f8 = faces(t / "faces", n=12)
    rows = injected_disk_cases(t, f8)
    if diskfault.can_mount():
        rows += tmpfs_disk_cases(t, f8)
    else:
        rows.append(row(6, "a real full tmpfs", "-", "skipped: mounting needs root on Linux"))
    return rows


def injected_disk_cases(t: Path, f8: Path) -> list[dict]:
    """The commands in one subprocess, ``OSError(ENOSPC)`` raised at one write each."""

    runs, data = t / "runs", ["--data-dir", f8]
    (runs / "kept").mkdir(parents=True)
    for f in sorted(f8.iterdir())[:3]:  # the user's own files where restore --overwrite writes
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(runs / "kept" / f.name)
    restore = ["restore", f8, "--method", "identity", "--quiet"]
    fig = "matplotlib.figure:Figure.savefig"
    cases = [  # (case, out, target, after, argv)
        ("the run-folder lock", "new1", "os:write", 0, RUN + data),
        ("the staging folder's marker", "new2", "pathlib:Path.write_text", 0, RUN + data),
        ("a figure, `--overwrite` of a run", "prev", fig, 0, RUN + data + ["--overwrite"]),
        ("`factorize`: the loss figure", "f", fig, 1, FACTORIZE + data),
        ("`restore`: the second image", "o", "PIL.Image:Image.save", 1, restore),
        ("`restore --overwrite`: the third", "kept", "PIL.Image:Image.save", 2,
         restore + ["--overwrite"]),
        ("`report --out`", "rep.md", "pathlib:Path.write_text", 0, ["report", runs / "prev"]),
        ("`train`: the checkpoint", "t", "torch:save", 0, TRAIN + data),
    ]  # fmt: skip
    specs = [{"argv": RUN + data + ["--out", runs / "prev"]}]
    for _, out, target, after, argv in cases:
        spec = {"argv": argv + ["--out", runs / out], "target": target, "after": after}
        specs.append({**spec, "fd_suffix": ".new1.lock"} if out == "new1" else spec)
    kept = diskfault.tree(runs / "kept")
    got = diskfault.run_cases(specs)
    assert got[0]["rc"] == 0, got[0]["err"]
    return [
        _disk_row(f"injected at {case}", c, runs, out, kept)
        for (case, out, *_), c in zip(cases, got[1:])
    ]


def _disk_row(case: str, c: dict, runs: Path, out: str, kept: dict) -> dict:
    """One full-disk case: what it said, and what it left of ``runs/out``."""
    left = leftovers(runs, out)
    if out in ("prev", "kept"):
        same = out != "kept" or diskfault.tree(runs / "kept") == kept
        state = "previous files unchanged" if same else "PREVIOUS FILES CHANGED"
    else:
        state = "no output" if not (runs / out).exists() else "OUTPUT LEFT"
    after = f"{state}; " + ("no lock, staging or temporary file" if not left else f"LEFT {left}")
    argv = [str(a) for a in c["argv"]]
    return row(6, case, c["rc"], one_error(c["err"]), after, argv=argv)


def tmpfs_disk_cases(t: Path, f8: Path) -> list[dict]:
    """The real commands on a 2 MiB tmpfs filled to its last byte (the tests' helpers)."""

    data = ["--data-dir", f8]
    with diskfault.small_disk(t / "disk", "2m") as disk:
        first = {"argv": RUN + data + ["--out", disk / "prev"], "disk": disk}
        (prev,) = diskfault.run_cases([first])
        assert prev["rc"] == 0, prev["err"]
        before = diskfault.tree(disk), diskfault.entries(disk)
        restore = ["restore", f8, "--method", "identity", "--quiet", "--out", disk / "o"]
        cases = [  # (case, argv, bytes left free)
            ("`run --overwrite` of a run", RUN + data + ["--out", disk / "prev", "--overwrite"], 0),
            ("`run --overwrite` of a run", RUN + data + ["--out", disk / "prev", "--overwrite"],
             16384),
            ("`run` into a new folder", RUN + data + ["--out", disk / "new"], 16384),
            ("`factorize`", FACTORIZE + data + ["--out", disk / "f"], 65536),
            ("`restore`", restore, 8192),
            ("`report --out`", ["report", disk / "prev", "--out", disk / "rep.md"], 0),
            ("`train`", TRAIN + data + ["--out", disk / "t"], 256 * 1024),
        ]  # fmt: skip
        specs = [{"argv": a, "disk": disk, "free": free} for _, a, free in cases]
        got = diskfault.run_cases(specs)
        files, names = diskfault.tree(disk), diskfault.entries(disk)
    kept = {k: files.get(k) for k in before[0]} == before[0]
    new = sorted(set(names) - set(before[1]))
    after = ("earlier run intact" if kept else "EARLIER RUN CHANGED") + (
        "; nothing else on the disk" if not new else f"; LEFT {new}"
    )
    return [
        row(6, f"a full tmpfs, {free // 1024} KiB left: {case}", c["rc"], one_error(c["err"]),
            after, argv=c["argv"])
        for (case, _, free), c in zip(cases, got)
    ]  # fmt: skip


# --------------------------------------------------------------------------- 7
def memory_cases(t: Path) -> list[dict]:
    """Item 7: ranks whose factors cannot fit, refused before allocating; sparse input too large
    to densify, fitted sparse by `factorize` and refused by the functions that densify it."""

    f3 = faces(t / "three", n=3)
    t0 = time.perf_counter()
    big = ["factorize", "--data-dir", f3, "--ranks", "100000", "--init", "random"]
    rows = [cli(7, "`factorize --ranks 100000 --init random`, 3 images", big + ["--out", t / "f"])]
    quick = time.perf_counter() - t0 < 10
    rows[-1]["after"] = ("refused within 10 s" if quick else "SLOW") + "; " + absent(t / "f")
    V = np.random.default_rng(0).random((12288, 3))
    r = np.random.default_rng(0)
    ij = r.integers(0, 10**5, (2, 1000)) * [[10], [1]]
    huge = sp.csr_matrix((r.random(1000), tuple(ij)), shape=(10**6, 10**5))
    small = sp.random(200, 100, density=0.05, format="csr", random_state=0)
    dense = torch.from_numpy(small.toarray())
    coo = torch.sparse_coo_tensor(torch.tensor([[0], [0]]), torch.tensor([1.0]), (10**6,) * 2)
    shape = lambda res: f"a fit, H {tuple(res.H.shape)}"  # noqa: E731

    def kept_sparse(case: dict, X: sp.csr_matrix | torch.Tensor) -> dict:
        """The process's peak memory after a fit of ``X``, beside ``X``'s dense size."""
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        item = X.element_size() if isinstance(X, torch.Tensor) else X.dtype.itemsize
        dense = math.prod(X.shape) * item
        case["after"] = (
            f"never densified: the process's peak memory so far {format_bytes(peak)} "
            f"(V dense: {format_bytes(dense)})"
        )
        return case

    rows += [
        lib(7, "`factorize(V, 100000, init='random')`, V 12288 x 3",
            lambda: dnmf.factorize(V, 100000, init="random")),
        kept_sparse(lib(7, "scipy CSR 10⁶ x 10⁵, 1000 nonzeros: `factorize`",
                        lambda: shape(dnmf.factorize(huge, 2, max_iter=5))), huge),
        lib(7, "the same: `select_ranks`", lambda: dnmf.select_ranks(huge, [1, 2])),
        lib(7, "the same: `dnmf.distributed.factorize_columns`",
            lambda: factorize_columns(huge, 2)),
        lib(7, "scipy CSR 200 x 100 at 5 %", lambda: shape(dnmf.factorize(small, 2, max_iter=5))),
        kept_sparse(lib(7, "torch sparse COO 10⁶ x 10⁶, 1 nonzero: `factorize`",
                        lambda: shape(dnmf.factorize(coo, 2, max_iter=5))), coo),
        lib(7, "the same: `select_ranks`", lambda: dnmf.select_ranks(coo, [1, 2])),
        lib(7, "torch sparse COO 200 x 100",
            lambda: shape(dnmf.factorize(dense.to_sparse(), 2, max_iter=5))),
        lib(7, "torch sparse CSR 200 x 100",
            lambda: shape(dnmf.factorize(dense.to_sparse_csr(), 2, max_iter=5))),
    ]  # fmt: skip
    return rows


# --------------------------------------------------------------------------- 8, 9, 10
def seed_cases(t: Path) -> list[dict]:
    """Item 8: seeds out of range, on the command line and in the library."""

    V = np.random.default_rng(0).random((10, 8))
    f8 = faces(t / "faces", n=6)
    fz = ["factorize", "--data-dir", f8, "--ranks", "2", "--out", t / "f"]
    return [
        cli(8, f"`run --seed {BIG_SEED}`", RUN + ["--seed", BIG_SEED, "--out", t / "r"]),
        cli(8, f"`factorize --seed {BIG_SEED}`", fz + ["--seed", BIG_SEED], absent(t / "f")),
        lib(8, "`select_ranks(V, [1, 2], seed=-1)`",
            lambda: dnmf.select_ranks(V, [1, 2], seed=-1)),
        lib(8, "`select_ranks(V, [1, 2], seed=1.5)`",
            lambda: dnmf.select_ranks(V, [1, 2], seed=1.5)),
        lib(8, "`factorize(V, 2, seed=2**64)`", lambda: dnmf.factorize(V, 2, seed=2**64)),
    ]  # fmt: skip


def quiet_cases(t: Path) -> list[dict]:
    """Item 9: ``factorize --quiet`` prints its one-line result and nothing else."""
    f8 = faces(t / "faces", n=12)
    base = ["factorize", "--data-dir", f8, "--size", "8", "--gray", "--max-iter", "5", "--quiet"]
    cases = {
        "`factorize --ranks 2 --quiet`": ["--ranks", "2"],
        "`factorize --ranks auto --quiet`": ["--ranks", "auto", "--rank-candidates", "1", "2"],
    }
    rows = []
    for i, (case, extra) in enumerate(cases.items()):
        r = run_module("benchmarks", base + extra + ["--cv-folds", "2"] * (i == 1)
                       + ["--out", t / f"q{i}"])  # fmt: skip
        out, err = r["stdout"].strip().splitlines(), r["stderr"].strip().splitlines()
        warned = sum(ln.startswith("warning: ") for ln in err)
        said = f"stdout: {' / '.join(out)}"
        after = f"stderr: {warned} warning line(s)" + (
            ", nothing else" if warned == len(err) else f", and {len(err) - warned} OTHER LINES"
        )
        rows.append(row(9, case, r["rc"], said, after, argv=command("benchmarks", r["args"])))
    return rows


def config_cases(t: Path) -> list[dict]:
    """Item 10: NaN and infinity in the training settings."""

    torch.manual_seed(0)
    model = convae.ConvAE(in_channels=1, base_channels=4)
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(4, 1, 16, 16)
    cfg = convae.TrainConfig(epochs=1, batch_size=4, ssim_weight=math.nan)
    rows = [
        lib(10, "`train(..., TrainConfig(ssim_weight=nan))`",
            lambda: convae.train(model, (x, x), None, cfg, progress=False)),
        lib(10, "`TrainConfig(lr=inf).validate()`",
            lambda: convae.TrainConfig(lr=math.inf).validate()),
        lib(10, "`mse_ssim_loss(x, y, ssim_weight=nan)`",
            lambda: convae.mse_ssim_loss(x, x, ssim_weight=math.nan)),
    ]  # fmt: skip
    same = all(torch.equal(v, w0[k]) for k, v in model.state_dict().items())
    rows[0]["after"] = "the model untrained" if same else "MODEL CHANGED"
    return rows


# --------------------------------------------------------------------------- 11
def distributed_cases(t: Path) -> list[dict]:
    """Item 11: ``python -m dnmf.distributed`` with a bad flag, a bomb image, bad outputs."""
    np.save(t / "V.npy", np.random.default_rng(0).random((12, 9)))
    (t / "imgs").mkdir()
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(t / "imgs" / "a.png")
    _png_header(t / "imgs" / "b.png", 20000, 20000)  # a 400-megapixel header, 60 bytes
    npy = ["--npy", t / "V.npy", "--ranks", "2"]
    rows = [
        distributed(t, "`--threads 0`", npy + ["--threads", "0", "--out", t / "r.npz"]),
        distributed(t, "a decompression-bomb PNG in `--images`",
                    ["--images", t / "imgs", "--ranks", "1", "--out", t / "r.npz"]),
    ]  # fmt: skip
    for r in rows:
        r["after"] = absent(t / "r.npz")
    rows.append(unwritable_out(t, npy))
    rows.append(full_disk_after_fit(t))
    return rows


def distributed(t: Path, case: str, args: list) -> dict:
    """One ``python -m dnmf.distributed`` command as a row."""
    r = run_module("dnmf.distributed", args, cwd=t)
    fit = "no fit ran" if not r["stdout"].strip() else "A FIT RAN"
    return row(
        11, case, r["rc"], one_error(r["stderr"]), fit, argv=command("dnmf.distributed", args)
    )


def unwritable_out(t: Path, npy: list) -> dict:
    """``--out`` in a folder no file can be created in: a read-only tmpfs (as root) or a
    folder without write permission (otherwise)."""
    ro = t / "read-only"
    ro.mkdir()
    mounted = os.geteuid() == 0 and diskfault.can_mount()
    if mounted:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", ro], check=True)
    elif os.geteuid() != 0:
        ro.chmod(0o555)
    else:
        return row(11, "`--out` in a read-only folder", "-", "skipped: cannot mount here")
    try:
        r = distributed(t, "`--out` in a read-only folder", npy + ["--out", ro / "r.npz"])
    finally:
        subprocess.run(["umount", ro], check=False) if mounted else ro.chmod(0o755)
    r["after"] = r["after"].replace("no fit ran", "refused before the fit (no result line)")
    return r


def full_disk_after_fit(t: Path) -> dict:
    """The disk fills during the fit: ``ENOSPC`` at the result file's write (the tests'
    driver, which makes ``np.savez`` fail), over an earlier result."""
    out = t / "old.npz"
    out.write_bytes(b"the previous result")
    args = ["--npy", t / "V.npy", "--ranks", "2", "--max-iter", "5", "--out", out]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    p = subprocess.run([sys.executable, "-c", _FULL_DISK, *map(str, args)], cwd=t, env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    kept = out.read_bytes() == b"the previous result"
    stray = sorted(n for n in os.listdir(t) if n.startswith((".old", "old.npz.")))
    after = ("the earlier result kept" if kept else "EARLIER RESULT LOST") + (
        "; no temporary file" if not stray else f"; LEFT {stray}"
    )
    return row(11, "a full disk when the result is written", p.returncode,
               one_error(p.stderr), after, argv=command("dnmf.distributed", args))  # fmt: skip


# --------------------------------------------------------------------------- 12
def perf_cases(t: Path) -> list[dict]:
    """Item 12: the ``perf/`` tools with a bad case name, folder, file or solver."""
    (t / "targets.json").write_text("this is not JSON\n")
    out = ["--out", t / "out"]
    ttt = "perf.time_to_target"
    cases = [
        (ttt, "`--only nosuch`", ["--only", "nosuch"]),
        (ttt, "`--faces-dir` missing", ["--quick", "--faces-dir", t / "nonexistent"]),
        (ttt, "`--targets` a non-JSON file",
         ["--quick", "--only", "deep-k2", "--targets", t / "targets.json"]),
        ("perf.solver_validation", "`--solvers hals nosuch`", ["--solvers", "hals", "nosuch"]),
    ]  # fmt: skip
    rows = []
    for module, case, args in cases:
        r = run_module(module, args + out)
        name = module.removeprefix("perf.")
        rows.append(row(12, f"`{name}` {case}", r["rc"], one_error(r["stderr"]), absent(t / "out"),
                        argv=command(module, args + out)))  # fmt: skip
    rows[2]["after"] += "; the file unchanged" * (
        (t / "targets.json").read_text() == "this is not JSON\n"
    )
    return rows + [help_case()]


def help_case() -> dict:
    """``time_to_target --help``: the description paragraph, whole."""
    r = run_module("perf.time_to_target", ["--help"])
    description = " ".join(r["stdout"].split("\n\n")[1].split())
    whole = description.endswith((".", "?"))
    said = f"description ends: '…{description[-70:]}'"
    return row(12, "`time_to_target --help`", r["rc"], said,
               "ends with a full sentence" if whole else "CUT MID-SENTENCE",
               argv=command("perf.time_to_target", ["--help"]))  # fmt: skip


# --------------------------------------------------------------------------- 13
def load_cases(t: Path) -> list[dict]:
    """Item 13: result files whose fields are wrong (written as version 1, without a
    checksum, so that only the field checks stand guard)."""

    res = dnmf.factorize(np.random.default_rng(0).random((12, 9)), [4, 2], seed=0, max_iter=10)
    res.save(t / "r.npz")
    with np.load(t / "r.npz") as z:
        good = {k: z[k] for k in z.files if k != CHECKSUM_KEY}
    changes = {
        "`format_version` 0": {"format_version": np.asarray(0)},
        "`format_version` -5": {"format_version": np.asarray(-5)},
        "`format_version` `'1'`": {"format_version": np.asarray("1")},
        "`format_version` 1.9": {"format_version": np.asarray(1.9)},
        "`W2` of a shape that does not chain": {"W2": np.ones((3, 2))},
        "NaN in `W1`": {"W1": np.full((12, 4), np.nan)},
        "`n_layers` -1": {"n_layers": np.asarray(-1)},
    }
    rows = []
    for i, (case, change) in enumerate(changes.items()):
        path = t / f"bad{i}.npz"
        np.savez(path, **{**good, "format_version": np.asarray(1), **change})
        rows.append(lib(13, f"`dnmf.load`: {case}", lambda p=path: dnmf.load(p)))
    return rows


# --------------------------------------------------------------------------- 14
def signal_cases(t: Path) -> list[dict]:
    """Item 14: SIGTERM/SIGHUP in the middle of ``run`` and ``factorize``."""

    f8 = faces(t / "faces", n=12)
    runs, data = t / "runs", ["--data-dir", f8]
    fit = "benchmarks.runner:fit_and_restore"
    load = "benchmarks.factorize_faces:load_face_matrix"
    cases = [  # (case, out, target, signal, argv)
        ("SIGTERM during `run`", "a", fit, "SIGTERM", RUN + data),
        ("SIGHUP during `run --overwrite`", "prev", fit, "SIGHUP", RUN + data + ["--overwrite"]),
        ("SIGTERM during `factorize`", "f", load, "SIGTERM", FACTORIZE + data),
        ("SIGHUP during `factorize`", "g", load, "SIGHUP", FACTORIZE + data),
    ]
    specs = [{"argv": RUN + data + ["--out", runs / "prev"]}]
    specs += [{"argv": a + ["--out", runs / o], "target": g, "signal": sig}
              for _, o, g, sig, a in cases]  # fmt: skip
    got = diskfault.run_cases(specs)
    assert got[0]["rc"] == 0, got[0]["err"]
    rows = []
    for (case, out, *_), c in zip(cases, got[1:]):
        kept = out != "prev" or (runs / "prev" / "run.json").is_file()
        state = (
            ("previous run kept" if kept else "PREVIOUS RUN LOST")
            if out == "prev"
            else (absent(runs / out))
        )
        left = leftovers(runs, out)
        after = state + ("; no `.X.lock`, no `.X.tmp-PID`" if not left else f"; LEFT {left}")
        lines = [ln for ln in c["err"].splitlines() if ln.strip()]
        rows.append(row(14, case + " (sent by the process itself)", c["rc"], lines[-1], after,
                        topic="SIGTERM / SIGHUP", argv=c["argv"]))  # fmt: skip
    return rows + [outside_sigterm(t, f8)]


def outside_sigterm(t: Path, f8: Path) -> dict:
    """A real ``kill -TERM`` from another process while ``factorize`` fits."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    runs = t / "long"
    argv = ["factorize", "--data-dir", f8, "--ranks", "2", "--size", "16", "--tol", "0"]
    argv += ["--max-iter", "100000000", "--quiet", "--out", runs / "x"]
    p = subprocess.Popen([sys.executable, "-m", "benchmarks", *map(str, argv)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    marker = runs / f".x.tmp-{p.pid}" / ".deblur-bench-run"
    while not marker.is_file() and p.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    left = sorted(os.listdir(runs)) if runs.exists() else []
    after = "nothing left in the output's folder" if not left else f"LEFT {left}"
    line = err.strip().splitlines()[-1] if err.strip() else ""
    return row(14, "`kill -TERM` of `factorize` while it fits", p.returncode, line, after,
               topic="SIGTERM / SIGHUP", argv=command("benchmarks", argv))  # fmt: skip


def restore_input_cases(t: Path) -> list[dict]:
    """Item 14: an animation, a multi-page TIFF, transparency, ``--out`` inside the input."""
    first, *rest = (Image.fromarray(np.full((40, 48, 3), v, np.uint8)) for v in (30, 150, 250))
    first.save(t / "anim.gif", save_all=True, append_images=rest, duration=100, loop=0)
    first.save(t / "pages.tiff", save_all=True, append_images=rest[:1])
    rgba = np.zeros((40, 48, 4), np.uint8)
    rgba[..., 0], rgba[:, 24:, 3] = 255, 255  # red, hidden on the left half (alpha 0)
    Image.fromarray(rgba, "RGBA").save(t / "logo.png")
    photos = t / "photos"
    photos.mkdir()
    Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(photos / "me.jpg")
    base = ["restore", "--method", "identity", "--quiet"]
    topic = {"topic": "`restore` inputs"}
    rows = [
        cli(14, "an animated GIF (3 frames)", base + [t / "anim.gif", "--out", t / "o1"], **topic),
        cli(14, "a TIFF of 2 pages", base + [t / "pages.tiff", "--out", t / "o2"], **topic),
        cli(14, "a PNG, half transparent (red under alpha 0)",
            base + [t / "logo.png", "--out", t / "o3"], **topic),
        cli(14, "`--out` = the input folder", base + [photos, "--out", photos], **topic),
        cli(14, "`--out` inside the input folder",
            base + [photos, "--out", photos / "restored"], **topic),
    ]  # fmt: skip
    first_frame = np.abs(np.asarray(Image.open(t / "o1" / "anim.png"), float) - 30).max() <= 1
    rows[0]["after"] = "the first frame written" if first_frame else "NOT THE FIRST FRAME"
    logo = np.asarray(Image.open(t / "o3" / "logo.png"))
    white = (logo[:, :24] == 255).all() and (logo[:, 24:] == (255, 0, 0)).all()
    rows[2]["said"] = rows[2]["said"] or "(no message)"
    page = np.abs(np.asarray(Image.open(t / "o2" / "pages.png"), float) - 30).max() <= 1
    rows[1]["after"] = "the first page written" if page else "NOT THE FIRST PAGE"
    rows[2]["after"] = "transparent half white, opaque half red" if white else "NOT WHITE"
    mine = sorted(os.listdir(photos)) == ["me.jpg"]
    for r in rows[3:]:
        r["after"] = "the folder holds only `me.jpg`" if mine else "FOLDER CHANGED"
    return rows


def factorize_flag_cases(t: Path) -> list[dict]:
    """Item 14: search flags with fixed ranks, and ``--ranks auto``'s default candidates."""

    f8 = faces(t / "faces", n=12)
    base = ["factorize", "--data-dir", f8, "--size", "8", "--gray", "--max-iter", "5"]
    topic = {"topic": "`factorize` flags"}
    rows = [
        cli(14, "`--rank-candidates 1 2` with `--ranks 3`",
            base + ["--ranks", "3", "--rank-candidates", "1", "2", "--out", t / "a"], **topic),
        cli(14, "`--cv-folds 3 --cv-rule 1se` with `--ranks 3 2`",
            base + ["--ranks", "3", "2", "--cv-folds", "3", "--cv-rule", "1se", "--out", t / "b"],
            **topic),
        cli(14, "`--ranks auto` on 12 gray 8 x 8 images (V 64 x 12)",
            base + ["--ranks", "auto", "--quiet", "--out", t / "c"], **topic),
    ]  # fmt: skip
    rows[0]["after"] = rows[1]["after"] = absent(t / "a", t / "b")
    sel = json.loads((t / "c" / "run.json").read_text())["rank_selection"]
    lib_default = sel["candidates"] == default_candidates((64, 12))
    rows[2]["said"] = f"searched {sel['candidates']}, chose {sel['chosen']}"
    rows[2]["after"] = "the library's candidates" if lib_default else "NOT THE LIBRARY'S"
    return rows


def small_library_cases(t: Path) -> list[dict]:
    """Item 14: ``heldout_mask`` out of range, ``DeepNMF(4)``."""

    V = np.random.default_rng(0).random((12, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = dnmf.select_ranks(V, [1, 2], seed=0, max_iter=5, tol=0)
    est = dnmf.DeepNMF(4, random_state=0, max_iter=5)
    topic = {"topic": "folds, `DeepNMF(n)`"}
    return [
        lib(14, "`RankSelection.heldout_mask(99)`", lambda: sel.heldout_mask(99), **topic),
        lib(14, "`RankSelection.heldout_mask(-1)`", lambda: sel.heldout_mask(-1), **topic),
        lib(14, "`DeepNMF(4).fit(X)`", lambda: f"n_components_ {est.fit(V).n_components_}",
            **topic),
    ]  # fmt: skip


CASES = (
    masked_cases,
    checkpoint_cases,
    report_cases,
    save_cases,
    callback_cases,
    disk_cases,
    memory_cases,
    seed_cases,
    quiet_cases,
    config_cases,
    distributed_cases,
    perf_cases,
    load_cases,
    signal_cases,
    restore_input_cases,
    factorize_flag_cases,
    small_library_cases,
)
