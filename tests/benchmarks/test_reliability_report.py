"""``report`` on damaged result files: a real smoke run, copied, then damaged one way per case.

Every damaged copy is refused (exit 1) with the file and, where the damage sits in a row, the
row named, and no report is written; the undamaged run, and one written before ``run.json``
held the table's checksums, still report.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

TABLE = "per_image.csv"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, run_cli) -> Path:
    """One finished smoke run of two methods (identity, wiener)."""
    out = tmp_path_factory.mktemp("report") / "runs" / "seed0"
    r = run_cli(
        "run", "--preset", "smoke", "--methods", "identity", "wiener", "--out", out, "--quiet"
    )
    assert r.returncode == 0, r.stderr
    assert record(out)["data"]["n_test"] >= 8  # the cases below damage rows 1 to 13
    return out


def lines_of(run: Path) -> list[str]:
    """The lines of a run's table, line ends kept (index 0 is the header, i is row i)."""
    return (run / TABLE).read_text(encoding="utf-8").splitlines(keepends=True)


def set_field(line: str, header: str, column: str, value: str) -> str:
    """``line`` with its ``column`` field replaced (the smoke table has no quoted fields)."""
    fields = line.rstrip("\n").split(",")
    fields[header.rstrip("\n").split(",").index(column)] = value
    return ",".join(fields) + "\n"


def record(run: Path) -> dict:
    return json.loads((run / "run.json").read_text(encoding="utf-8"))


