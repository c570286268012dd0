"""CSV and other text tables read into a Table (table.py): fast (csv_fast.py) where that is exact, else by the csv
module line by line, which names the line of every problem."""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from dlcli.data.csv_fast import fast_columns
from dlcli.data.csv_numbers import read_numbers
from dlcli.data.files import map_file_bytes, not_utf8, read_file_bytes
from dlcli.data.table import MISSING_CELLS, Table
from dlcli.errors import DataError

__all__ = ["FEATURE_ADVICE", "MISSING_CELLS", "read_csv", "read_csv_columns", "read_csv_table", "read_csv_text",
           "read_table"]
_GZIP_MAGIC = b"\x1f\x8b"


def _decoded_bytes(path: Path, raw: bytes) -> bytes:
    """The file's bytes, gunzipped when they are gzip; a DataError when they cannot be."""
    try:
        return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(f"{path} is not a readable text table ({err}); it may be truncated, corrupt or "
                        f"binary: save or download it again") from None


def read_rows(path: Path, delimiter: str | None, raw: bytes | None = None) -> tuple[list[list[str]], list[int]]:
    """The non-blank rows of a text table, gzip-compressed or not, each a list of cell strings, and the line
    each row starts on (counting from 1, blank lines included); `raw`: the file's bytes, when already read."""
    raw = _decoded_bytes(path, read_file_bytes(path) if raw is None else raw)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise not_utf8(path, raw, err, "save the file as UTF-8 (a spreadsheet's \"CSV UTF-8\")") from None
    if delimiter is None:
        numbered = [(line.split(), i + 1) for i, line in enumerate(text.splitlines()) if line.strip()]
        return [row for row, _ in numbered], [line for _, line in numbered]
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows, lines, start = [], [], 1
    try:
        for row in reader:
            if row:
                rows.append(row)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{path}, line {reader.line_num}: not readable as CSV ({err}); fix or remove that line "
                        f"(an unclosed quote running on, often, or a cell of more than 131,072 characters)") from None
    return rows, lines


def _cell_table(path: Path, rows: list[list[str]], lines: list[int], width: int) -> np.ndarray:
    """The rows as a 2-D string array, after checking that every row has `width` cells."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    wrong = np.flatnonzero(lengths != width)
    if wrong.size:
        i = int(wrong[0])
        raise DataError(f"{path}, line {lines[i]}: expected {width} cells like the first row, found "
                        f"{lengths[i]} ({wrong.size} rows differ); fix the row or the delimiter")
    return np.array(rows, dtype=str).reshape(len(rows), width)


def read_csv_table(path: str | Path) -> Table:
    """A CSV file with a header row of column names, then one row per example (at least one).

    The fast readers read it when they can (a large file of numbers: csv_numbers.py; else pyarrow.csv, or NumPy
    for a file of numbers only); the careful one (Python's csv module, line by line) when they cannot, and for
    every message about the file's form.
    """
    path = Path(path)
    mapped = map_file_bytes(path)
    numbers = read_numbers(mapped, MISSING_CELLS) if mapped[:2] != _GZIP_MAGIC else None
    # the other readers take the bytes from the same mapping (the file is opened once); unmapped here either way
    raw = b"" if numbers is not None else bytes(mapped)
    del mapped
    if numbers is not None:
        header, block, lines = numbers
        return Table(path, header, list(block.T), lines, reread=lambda: _careful_table(path), block=block)
    decoded = _decoded_bytes(path, raw)
    fast = fast_columns(decoded, MISSING_CELLS)
    if fast is not None:
        header, columns, lines = fast
        return Table(path, header, columns, lines.astype(np.int64), reread=lambda: _careful_table(path))
    return _careful_table(path, raw)


def _careful_table(path: Path, raw: bytes | None = None) -> Table:
    """read_csv_table by the careful reader: every column as cells, every problem named by its line."""
    rows, lines = read_rows(path, ",", raw)
    if not rows:
        raise DataError(f"{path} is empty: expected a header row of column names, then one row per example")
    if len(rows) == 1:
        raise DataError(f"{path} has a header row but no examples (zero rows): expected one row per example "
                        f"after the header {','.join(rows[0])}")
    cells = _cell_table(path, rows[1:], lines[1:], len(rows[0]))
    return Table(path, [name.strip() for name in rows[0]], list(cells.T), np.array(lines[1:], dtype=np.int64))


def read_table(path: str | Path, skip_rows: int = 0, delimiter: str | None = ",") -> np.ndarray:
    """Every cell of a headerless numeric table as float64 (2-D); `delimiter=None` splits on whitespace."""
    path = Path(path)
    rows, lines = read_rows(path, delimiter)
    rows, lines = rows[skip_rows:], lines[skip_rows:]
    if not rows:
        raise DataError(f"{path} has no rows after its first {skip_rows}: expected a numeric table")
    cells = _cell_table(path, rows, lines, len(rows[0]))
    table = Table(path, [str(j) for j in range(cells.shape[1])], list(cells.T), np.array(lines, dtype=np.int64),
                     numbered=True)
    return np.ascontiguousarray(table.numbers(list(range(cells.shape[1])), allow_missing=False))


FEATURE_ADVICE = "; fix that cell or drop the row, or leave the column out of data.features"


def read_csv(path: str | Path, features: Sequence[str] | None, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Features (float32, 2-D) and a numeric target (float32, 1-D) from a CSV file with a header row; a missing
    cell is an error. `features` lists column names or inclusive "first:last" ranges; None takes every column
    but the target."""
    table = read_csv_table(path)
    target_column = table.column(target)
    x = table.numbers(table.feature_columns(features, target_column), allow_missing=False, advice=FEATURE_ADVICE)
    y = table.numbers([target_column], allow_missing=False, advice="; fix that cell or drop the row")[:, 0]
    return np.ascontiguousarray(x, dtype=np.float32), y.astype(np.float32)


def read_csv_columns(path: str | Path, features: Sequence[str] | None, exclude: str | None = None) -> np.ndarray:
    """Feature columns (float32, 2-D) of a CSV with a header row, the target absent or ignored: `features` as in
    read_csv; None takes every column except `exclude` (the training target), if present."""
    table = read_csv_table(path)
    skipped = table.header.index(exclude) if exclude in table.header else -1
    columns = table.feature_columns(features, skipped)
    return np.ascontiguousarray(table.numbers(columns, allow_missing=False, advice=FEATURE_ADVICE), np.float32)


def read_csv_text(path: str | Path, text: str, target: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A column of raw text (unicode strings, 1-D) and, if named, a numeric target (float32, 1-D) from a CSV
    file with a header row; quoted cells may hold commas, quotes and line breaks."""
    table = read_csv_table(path)
    texts = table.column_cells(table.column(text))
    if target is None:
        return texts, None
    y = table.numbers([table.column(target)], allow_missing=False, advice="; fix that cell or drop the row")
    return texts, y[:, 0].astype(np.float32)
