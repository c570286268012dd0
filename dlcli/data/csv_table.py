"""CSV and other text tables: cells as strings with the line each row starts on, columns found by name, cells
read as numbers with missing values recognised."""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dlcli.data.batches import counted
from dlcli.data.csv_fast import fast_columns
from dlcli.data.files import read_file_bytes
from dlcli.errors import DataError
from dlcli.registry import suggest

# cells that mean "no value", as pandas reads them by default (read_csv's na_values); a cell is compared after
# stripping spaces, and any cell that reads as NaN ("NAN", "+nan") is missing too
MISSING_CELLS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
                 "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
_GZIP_MAGIC = b"\x1f\x8b"
_BOOLEANS = {"true", "false", "yes", "no", "t", "f", "y", "n"}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class CsvTable:
    """A table read from a CSV file with a header row: a column of numbers (float64, NaN where a cell is missing)
    or of cells (unicode strings) for each column, and for each row the line of the file it starts on (the header
    is line 1; blank lines and line breaks inside quoted cells are counted).

    The fast reader (csv_fast.py) gives numbers for the columns that hold them; the careful reader gives every
    column as cells. A message that quotes a cell of a numeric column reads the file again carefully for it.
    """

    path: Path
    header: list[str]
    columns: list[np.ndarray]
    lines: np.ndarray  # (rows,) int64
    numbered: bool = False  # a headerless table: columns are named by their index
    rows: np.ndarray | None = None  # each row's index among the file's rows once some were dropped (take)

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def cells(self) -> np.ndarray:
        """Every cell as a string, (rows, columns); built for small tables and messages only."""
        return np.stack([self.column_cells(j) for j in range(len(self.header))], axis=1) if self.header else \
            np.zeros((len(self), 0), str)

    def is_numeric(self, column: int) -> bool:
        """Whether the fast reader read this column as numbers."""
        return self.columns[column].dtype.kind == "f"

    def column_cells(self, column: int) -> np.ndarray:
        """The cells of a column as the file spells them (unicode strings)."""
        if not self.is_numeric(column):
            return self.columns[column]
        careful = _careful_table(self.path)  # a message quotes a cell the fast reader turned into a number
        cells = careful.columns[column]
        return cells if self.rows is None else cells[self.rows]

    def where(self, row: int, column: int | None = None) -> str:
        """"FILE, line N" (and ", column 'NAME'") for messages."""
        place = f"{self.path}, line {int(self.lines[row])}"
        if column is None:
            return place
        return f"{place}, column {column} (counting from 0)" if self.numbered else \
            f"{place}, column {self.header[column]!r}"

    def take(self, keep: np.ndarray) -> CsvTable:
        """The rows where the boolean mask `keep` is true."""
        rows = np.flatnonzero(keep) if self.rows is None else self.rows[keep]
        return CsvTable(self.path, self.header, [column[keep] for column in self.columns], self.lines[keep],
                        self.numbered, rows)

    def column(self, name: str) -> int:
        """The index of column `name`, or a DataError listing the columns there are."""
        found = [j for j, column in enumerate(self.header) if column == name]
        if len(found) == 1:
            return found[0]
        if found:
            raise DataError(f"{self.path}: column name {name!r} appears {len(found)} times in the header (columns "
                            f"{', '.join(map(str, found))}); rename the duplicates")
        close = suggest(name, self.header)
        hint = f" (did you mean {close!r}?)" if close else ""
        raise DataError(f"{self.path} has no column {name!r}{hint}; its columns are: {', '.join(self.header)}")

    def feature_columns(self, features: Sequence[str] | None, target: int) -> list[int]:
        """Column indices named by `features` (names or inclusive "first:last" ranges, in file order); None
        means every column but the target (index `target`, or -1 for none)."""
        if features is None:
            return [j for j in range(len(self.header)) if j != target]
        columns: list[int] = []
        for item in [features] if isinstance(features, str) else features:
            if item not in self.header and ":" in item:
                first, last = (self.column(part.strip()) for part in item.split(":", 1))
                if first > last:
                    raise DataError(f"{self.path}: feature range {item!r} runs backwards ({self.header[first]!r} is "
                                    f"column {first}, {self.header[last]!r} column {last}); write it as "
                                    f"'{self.header[last]}:{self.header[first]}'")
                columns.extend(range(first, last + 1))
            else:
                columns.append(self.column(item))
        if target in columns:
            raise DataError(f"{self.path}: the target column {self.header[target]!r} is also among the features; "
                            f"leave it out of data.features (or leave data.features out to take every other column)")
        return columns

    def named_columns(self, names: Sequence[str]) -> list[int]:
        """The columns a trained model reads, found by name wherever they stand; other columns are ignored."""
        missing = [name for name in names if name not in self.header]
        if missing:
            more = f" (nor {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else ""
            raise DataError(f"{self.path} has no column {missing[0]!r}{more}; the model was trained on the columns "
                            f"{', '.join(names)} (matched by name, in any order; other columns are ignored); its "
                            f"columns are: {', '.join(self.header)}")
        return [self.column(name) for name in names]

    def missing(self, columns: list[int]) -> np.ndarray:
        """Which cells of these columns hold a missing value (see MISSING_CELLS), shape (rows, len(columns))."""
        masks = [np.isnan(self.columns[j]) if self.is_numeric(j) else
                 np.isin(np.char.strip(self.columns[j]), MISSING_CELLS) for j in columns]
        return np.stack(masks, axis=1) if masks else np.zeros((len(self), 0), bool)

    def numbers(self, columns: list[int], allow_missing: bool, advice: str = "", allow_infinite: bool = False
                ) -> np.ndarray:
        """The chosen columns as float64, NaN where a cell is missing (a DataError instead unless allow_missing).

        Raises a DataError naming the line and column of the first cell that is not a number, or (unless
        allow_infinite) that is infinite or too large for float32, the model's dtype; `advice` ends the
        not-a-number message.
        """
        # a column at a time (each one vectorized conversion and check, in cache), stacked as (columns, rows) and
        # handed out transposed: one sequential copy, and the caller's float32 conversion does the transposing
        parsed = [self.columns[j] if self.is_numeric(j) else self._parse(j, advice) for j in columns]
        clean = all(_within_float32(column) for column in parsed)
        values = (np.stack(parsed) if parsed else np.zeros((0, len(self)))).T
        if clean:
            return values
        nan = np.isnan(values)
        if not allow_missing and nan.any():
            self.refuse_missing(nan, columns)
        with np.errstate(over="ignore"):
            too_big = ~nan & (np.abs(values) > _FLOAT32_MAX)
        if too_big.any() and not allow_infinite:
            row, j = (int(i) for i in np.argwhere(too_big)[0])
            raise DataError(f"{self.where(row, columns[j])}: {str(self.column_cells(columns[j])[row]).strip()!r} is "
                            f"{'infinite' if np.isinf(values[row, j]) else 'too large for float32 (at most 3.4e38)'}"
                            f" ({counted(int(too_big.sum()), 'such cell')}); fix that cell or drop the row")
        return values

    def refuse_missing(self, missing: np.ndarray, columns: list[int]) -> None:
        """DataError for the first missing cell (row-major) of the mask over these columns."""
        row, j = (int(i) for i in np.argwhere(missing)[0])
        cell = str(self.column_cells(columns[j])[row]).strip()
        cells, rows = counted(int(missing.sum()), "missing cell"), counted(int(missing.any(axis=1).sum()), "row")
        raise DataError(f"{self.where(row, columns[j])}: expected a number, found "
                        f"{repr(cell) if cell else 'an empty cell'}, a missing value ({cells} in {rows}); fill or "
                        f"drop those rows, or set "
                        f"data.missing = \"drop_rows\", \"fill_mean\" or \"fill_value\" in the spec")

    def _parse(self, column: int, advice: str) -> np.ndarray:
        """A column of cells as float64, NaN where a cell is missing, or a DataError naming the first cell that
        is not a number."""
        cells = self.columns[column]
        try:
            return cells.astype(np.float64)
        except ValueError:
            pass
        cells = np.where(np.isin(np.char.strip(cells), MISSING_CELLS), "nan", cells)
        try:
            return cells.astype(np.float64)
        except ValueError:
            pass
        row = next(i for i, cell in enumerate(cells) if not is_number(cell))  # only on failure: find the cell
        cell = str(cells[row]).strip()
        hint = "; write booleans as 1 and 0" if cell.lower() in _BOOLEANS else ""
        raise DataError(f"{self.where(row, column)}: expected a number, found {cell!r}{hint}{advice}") from None


