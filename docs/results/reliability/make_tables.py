"""Replays every case of the two reliability reviews and counts the suite's reliability cases.

Run from the repository root (several minutes on two cores; as root on Linux it also mounts
small tmpfs file systems for the full-disk cases):

    .venv/bin/python docs/results/reliability/make_tables.py [FUNCTION ...]

It writes, beside itself, ``cases.json`` (every case: the command, its exit code, what it
printed, and what was checked afterwards, with temporary paths shown as ``TMP``),
``cases.md`` and ``cases2.md`` (the tables of the first and the second review) and
``counts.json``/``counts.md`` (the reliability tests collected by pytest, by kind and package).
Naming functions (``user_cases``, ``disk_cases``, ...) replays only those and keeps the other
rows of ``cases.json``. The first review's cases are here; the second's in ``review2.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import review2
from PIL import Image
from replay import RUN, attempt, call, faces, row, tree
from sklearn.exceptions import ConvergenceWarning

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def user_cases(t: Path) -> list[dict]:
    """Items 1, 2, 6, 7, 8, 12, 13 of the review: one command each, and what survived it."""
    f8 = faces(t / "data" / "faces")
    (t / "work").mkdir()
    (t / "work" / "notes.md").write_text("mine")
    (t / "thesis" / "photos").mkdir(parents=True)
    (t / "thesis" / "thesis.tex").write_text("x")
    prev = t / "runs" / "prev"
    assert call(RUN + ["--data-dir", f8, "--out", prev])["rc"] == 0
    (t / "text.pt").write_text("hello world\n")
    (t / "rand.pt").write_bytes(np.random.default_rng(0).bytes(3000))
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(t / "tiny.png")
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(t / "big.png")
    (t / "bad.png").write_text("not an image")
    nm = t / "no_method"
    nm.mkdir()
    (nm / "per_image.csv").write_text("image,psnr,ssim,mse\na.png,20,0.5,0.01\n")
    nt = t / "no_timings"
    shutil.copytree(prev, nt)
    rec = json.loads((nt / "run.json").read_text())
    del rec["timings"]
    (nt / "run.json").write_text(json.dumps(rec))
    np.save(t / "psf.npy", np.ones((5, 5)))
    (t / "cut.npy").write_bytes((t / "psf.npy").read_bytes()[:-30])
    keep = {d: tree(t / d) for d in ("work", "data", "thesis", "runs/prev")}
    cases = [
        (1, "`--out .` with `--overwrite`", RUN + ["--data-dir", f8, "--out", ".", "--overwrite"]),
        (1, "`--out` = `--data-dir`", RUN + ["--data-dir", f8, "--out", f8, "--overwrite"]),
        (
            1,
            "`--out` a folder holding `thesis.tex`, `photos/`",
            RUN + ["--data-dir", f8, "--out", t / "thesis", "--overwrite"],
        ),
        (
            2,
            "`--overwrite`, missing `--data-dir`",
            RUN + ["--data-dir", t / "nope", "--out", prev, "--overwrite"],
        ),
        (
            2,
            "`--overwrite`, bad `--checkpoint`",
            [
                "run",
                "--preset",
                "smoke",
                "--methods",
                "identity",
                "convae",
                "--quiet",
                "--checkpoint",
                f"convae={t / 'text.pt'}",
                "--data-dir",
                f8,
                "--out",
                prev,
                "--overwrite",
            ],
        ),
        (
            6,
            "text file as `restore --checkpoint`",
            [
                "restore",
                t / "big.png",
                "--method",
                "convae",
                "--checkpoint",
                t / "text.pt",
                "--out",
                t / "o",
            ],
        ),
        (
            6,
            "random bytes as `restore --checkpoint`",
            [
                "restore",
                t / "big.png",
                "--method",
                "convae-unet",
                "--checkpoint",
                t / "rand.pt",
                "--out",
                t / "o",
            ],
        ),
        (6, "`report` on a `per_image.csv` without `method`", ["report", nm]),
        (6, "`report` on a `run.json` without `timings`", ["report", nt]),
        (
            6,
            "`factorize --device cuda` without CUDA",
            ["factorize", "--data-dir", f8, "--device", "cuda", "--out", t / "fz"],
        ),
        (
            7,
            "`restore` with no readable input",
            ["restore", t / "bad.png", "--method", "identity", "--out", t / "o"],
        ),
        (
            8,
            "`restore --method wiener`, an image smaller than the kernel",
            ["restore", t / "big.png", t / "tiny.png", "--method", "wiener", "--out", t / "o"],
        ),
    ]
    flags = [
        ("--balance -1", ["restore", t / "big.png", "--method", "wiener", "--balance", "-1"]),
        (
            "--iterations -3",
            ["restore", t / "big.png", "--method", "richardson-lucy", "--iterations", "-3"],
        ),
        ("--noise nan", RUN + ["--noise", "nan"]),
        ("--noise -0.1", RUN + ["--noise", "-0.1"]),
        ("--sigma inf", RUN + ["--sigma", "inf"]),
        ("--sigma 0", RUN + ["--sigma", "0"]),
        ("--sigma with --psf", RUN + ["--sigma", "2", "--psf", t / "psf.npy"]),
        ("--threads 0", RUN + ["--threads", "0"]),
        ("train --epochs 0", ["train", "convae", "--preset", "smoke", "--epochs", "0"]),
        ("report --baseline nosuch", ["report", prev, "--baseline", "nosuch"]),
        ("--size 0", RUN + ["--size", "0"]),
        ("--size -5", RUN + ["--size", "-5"]),
        ("--seed -1", RUN + ["--seed", "-1"]),
        ("--max-images -1", RUN + ["--max-images", "-1"]),
        ("factorize --size 0", ["factorize", "--data-dir", f8, "--size", "0"]),
        ("truncated --psf .npy", RUN + ["--psf", t / "cut.npy"]),
    ]
    cases += [
        (13, f"`{name}`", argv + ["--out", t / "o"] if argv[0] != "report" else argv)
        for name, argv in flags
    ]
    rows = []
    cwd = os.getcwd()
    os.chdir(t / "work")
    try:
        for item, case, argv in cases:
            rows.append({"item": item, "case": case, "argv": [str(a) for a in argv], **call(argv)})
    finally:
        os.chdir(cwd)
    intact = all(tree(t / d) == v for d, v in keep.items())
    made = (t / "o").exists() and any((t / "o").iterdir())
    for r in rows:
        r["after"] = "nothing deleted" if intact else "SOMETHING WAS DELETED"
        if r["item"] in (7, 8, 13):
            r["after"] += "; no output written" if not made else "; OUTPUT WRITTEN"
        r.pop("stdout")
    return rows


def depth_cases(t: Path) -> list[dict]:
    """Item 3 and 12: the same faces at 8 and 16 bits, and a sideways phone photo."""
    out = []
    for kind, name in (
        ("8", "8-bit RGB PNGs"),
        ("16rgb", "the same at 16 bits"),
        ("8gray", "8-bit gray PNGs (`--gray`)"),
        ("16gray", "the same at 16 bits (`--gray`)"),
    ):
        d = faces(t / f"f{kind}", kind)
        gray = ["--gray"] if "gray" in kind else []
        r = call(RUN + gray + ["--data-dir", d, "--out", t / f"run-{d.name}"])
        per = json.loads((t / f"run-{d.name}" / "run.json").read_text())
        import pandas as pd

        psnr = pd.read_csv(t / f"run-{d.name}" / "per_image.csv")["psnr"].mean()
        fz = ["factorize", "--data-dir", d, "--ranks", "8", "--size", "24", "--max-iter", "50"]
        call(fz + gray + ["--no-progress", "--out", t / f"fz-{d.name}"])
        rel = json.loads((t / f"fz-{d.name}" / "run.json").read_text())["relative_error"]
        out.append(
            {
                "item": 3,
                "case": f"`run`/`factorize` on {name}",
                "rc": r["rc"],
                "said": f"identity PSNR {psnr:.2f} dB on {per['data']['n_test']} test "
                f"images; factorize relative error {rel:.4f}",
                "after": "",
            }
        )
    src = sorted((t / "f16gray").iterdir())[0]
    g = np.asarray(Image.open(src)).astype(np.int64)
    call(["restore", src, "--method", "identity", "--out", t / "r16", "--quiet", "--gray"])
    w = np.asarray(Image.open(t / "r16" / f"{src.stem}.png")).astype(np.int64)
    out.append(
        {
            "item": 3,
            "case": "`restore` of a 16-bit gray PNG",
            "rc": 0,
            "said": f"input {g.min()}..{g.max()} of 65535, written {w.min()}..{w.max()} of 255; "
            f"largest difference to input / 257: {np.abs(w - g / 257).max():.2f}",
            "after": "",
        }
    )
    upright = np.zeros((20, 30, 3), np.uint8)
    upright[:5, :10] = 255
    im = Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1)))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(t / "phone.jpg", exif=exif, quality=95)
    call(["restore", t / "phone.jpg", "--method", "identity", "--out", t / "rp", "--quiet"])
    p = np.asarray(Image.open(t / "rp" / "phone.png"))
    out.append(
        {
            "item": 12,
            "case": "`restore` of a photo stored sideways (EXIF orientation 6)",
            "rc": 0,
            "said": f"stored {im.size[0]}x{im.size[1]}, written "
            f"{p.shape[1]}x{p.shape[0]} (upright: {p[:5, :10].min() > 200})",
            "after": "",
        }
    )
    return out


def process_cases(t: Path) -> list[dict]:
    """Items 4, 5, 11: two real processes, a resumed training, file modes under two umasks."""
    f8 = faces(t / "faces")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "benchmarks"]
    out = t / "busy"
    first = subprocess.Popen(
        [*cmd, *RUN, "--data-dir", f8, "--out", out],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = t / ".busy.lock"
    while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
        assert first.poll() is None
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGSTOP)
    second = subprocess.run(
        [*cmd, *RUN, "--data-dir", f8, "--out", out, "--overwrite"],
        env=env,
        capture_output=True,
        text=True,
    )
    os.kill(first.pid, signal.SIGCONT)
    first.communicate()
    rows = [
        {
            "item": 4,
            "case": "two `run`s into one `--out` at once",
            "rc": second.returncode,
            "said": second.stderr.strip().splitlines()[-1],
            "after": f"the first run finished (exit {first.returncode}) and kept its results",
        }
    ]
    a, b = t / "ta", t / "tb"
    train = ["train", "convae", "--preset", "smoke", "--data-dir", f8, "--quiet"]
    assert call(train + ["--epochs", "1", "--out", a])["rc"] == 0
    shutil.copytree(a, b)
    before = tree(b)
    r = call(train + ["--epochs", "2", "--resume", a / "last.pt", "--out", b])
    rows.append(
        {
            "item": 5,
            "case": "`train --resume A/last.pt --out B`",
            **r,
            "after": "B unchanged" if tree(b) == before else "B CHANGED",
        }
    )
    rows[-1].pop("stdout")
    modes = []
    for umask in (0o022, 0o002):
        old = os.umask(umask)
        try:
            call(RUN + ["--data-dir", f8, "--out", t / f"u{umask:o}"])
        finally:
            os.umask(old)
        got = {oct(p.stat().st_mode & 0o777) for p in (t / f"u{umask:o}").iterdir()}
        modes.append(f"umask {umask:03o}: files {', '.join(sorted(got))}")
    rows.append(
        {
            "item": 11,
            "case": "modes of a run's files",
            "rc": 0,
            "said": "; ".join(modes),
            "after": "",
        }
    )
    return rows


def library_cases(t: Path) -> list[dict]:
    """Items 6 (library half), 9, 10, 13 (masked arrays), 14: what the libraries do now."""
    import dnmf

    rows = []

    def lib(item: int, case: str, fn) -> None:
        rows.append(row(item, case, "-", attempt(fn)))

    (t / "e.npz").write_bytes(b"")
    (t / "t.npz").write_text("text")
    np.savez(t / "f.npz", a=np.zeros(3))
    for name, what in (("e.npz", "an empty"), ("t.npz", "a text"), ("f.npz", "a foreign")):
        lib(9, f"`dnmf.load` of {what} file", lambda n=name: dnmf.load(t / n))
    V = np.random.default_rng(0).random((30, 20))
    res = dnmf.factorize(V, [4], max_iter=20)
    bad = [w.copy() for w in res.Ws]
    bad[0][0, 0] = np.nan
    lib(10, "`dnmf.solve_h` with NaN in `Ws`", lambda: dnmf.solve_h(V, bad).H.shape)
    lib(
        6,
        "`dnmf.factorize(..., device='cuda')` without CUDA",
        lambda: dnmf.factorize(V, [4], max_iter=5, device="cuda").ranks,
    )
    Vm = np.ma.masked_array(V.copy(), mask=np.zeros_like(V, bool))
    Vm.mask[0, :5] = True
    Vm.data[0, :5] = 1e6  # garbage under the mask: a fit that drops the mask sees it

    def masked_vs_plain() -> str:
        res = dnmf.factorize(Vm, [4], max_iter=50, init="random", seed=0)
        under = res.reconstruct()[0, :5]
        return (
            f"a fit whose reconstruction under the mask is {under.min():.2f}..{under.max():.2f} "
            f"(the data there: 1e6; elsewhere they lie in 0..1)"
        )

    lib(13, "`np.ma` masked array to `dnmf.factorize`", masked_vs_plain)
    return rows


def progress_case(t: Path) -> list[dict]:
    """Item 14: the factorize progress bar on a real fit, next to the fit's own seconds."""
    f8 = faces(t / "faces", n=24)
    err = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "factorize",
            "--data-dir",
            f8,
            "--ranks",
            "16",
            "8",
            "--size",
            "32",
            "--max-iter",
            "60",
            "--tol",
            "0",
            "--out",
            t / "fz",
        ],
        capture_output=True,
        text=True,
    )
    bars = [s for s in re.split(r"[\r\n]", err.stderr) if "it/s" in s or "s/it" in s]
    secs = json.loads((t / "fz" / "run.json").read_text())["seconds"]["factorize"]
    return [
        {
            "item": 14,
            "case": "`factorize` progress bar",
            "rc": err.returncode,
            "said": f"last bar: {bars[-1].strip() if bars else '(none)'}",
            "after": f"the fit, pretraining included, took {secs:.1f} s",
        }
    ]


