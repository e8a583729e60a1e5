"""A run's per-image table, ``per_image.csv``: written with its checksums, read back checked.

``run`` writes the table and records in ``run.json`` (``checksums["per_image.csv"]``) the
SHA-256 of the exact bytes written and a CRC-32 of each of its lines, so that a later reader
can tell that the file is the one the run wrote, and name the row that was changed when it is
not.  `read_run` is the one reader of a finished run's results (``report`` goes through it):
it refuses, naming the file and the row, a table cut short, a row with a missing, non-numeric
or non-finite value, a (method, image) pair given twice, rows that disagree with ``run.json``
(its methods, its number of test images) and, when ``run.json`` holds the checksums, any
change since the run.  Runs written before the checksums existed get every other check.

Rows are counted from 1 after the header; ``line`` is the line of the file (the header is
line 1).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.errors import UserError
from benchmarks.io_utils import atomic_write
from benchmarks.report import METRIC_COLS

TABLE = "per_image.csv"
RECORD = "run.json"
REQUIRED_COLUMNS = ("method", "image", *METRIC_COLS)
#: the columns that must hold a finite number in every row (``seconds`` when present)
NUMBER_COLUMNS = (*METRIC_COLS, "seconds")
CHECKSUMS_KEY = "checksums"


# --------------------------------------------------------------------------- writing
def _row_crc32(fields: list[str]) -> str:
    """The CRC-32 of one parsed line (fields joined by the unit separator), 8 hex digits."""
    return f"{zlib.crc32(chr(31).join(fields).encode('utf-8')):08x}"


def checksums(data: bytes) -> dict[str, str]:
    """``run.json``'s record of a table's bytes: their SHA-256 and each line's CRC-32.

    The CRC-32s (header first, 8 hex digits each, concatenated) are computed on the parsed
    lines, as `read_run` parses them, so the reader can name the first changed row.
    """
    lines = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "row_crc32": "".join(_row_crc32(f) for f in lines),
    }


def write_table(folder: Path, per_image: pd.DataFrame) -> dict[str, str]:
    """Write ``per_image.csv`` into ``folder`` atomically; returns the checksums of the exact
    bytes written (for ``run.json``)."""
    data = per_image.to_csv(index=False).encode("utf-8")
    atomic_write(folder / TABLE, lambda p: p.write_bytes(data))
    return checksums(data)


# --------------------------------------------------------------------------- reading
@dataclass
class RunResults:
    """A finished run's per-image rows and its fit seconds per method, checked."""

    folder: Path
    per_image: pd.DataFrame
    fit_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class _Row:
    number: int  # 1 = the first row after the header
    line: int  # line of the file where the row starts
    fields: list[str]