def cut_mid_row(run: Path) -> None:
    """Cut inside row 13 (as a copy or a download interrupted there)."""
    lines = lines_of(run)
    keep = "".join(lines[:13]) + lines[13][: len(lines[13]) // 2]
    (run / TABLE).write_text(keep, encoding="utf-8")


def nan_psnr(run: Path) -> None:
    lines = lines_of(run)
    lines[7] = set_field(lines[7], lines[0], "psnr", "nan")
    (run / TABLE).write_text("".join(lines), encoding="utf-8")


def rows_twice(run: Path) -> None:
    """Every row twice (a table appended to itself)."""
    lines = lines_of(run)
    (run / TABLE).write_text("".join(lines + lines[1:]), encoding="utf-8")


def text_timing(run: Path) -> None:
    lines = lines_of(run)
    lines[12] = set_field(lines[12], lines[0], "seconds", "fast")
    (run / TABLE).write_text("".join(lines), encoding="utf-8")


def method_missing(run: Path) -> None:
    """Every wiener row removed (the file still ends cleanly)."""
    lines = lines_of(run)
    kept = [ln for ln in lines if not ln.startswith("wiener,")]
    (run / TABLE).write_text("".join(kept), encoding="utf-8")


def extra_row(run: Path) -> None:
    """One more identity row, for an image the run never had, at the end."""
    lines = lines_of(run)
    lines.append(set_field(lines[3], lines[0], "image", "extra.jpg"))
    (run / TABLE).write_text("".join(lines), encoding="utf-8")


def edited_value(run: Path) -> None:
    """One PSNR changed to another plausible, finite number (only the checksum can tell)."""
    lines = lines_of(run)
    lines[7] = set_field(lines[7], lines[0], "psnr", "31.5")
    (run / TABLE).write_text("".join(lines), encoding="utf-8")


def text_fit_seconds(run: Path) -> None:
    rec = record(run)
    rec["timings"]["fit_seconds"]["wiener"] = "1.5s"
    (run / "run.json").write_text(json.dumps(rec), encoding="utf-8")


def without_checksums(run: Path) -> None:
    """A run as written before ``run.json`` recorded the table's checksums."""
    rec = record(run)
    rec.pop("checksums", None)
    (run / "run.json").write_text(json.dumps(rec, indent=2), encoding="utf-8")


def old_rows_removed(run: Path) -> None:
    """A run without checksums whose last three rows were removed at line ends."""
    without_checksums(run)
    lines = lines_of(run)
    (run / TABLE).write_text("".join(lines[:-3]), encoding="utf-8")


def old_rows_twice(run: Path) -> None:
    without_checksums(run)
    rows_twice(run)


def old_cut_mid_row(run: Path) -> None:
    without_checksums(run)
    cut_mid_row(run)


def old_nan_psnr(run: Path) -> None:
    without_checksums(run)
    nan_psnr(run)


def old_image_renamed(run: Path) -> None:
    """A run without checksums where one wiener row names an image the run never had."""
    without_checksums(run)
    lines, row = lines_of(run), record(run)["data"]["n_test"] + 4  # a wiener row
    lines[row] = set_field(lines[row], lines[0], "image", "renamed.jpg")
    (run / TABLE).write_text("".join(lines), encoding="utf-8")


def blank_line(run: Path) -> None:
    (run / TABLE).write_text("".join(lines_of(run)) + "\n", encoding="utf-8")


def cut_in_quotes(run: Path) -> None:
    """Cut inside a quoted field (an image name with a comma is quoted)."""
    lines = lines_of(run)
    (run / TABLE).write_text("".join(lines[:5]) + 'identity,"person 1, cro', encoding="utf-8")


def header_renamed(run: Path) -> None:
    """A column renamed in the header: every value still reads, only the checksum tells."""
    lines = lines_of(run)
    lines[0] = lines[0].replace("identity", "person")
    (run / TABLE).write_text("".join(lines), encoding="utf-8")


def line_ends_changed(run: Path) -> None:
    """The table saved again with CR LF line ends (the same rows)."""
    text = "".join(lines_of(run)).replace("\n", "\r\n")
    (run / TABLE).write_bytes(text.encode("utf-8"))


def text_n_test(run: Path) -> None:
    rec = record(run)
    rec["data"]["n_test"] = str(rec["data"]["n_test"])
    (run / "run.json").write_text(json.dumps(rec), encoding="utf-8")


DAMAGE: dict[str, Callable[[Path], None]] = {
    f.__name__: f
    for f in (
        cut_mid_row,
        nan_psnr,
        rows_twice,
        text_timing,
        method_missing,
        extra_row,
        edited_value,
        text_fit_seconds,
        old_rows_removed,
        old_rows_twice,
        old_cut_mid_row,
        old_nan_psnr,
        old_image_renamed,
        blank_line,
        cut_in_quotes,
        header_renamed,
        line_ends_changed,
        text_n_test,
    )
}


@pytest.fixture(scope="module")
def site(run_dir, tmp_path_factory, cli_batch):
    """A damaged copy of the run per case, every ``report`` run in one subprocess."""
    root = tmp_path_factory.mktemp("damaged")
    (root / "reports").mkdir()
    runs = {}
    for name, damage in {**DAMAGE, "old_intact": without_checksums}.items():
        runs[name] = root / name
        shutil.copytree(run_dir, runs[name])
        damage(runs[name])
    earlier = root / "reports" / "earlier.md"
    cases = {
        name: ["report", runs[name], "--out", root / "reports" / f"{name}.md"] for name in DAMAGE
    }
    cases["intact"] = ["report", run_dir]
    cases["old_intact"] = ["report", runs["old_intact"]]
    cases["two_seeds"] = ["report", run_dir, runs["old_intact"], "--out", earlier]
    cases["two_seeds_one_cut"] = ["report", run_dir, runs["cut_mid_row"], "--out", earlier]
    got = cli_batch(list(cases.values()))
    return dict(zip(cases, got)), runs, root


# id: (the error's text after "error: ", with {csv} and {rec} filled in for the case's copy)
REFUSED = {
    "cut_mid_row": "{csv} row 13 (line 14): the file ends inside this row: it was cut short",
    "nan_psnr": "{csv} row 7 (line 8): psnr is 'nan', not a finite number",
    "rows_twice": "{csv} row {extra} (line {extra_line}): method 'identity', image "
    "'{image1}' appears a second time (first at row 1)",
    "text_timing": "{csv} row 12 (line 13): seconds is 'fast', not a number",
    "method_missing": "{csv} has no rows of method 'wiener', which {rec} lists "
    "(the file holds: identity)",
    "extra_row": "{csv} row {extra} (line {extra_line}): method 'identity' has more rows than "
    "the {n} test images {rec} records (this is its row {n_plus_1})",
    "edited_value": "{csv} row 7 (line 8): it differs from the table the run wrote (the SHA-256 "
    "in {rec} does not match): this row was changed after the run",
    "text_fit_seconds": "{rec}: timings.fit_seconds.wiener is '1.5s', not a number of seconds",
    "old_rows_removed": "{csv}: method 'wiener' has {n_minus_3} rows where {rec} records {n} "
    "test images (the file was cut short or rows were removed; no row for image",
    "old_rows_twice": "{csv} row {extra} (line {extra_line}): method 'identity', image "
    "'{image1}' appears a second time (first at row 1)",
    "old_cut_mid_row": "{csv} row 13 (line 14): the file ends inside this row: it was cut short",
    "old_nan_psnr": "{csv} row 7 (line 8): psnr is 'nan', not a finite number",
    "old_image_renamed": "{csv} row {n_plus_4} (line {n_plus_5}): image 'renamed.jpg' of "
    "method 'wiener' is not among the images of method 'identity'",
    "blank_line": "{csv} row {extra} (line {extra_line}): is an empty line",
    "cut_in_quotes": "{csv} row 5 (line 6): the file ends inside a quoted field: it was cut short",
    "header_renamed": "{csv} the header (line 1): it differs from the table the run wrote (the "
    "SHA-256 in {rec} does not match): the header was changed after the run",
    "line_ends_changed": "{csv}: it differs from the table the run wrote (the SHA-256 in {rec} "
    "does not match); every row reads as written, so its line ends or quoting changed",
    "text_n_test": "{rec}: data.n_test is '{n}', not a count",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_input_report_refuses_a_damaged_table(site, run_dir, case):
    got, runs, root = site
    n = record(run_dir)["data"]["n_test"]
    extra = 2 * n + 1  # the appended row follows both methods' rows
    fill = {
        "csv": runs[case] / TABLE,
        "rec": runs[case] / "run.json",
        "n": n,
        "n_plus_1": n + 1,
        "n_plus_4": n + 4,
        "n_plus_5": n + 5,
        "n_minus_3": n - 3,
        "extra": extra,
        "extra_line": extra + 1,
        "image1": lines_of(run_dir)[1].split(",")[1],
    }
    g = got[case]
    assert g["rc"] == 1, (g["out"], g["err"])
    assert "error: " + REFUSED[case].format(**fill) in g["err"]
    assert "Traceback" not in g["err"] and g["out"] == ""  # no table printed
    assert not (root / "reports" / f"{case}.md").exists()  # nothing written


def test_bad_input_report_still_reports_intact_runs(site, run_dir):
    """The undamaged run, and one from before the checksums, report the same table."""
    got, runs, _ = site
    n = record(run_dir)["data"]["n_test"]
    for case in ("intact", "old_intact"):
        assert got[case]["rc"] == 0, got[case]["err"]
        assert f"| identity | {n} |" in got[case]["out"] and f"| wiener | {n} |" in got[case]["out"]
    same = got["old_intact"]["out"].replace("old_intact", "seed0")  # the runs' names aside
    assert same == got["intact"]["out"]


def test_bad_input_report_merges_seeds_and_keeps_its_report_on_damage(site, run_dir):
    """Two runs pool their rows; a damaged second run leaves the earlier report as it was."""
    got, runs, root = site
    n = record(run_dir)["data"]["n_test"]
    assert got["two_seeds"]["rc"] == 0, got["two_seeds"]["err"]
    assert "Merged report of 2 runs: seed0, old_intact" in got["two_seeds"]["out"]
    assert f"| wiener | {2 * n} |" in got["two_seeds"]["out"]
    bad = got["two_seeds_one_cut"]
    assert bad["rc"] == 1 and f"error: {runs['cut_mid_row'] / TABLE} row 13" in bad["err"]
    earlier = root / "reports" / "earlier.md"
    assert earlier.read_text(encoding="utf-8") + "\n" == got["two_seeds"]["out"]  # kept
    assert sorted(p.name for p in (root / "reports").iterdir()) == ["earlier.md"]  # no temp


def test_bad_input_report_exit_codes_of_the_real_command(site, run_cli):
    """The installed command's own exit status: 1 with the message, and 0 when intact."""
    _, runs, _ = site
    r = run_cli("report", runs["nan_psnr"])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error: {runs['nan_psnr'] / TABLE} row 7 (line 8): psnr is 'nan'" in r.stderr
    r = run_cli("report", runs["old_intact"])
    assert r.returncode == 0 and "| wiener |" in r.stdout, r.stderr


def test_run_records_the_checksum_of_the_bytes_it_wrote(run_dir):
    """``run.json`` holds the SHA-256 of ``per_image.csv`` as on disk, and one CRC per line."""
    sums = record(run_dir)["checksums"][TABLE]
    data = (run_dir / TABLE).read_bytes()
    assert sums["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(sums["row_crc32"]) == 8 * len(lines_of(run_dir))
