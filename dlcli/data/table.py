"""A table of named columns, as files of rows (CSV, parquet) are read: columns found by name, cells read as numbers
with missing values recognised, and every message naming the file's line or row."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dlcli.data.batches import counted
from dlcli.errors import DataError
from dlcli.registry import suggest

# cells that mean "no value", as pandas reads them by default (read_csv's na_values); a cell is compared after
# stripping spaces, and any cell that reads as NaN ("NAN", "+nan") is missing too
MISSING_CELLS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
                 "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
_BOOLEANS = {"true", "false", "yes", "no", "t", "f", "y", "n"}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class Table:
    """A table of named columns read from a file (CSV, parquet): for each column its numbers (float64, NaN where a
    cell is missing) or its cells (unicode strings), and where each row is in the file: a text file's line (the
    header is line 1; blank lines and line breaks inside quoted cells are counted), else its row from 0.

    A fast reader gives numbers for the columns that hold them; a message that quotes a cell of such a column
    asks `reread` for the table as cells (a CSV file read again carefully), or else shows the number.
    """

    path: Path
    header: list[str]
    columns: list[np.ndarray]
    lines: np.ndarray | None  # (rows,) int64: each row's line in a text file; None: rows are counted from 0
    numbered: bool = False  # a headerless table: columns are named by their index
    rows: np.ndarray | None = None  # each row's index among the file's rows once some were dropped (take)
    reread: Callable[[], Table] | None = field(default=None, repr=False)  # the file's cells, for messages
    # the columns as one (rows, columns) float64 matrix, when a reader made them so (columns[j] is block[:, j]):
    # numbers() hands out a run of adjacent columns as a view of it instead of copying them together
    block: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def is_numeric(self, column: int) -> bool:
        """Whether the column was read as numbers (else it holds its cells)."""
        return self.columns[column].dtype.kind == "f"

    def column_cells(self, column: int) -> np.ndarray:
        """The cells of a column as the file spells them (unicode strings)."""
        if not self.is_numeric(column):
            return self.columns[column]
        if self.reread is None:
            return np.array([f"{value:g}" for value in self.columns[column].tolist()], dtype=str)
        cells = self.reread().columns[column]  # a message quotes a cell the fast reader turned into a number
        return cells if self.rows is None else cells[self.rows]

    def where(self, row: int, column: int | None = None) -> str:
        """"FILE, line N" or "FILE, row N" (and ", column 'NAME'") for messages."""
        if self.lines is None:
            place = f"{self.path}, row {row if self.rows is None else int(self.rows[row])}"
        else:
            place = f"{self.path}, line {int(self.lines[row])}"
        if column is None:
            return place
        return f"{place}, column {column} (counting from 0)" if self.numbered else \
            f"{place}, column {self.header[column]!r}"

    def take(self, keep: np.ndarray) -> Table:
        """The rows where the boolean mask `keep` is true."""
        rows = np.flatnonzero(keep) if self.rows is None else self.rows[keep]
        return Table(self.path, self.header, [column[keep] for column in self.columns],
                     None if self.lines is None else self.lines[keep], self.numbered, rows, self.reread)

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

    def feature_columns(self, features: Sequence[str] | None, target: int, skip: Sequence[int] = ()) -> list[int]:
        """Column indices named by `features` (names or inclusive "first:last" ranges, in file order); None
        means every column but the target (index `target`, or -1 for none) and those in `skip` (a weight
        column)."""
        if features is None:
            return [j for j in range(len(self.header)) if j != target and j not in skip]
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
        for column in skip:
            if column in columns:
                raise DataError(f"{self.path}: the sample weight column {self.header[column]!r} is also among the "
                                f"features; leave it out of data.features")
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
        adjacent = self.block is not None and len(columns) > 0 and list(columns) == list(
            range(columns[0], columns[0] + len(columns)))
        if adjacent:
            assert self.block is not None
            values = self.block[:, columns[0]:columns[0] + len(columns)]
            clean = _within_float32(values)
        else:
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

    def refuse_missing(self, missing: np.ndarray, columns: list[int], expected: str = "a number",
                       labels: Sequence[int] = (), fixes: str | None = None) -> None:
        """DataError for the first missing cell (row-major) of the mask over these columns; `labels` are the
        columns no fill policy fills (the target, the sample weight), for which only dropping the rows helps.
        `fixes` ends the message instead, for a reader whose data.missing policies differ (a time series)."""
        row, j = (int(i) for i in np.argwhere(missing)[0])
        cell = str(self.column_cells(columns[j])[row]).strip()
        cells, rows = counted(int(missing.sum()), "missing cell"), counted(int(missing.any(axis=1).sum()), "row")
        if fixes is None:
            fixes = "fix or drop those rows, or set data.missing = \"drop_rows\" (a label is never filled in)" \
                if columns[j] in labels else "fill or drop those rows, or set data.missing = \"drop_rows\", " \
                                             "\"fill_mean\" or \"fill_value\" in the spec"
        raise DataError(f"{self.where(row, columns[j])}: expected {expected}, found "
                        f"{repr(cell) if cell else 'an empty cell'}, a missing value ({cells} in {rows}); {fixes}")

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