class _Table:
    """The parsed lines of one ``per_image.csv`` and the wording of its errors."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        if not data:
            raise UserError(f"cannot read {path}: the file is empty")
        try:
            text = data.decode("utf-8-sig")  # a byte-order mark, as some editors add, is no data
        except UnicodeDecodeError as exc:
            raise UserError(
                f"cannot read {path}: not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})"
            ) from None
        self.ends_mid_line = not text.endswith(("\n", "\r"))
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        lines: list[tuple[int, list[str]]] = []
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # a NUL byte, a quote left open by a cut
                cut = "end of data" in str(exc)
                msg = "the file ends inside a quoted field: it was cut short" if cut else None
                raise self.error(len(lines), start, msg or f"not CSV ({exc})") from None
            lines.append((start, fields))
        self.header = lines[0][1] if lines else []
        self.rows = [_Row(i, ln, f) for i, (ln, f) in enumerate(lines[1:], start=1)]
        self.crc32 = [_row_crc32(f) for _, f in lines]

    def error(self, number: int, line: int, msg: str) -> UserError:
        where = "the header" if number == 0 else f"row {number}"
        return UserError(f"{self.path} {where} (line {line}): {msg}")

    def row_error(self, row: _Row, msg: str) -> UserError:
        return self.error(row.number, row.line, msg)


def _record(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's ``run.json`` as a dict; None (with a warning) when it has none."""
    rec = run_dir / RECORD
    if not rec.is_file():
        warnings.warn(
            f"{run_dir} has no {RECORD}: its {TABLE} is checked on its own (no number of "
            f"test images, method list or checksum to compare it with)",
            stacklevel=4,
        )
        return None
    try:
        data = json.loads(rec.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot read {rec}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{rec} is not a run record (it holds a JSON {type(data).__name__})")
    return data


def _entry(record: dict[str, Any], rec: Path, keys: str, kind: type, what: str) -> Any:
    """``record[k1][k2]...`` for ``keys`` ``"k1/k2/..."``; None when absent, an error naming
    the key when it is not a ``kind`` (``what`` says what it should be)."""
    value: Any = record
    for k in keys.split("/"):
        if not isinstance(value, dict) or k not in value:
            return None
        value = value[k]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{rec}: {keys.replace('/', '.')} is {value!r}, not {what}")
    return value


def _parse_rows(table: _Table) -> list[dict[str, Any]]:
    """Every row as a dict, each number column a finite float; row-level errors named."""
    path, header = table.path, table.header
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise UserError(
            f"{path} is not a per-image result table: no column(s) {', '.join(missing)} "
            f"(it has {', '.join(header) or 'none'})"
        )
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise table.error(0, 1, f"column(s) {', '.join(twice)} appear twice")
    if not table.rows:
        raise UserError(f"{path} has no rows (only its header)")
    numbers = [c for c in NUMBER_COLUMNS if c in header]
    seen: dict[tuple[str, str], int] = {}
    out = []
    for row in table.rows:
        if row is table.rows[-1] and table.ends_mid_line:
            raise table.row_error(row, "the file ends inside this row: it was cut short")
        if not row.fields:
            raise table.row_error(row, "is an empty line")
        if len(row.fields) != len(header):
            raise table.row_error(
                row,
                f"has {len(row.fields)} field(s) where the header has {len(header)} columns",
            )
        values: dict[str, Any] = dict(zip(header, row.fields))
        for c in ("method", "image"):
            if not values[c].strip():
                raise table.row_error(row, f"{c} is empty")
        for c in numbers:
            try:
                x = float(values[c])
            except ValueError:
                raise table.row_error(row, f"{c} is {values[c]!r}, not a number") from None
            if not math.isfinite(x):
                raise table.row_error(row, f"{c} is {values[c]!r}, not a finite number")
            values[c] = x
        key = (values["method"], values["image"])
        if key in seen:
            raise table.row_error(
                row,
                f"method {key[0]!r}, image {key[1]!r} appears a second time "
                f"(first at row {seen[key]})",
            )
        seen[key] = row.number
        out.append(values)
    return out


def _check_against_record(
    table: _Table, rows: list[dict[str, Any]], record: dict[str, Any] | None, rec: Path
) -> None:
    """The methods and the image count of ``run.json``, and the same images for each method."""
    by_method: dict[str, dict[str, _Row]] = {}  # method -> image -> its row, in file order
    for row, values in zip(table.rows, rows):
        by_method.setdefault(values["method"], {})[values["image"]] = row
    methods = _entry(record, rec, "methods", dict, "an object") if record is not None else None
    n_test = _entry(record, rec, "data/n_test", int, "a count") if record is not None else None
    if n_test is not None and n_test < 1:
        raise UserError(f"{rec}: data.n_test is {n_test}, not a count of test images")
    if methods is not None:
        for m, images in by_method.items():
            if m not in methods:
                raise table.row_error(
                    next(iter(images.values())),
                    f"method {m!r} is not a method of this run ({rec} lists: "
                    f"{', '.join(methods) or 'none'})",
                )
        for m in methods:
            if m not in by_method:
                raise UserError(
                    f"{table.path} has no rows of method {m!r}, which {rec} lists "
                    f"(the file holds: {', '.join(by_method)})"
                )
    ref, ref_images = next(iter(by_method.items()))
    for m, images in by_method.items():
        rows_m = list(images.values())
        if n_test is not None and len(rows_m) > n_test:
            raise table.row_error(
                rows_m[n_test],
                f"method {m!r} has more rows than the {n_test} test images {rec} records "
                f"(this is its row {n_test + 1})",
            )
        for image, row in images.items():
            if image not in ref_images:
                raise table.row_error(
                    row,
                    f"image {image!r} of method {m!r} is not among the images of method {ref!r}",
                )
        absent = [(image, row) for image, row in ref_images.items() if image not in images]
        if n_test is not None and len(rows_m) < n_test:
            which = f"; no row for image {absent[0][0]!r}" if absent else ""
            raise UserError(
                f"{table.path}: method {m!r} has {len(rows_m)} rows where {rec} records "
                f"{n_test} test images (the file was cut short or rows were removed{which})"
            )
        if absent:
            image, row = absent[0]
            raise UserError(
                f"{table.path}: method {m!r} has no row for image {image!r} "
                f"(method {ref!r} has it, row {row.number})"
            )


def _check_checksums(table: _Table, data: bytes, record: dict[str, Any], rec: Path) -> None:
    """The SHA-256 in ``run.json`` against the bytes read; the first changed row named."""
    sha = _entry(record, rec, f"{CHECKSUMS_KEY}/{TABLE}/sha256", str, "a SHA-256")
    if sha is None:  # a run written before the checksums existed
        return
    if hashlib.sha256(data).hexdigest() == sha:
        return
    crcs = _entry(record, rec, f"{CHECKSUMS_KEY}/{TABLE}/row_crc32", str, "a string") or ""
    written = [crcs[i : i + 8] for i in range(0, len(crcs), 8)]
    why = f"it differs from the table the run wrote (the SHA-256 in {rec} does not match)"
    if not written:  # nothing to find the row with
        raise UserError(f"{table.path}: {why}")
    lines = [(0, 1), *((r.number, r.line) for r in table.rows)]
    for (number, line), now, then in zip(lines, table.crc32, written):
        if now != then:
            what = "the header" if number == 0 else "this row"
            raise table.error(number, line, f"{why}: {what} was changed after the run")
    if len(lines) > len(written):
        raise table.error(*lines[len(written)], f"{why}: this row was added after the run")
    if len(lines) < len(written):
        raise table.error(*lines[-1], f"{why}: the rows after this one were removed")
    raise UserError(
        f"{table.path}: {why}; every row reads as written, so its line ends or quoting changed"
    )


def _fit_seconds(run_dir: Path, record: dict[str, Any] | None, rec: Path) -> dict[str, float]:
    """``timings.fit_seconds`` of ``run.json``, each a finite number; {} (warned) when absent."""
    if record is None:
        return {}
    fits = _entry(record, rec, "timings/fit_seconds", dict, "an object")
    if fits is None:
        warnings.warn(
            f"{rec} has no timings.fit_seconds; the fit seconds of {run_dir.name} are left out",
            stacklevel=4,
        )
        return {}
    for m, s in fits.items():
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not math.isfinite(s):
            raise UserError(f"{rec}: timings.fit_seconds.{m} is {s!r}, not a number of seconds")
    return {m: float(s) for m, s in fits.items()}


def read_run(run_dir: str | Path) -> RunResults:
    """A finished run's ``per_image.csv`` and fit seconds, checked against its ``run.json``.

    Raises `UserError` (``FileNotFoundError`` when the folder has no table) naming the file
    and, where there is one, the row; see the module docstring for the checks.
    """
    run_dir = Path(run_dir)
    path = run_dir / TABLE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished run folder (no {TABLE})")
    rec = run_dir / RECORD
    record = _record(run_dir)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    table = _Table(path, data)
    rows = _parse_rows(table)
    _check_against_record(table, rows, record, rec)
    if record is not None:
        _check_checksums(table, data, record, rec)
    per_image = pd.DataFrame(rows, columns=table.header)
    return RunResults(run_dir, per_image, _fit_seconds(run_dir, record, rec))