KINDS = {"bad input": "test_bad_input", "fault": "test_fault", "concurrency": "test_concurrency"}
OTHER = "other reliability checks"


def kind_of(test_id: str) -> str:
    """A test's kind, from its function name (``path::test_bad_input_...[param]``)."""
    name = test_id.split("::")[-1]
    return next((k for k, prefix in KINDS.items() if name.startswith(prefix)), OTHER)


def counts() -> dict:
    """Reliability tests collected by pytest in every ``tests/**/test_reliability_*.py``, by
    kind (from the test names) and by package (the folder under ``tests/``)."""
    files = sorted(str(p.relative_to(REPO)) for p in REPO.glob("tests/**/test_reliability_*.py"))
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ids = [ln for ln in r.stdout.splitlines() if "::" in ln]
    packages = sorted({i.split("/")[1] for i in ids})
    table = {pkg: dict.fromkeys([*KINDS, OTHER], 0) for pkg in [*packages, "total"]}
    for i in ids:
        for column in (i.split("/")[1], "total"):
            table[column][kind_of(i)] += 1
    return {"files": files, "by_package": table}


def counts_md(c: dict) -> str:
    """The counts as a table: one row per kind, one column per package."""
    table = c["by_package"]
    cols = list(table)
    lines = ["| kind | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for kind in [*KINDS, OTHER]:
        lines.append(f"| {kind} | " + " | ".join(str(table[p][kind]) for p in cols) + " |")
    sums = [str(sum(table[p].values())) for p in cols]
    lines.append("| **total** | " + " | ".join(f"**{n}**" for n in sums) + " |")
    return "\n".join(lines) + "\n"


TOPICS = {
    1: "`--overwrite` target",
    2: "failed replacement",
    3: "16-bit images",
    4: "concurrent runs",
    5: "resume into another folder",
    6: "tracebacks",
    7: "nothing restored",
    8: "image smaller than the kernel",
    9: "damaged result files",
    10: "NaN / Inf codes",
    11: "file modes",
    12: "EXIF orientation",
    13: "nonsense values",
    14: "progress bar",
}


def code(text: str) -> str:
    """``text`` as inline code in a table cell."""
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def to_md(rows: list[dict], topics: dict) -> str:
    lines = ["| topic | case | exit | what it says now | afterwards |", "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["item"]):
        topic = r.get("topic") or topics[r["item"]]
        lines.append(f"| {topic} | {r['case']} | {r['rc']} | {code(r['said'])} | {r['after']} |")
    return "\n".join(lines) + "\n"


FIRST = (user_cases, depth_cases, process_cases, library_cases, progress_case)


def stable(text: str, t: Path) -> str:
    """Temporary paths as ``TMP``, the repository as a relative path, and the memory this
    machine had free as ``N``."""
    text = text.replace(str(t), "TMP").replace(f"{REPO}/", "")
    return re.sub(r"the [\d.]+ [KMGT]iB of memory available", "the N GiB of memory available", text)


def replay(functions: list, t: Path) -> list[dict]:
    """Every case of ``functions``, each given a folder of its own under ``t``."""
    rows = []
    for fn in functions:
        (t / fn.__name__).mkdir()
        for r in fn(t / fn.__name__):
            r["fn"] = fn.__name__
            r["review"] = 1 if fn in FIRST else 2
            r["said"] = stable(r["said"], t)
            r["after"] = stable(r["after"], t)
            r["argv"] = [stable(str(a), t) for a in r.get("argv", [])]
            for key in ("stdout", "stderr"):
                r.pop(key, None)
            rows.append(r)
    return rows


def main(names: list[str]) -> None:
    """Replay every case (or only the functions named), write the tables and the counts."""
    os.chdir(REPO)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    every = {fn.__name__: fn for fn in FIRST + review2.CASES}
    chosen = [every[n] for n in names] if names else list(every.values())
    kept = []
    if names and (HERE / "cases.json").exists():
        old = json.loads((HERE / "cases.json").read_text())
        kept = [r for r in old if r.get("fn") in every and r["fn"] not in names]
    with tempfile.TemporaryDirectory() as tmp:
        rows = kept + replay(chosen, Path(tmp).resolve())
    rows.sort(key=lambda r: list(every).index(r["fn"]))
    (HERE / "cases.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    first = [r for r in rows if r["review"] == 1]
    (HERE / "cases.md").write_text(to_md(first, TOPICS))
    (HERE / "cases2.md").write_text(to_md([r for r in rows if r["review"] == 2], review2.TOPICS))
    c = counts()
    (HERE / "counts.json").write_text(json.dumps(c, indent=2) + "\n")
    (HERE / "counts.md").write_text(counts_md(c))
    print((HERE / "cases2.md").read_text() + "\n" + (HERE / "counts.md").read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
