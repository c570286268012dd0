"""The fast way into a CSV table: pyarrow.csv when it is installed, else NumPy's C parser (files of numbers only),
read column by column. Either gives up (returns None) on anything unusual, and the careful reader of csv_table.py
reads the file instead, so every message still names its line: a row of another width, a quoted line break, an
undecodable byte, a line longer than the csv module takes.
"""

from __future__ import annotations

import csv
import io
import re

import numpy as np

# the csv module's default field_size_limit: the careful reader refuses longer cells, so a file with a line that
# long is left to it (and its message)
LONGEST_LINE = 131_072
_NEWLINE, _RETURN = 10, 13
_NOT_BLANK = re.compile(rb"\S")  # finds the first cell without copying the file, as raw.strip() would


def fast_columns(raw: bytes, missing_cells: tuple[str, ...]
                 ) -> tuple[list[str], list[np.ndarray], np.ndarray] | None:
    """(header, one array a column, each data row's line in the file) of a CSV file's decompressed bytes; None
    when the careful reader must read it.

    A column of numbers comes as float64 with NaN where a cell is one of `missing_cells` (pandas' NA set); any
    other column as its unicode cells, untouched. Lines count from 1, blank lines included (the header is the
    first line that is not blank).
    """
    if not _has_a_row_after_the_header(raw) or _may_hold_a_long_line(raw):
        # empty or a header alone (pyarrow's threaded reader mishandles a file of no rows, apache/arrow#38676: a
        # validate of such a file once ended in "terminate called without an active exception"), or a cell the
        # careful reader refuses: its messages say so
        return None
    try:
        import pyarrow  # noqa: F401 - optional: dlcli[parquet] installs it
    except ImportError:
        read = _numpy_columns(raw)
    else:
        read = _arrow_columns(raw, missing_cells)
    if read is None or not read[1] or any(len(column) != len(read[1][0]) for column in read[1]):
        return None
    header, columns = read
    lines = _row_lines(raw, len(columns[0]))
    if lines is None or len(lines) < 2:
        return None  # a header alone: the careful reader's message says so
    return [name.strip() for name in header], columns, lines[1:]


def _has_a_row_after_the_header(raw: bytes) -> bool:
    """Whether a line that is not blank follows the first line that is not blank."""
    first = _NOT_BLANK.search(raw)
    if first is None:
        return False
    end = raw.find(b"\n", first.start())
    return end >= 0 and _NOT_BLANK.search(raw, end) is not None


def _row_lines(raw: bytes, rows: int) -> np.ndarray | None:
    """The line number (from 1) of the header and of each of `rows` rows, every line that is not blank as the
    csv module sees blank ("" or a lone carriage return); None when the count differs: a quoted cell ran over
    lines, and only the csv module counts those right."""
    count = raw.count(b"\n") + (not raw.endswith(b"\n"))
    if count == rows + 1:
        return np.arange(1, count + 1, dtype=np.int64)  # no blank line: without a pass over the bytes
    data = np.frombuffer(raw, np.uint8)
    breaks = np.flatnonzero(data == _NEWLINE)
    starts = np.concatenate([[0], breaks + 1])
    lengths = np.concatenate([breaks, [len(data)]]) - starts
    first = data[np.minimum(starts, len(data) - 1)]
    lines = np.flatnonzero(~((lengths == 0) | ((lengths == 1) & (first == _RETURN)))) + 1
    return lines if len(lines) == rows + 1 else None


def _may_hold_a_long_line(raw: bytes) -> bool:
    """Whether a line may be longer than LONGEST_LINE: such a line covers a whole aligned block of half that
    length, so only files with a block free of line breaks need the exact pass (one find per block)."""
    block = LONGEST_LINE // 2
    return any(raw.find(b"\n", start, start + block) < 0 for start in range(0, len(raw) - block + 1, block))


def _arrow_columns(raw: bytes, missing_cells: tuple[str, ...]) -> tuple[list[str], list[np.ndarray]] | None:
    """pyarrow.csv's read of every column; columns it would make dates, times or booleans are read again as
    text, since dlcli takes a cell as a number, a missing value, or text (class names, raw text)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    # a quoted cell may hold a line break only where the file has quotes at all (it slows threaded parsing)
    quoted = b'"' in raw

    def read(as_text: dict[str, object]) -> pa.Table:
        return pacsv.read_csv(
            pa.py_buffer(raw), parse_options=pacsv.ParseOptions(newlines_in_values=quoted),
            convert_options=pacsv.ConvertOptions(null_values=list(missing_cells), strings_can_be_null=False,
                                                 column_types=as_text))

    try:
        table = read({})
        odd = [field.name for field in table.schema if not _numeric_or_text(field.type)]
        if odd:
            if len(set(table.column_names)) != len(table.column_names):
                return None  # text types by name would be ambiguous: the careful reader takes it
            table = read({name: pa.string() for name in odd})
    except (pa.ArrowException, ValueError):
        return None  # unreadable here: the careful reader finds the line and says what is wrong with it
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            columns.append(np.asarray(column.to_numpy(zero_copy_only=False), dtype=str))
        else:  # integers, floats, or a column of nothing but missing cells
            numbers = column.cast(pa.float64())
            if numbers.null_count:
                numbers = pc.fill_null(numbers, float("nan"))
            columns.append(numbers.to_numpy(zero_copy_only=False).astype(np.float64, copy=False))
    return table.column_names, columns


def _numeric_or_text(kind: object) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)
                or pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _numpy_columns(raw: bytes) -> tuple[list[str], list[np.ndarray]] | None:
    """NumPy's C parser (np.loadtxt) for a file whose every cell is a number; anything else (a missing cell, a
    class name) is left to the careful reader."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    first_line, _, rest = text.partition("\n")
    if not first_line.strip("\r") or not rest.strip():
        return None  # blank lines before the header, or no rows after it: the careful reader says what it finds
    header = next(csv.reader([first_line.rstrip("\r")]))
    try:
        values = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, dtype=np.float64, comments=None,
                            quotechar='"', ndmin=2)
    except ValueError:
        return None
    if values.shape[1] != len(header):
        return None
    return header, [values[:, j] for j in range(values.shape[1])]