def _within_float32(values: np.ndarray) -> bool:
    """Whether every value is a number float32 holds: three passes without temporaries (a finite sum has no NaN
    and no infinity in it)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return values.size == 0 or bool(np.isfinite(values.sum()) and -_FLOAT32_MAX <= values.min() and
                                         values.max() <= _FLOAT32_MAX)


def is_number(cell: str) -> bool:
    """Whether float() accepts the cell."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


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
        raise DataError(f"{path} is not a readable text table ({err}); it may be truncated, corrupt or "
                        f"binary: save or download it again") from None
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


def read_csv_table(path: str | Path) -> CsvTable:
    """A CSV file with a header row of column names, then one row per example (at least one).

    The fast reader reads it when it can (pyarrow.csv, or NumPy for a file of numbers only); the careful one
    (Python's csv module, line by line) when it cannot, and for every message about the file's form.
    """
    path = Path(path)
    raw = read_file_bytes(path)
    fast = fast_columns(_decoded_bytes(path, raw), MISSING_CELLS)
    if fast is not None:
        header, columns, lines = fast
        return CsvTable(path, header, columns, lines.astype(np.int64))
    return _careful_table(path, raw)


def _careful_table(path: Path, raw: bytes | None = None) -> CsvTable:
    """read_csv_table by the careful reader: every column as cells, every problem named by its line."""
    rows, lines = read_rows(path, ",", raw)
    if not rows:
        raise DataError(f"{path} is empty: expected a header row of column names, then one row per example")
    if len(rows) == 1:
        raise DataError(f"{path} has a header row but no examples (zero rows): expected one row per example "
                        f"after the header {','.join(rows[0])}")
    cells = _cell_table(path, rows[1:], lines[1:], len(rows[0]))
    return CsvTable(path, [name.strip() for name in rows[0]], list(cells.T), np.array(lines[1:], dtype=np.int64))


def read_table(path: str | Path, skip_rows: int = 0, delimiter: str | None = ",") -> np.ndarray:
    """Every cell of a headerless numeric table as float64 (2-D); `delimiter=None` splits on whitespace."""
    path = Path(path)
    rows, lines = read_rows(path, delimiter)
    rows, lines = rows[skip_rows:], lines[skip_rows:]
    if not rows:
        raise DataError(f"{path} has no rows after its first {skip_rows}: expected a numeric table")
    cells = _cell_table(path, rows, lines, len(rows[0]))
    table = CsvTable(path, [str(j) for j in range(cells.shape[1])], list(cells.T), np.array(lines, dtype=np.int64),
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
