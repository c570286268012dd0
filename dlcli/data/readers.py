"""Readers for dataset files (IDX, .npy, .npz, CSV) into NumPy arrays; nothing is ever unpickled."""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import math
import zipfile
import zlib
from pathlib import Path
from typing import IO, Sequence

import numpy as np

from dlcli.errors import DataError

# what a damaged file raises while we read it; anything else is a bug and keeps its traceback
_CORRUPT = (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error)

# IDX type codes (third byte of the magic number) and the big-endian dtypes they stand for
_IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """The array held in an IDX file (MNIST's format), plain or gzip-compressed, from a path or bytes."""
    label = name or (str(source) if isinstance(source, (str, Path)) else "IDX data")
    data = _idx_bytes(source, label)
    magic = int.from_bytes(data[:4], "big")
    if len(data) < 4 or data[0] or data[1] or data[2] not in _IDX_TYPES or data[3] == 0:
        raise DataError(
            f"{label} is not an IDX file: expected a big-endian magic number such as 2051 (images) or 2049 "
            f"(labels), found {magic if len(data) >= 4 else f'only {len(data)} bytes'}; check that the file "
            f"is the one named, and download it again if it is")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{label} is truncated: its magic number {magic} calls for {ndim} dimension sizes in a "
                        f"{header}-byte header, found {len(data)} bytes in all; download it again")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    count = math.prod(dims)
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        found = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{label} is {found}: its header (magic {magic}, dimensions {dims}) calls for "
                        f"{expected:,} bytes, found {len(data):,}; download it again")
    # astype copies into native byte order, so callers get a writable array that owns its memory
    return np.frombuffer(data, dtype, count=count, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_bytes(source: str | Path | bytes, label: str) -> bytes:
    """The raw IDX bytes of `source`, decompressed when they are gzip's."""
    try:
        data = bytes(source) if isinstance(source, (bytes, bytearray)) else _existing(source).read_bytes()
        return gzip.decompress(data) if data[:2] == _GZIP_MAGIC else data
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
        raise DataError(f"{label} is not a readable gzip file ({err}); it may be truncated or corrupt: "
                        f"download it again") from None


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array in an .npz archive, by name; object arrays are refused, never unpickled."""
    path = _existing(path)
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith(".npy"):
                    with archive.open(member) as fp:
                        _refuse_objects(fp, path, member.removesuffix(".npy"))
        with np.load(path, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in arrays.files}
    except _CORRUPT as err:
        raise DataError(f"{path} is not a readable .npz archive ({err}); it may be truncated or corrupt: "
                        f"save or download it again") from None


def read_npy(path: str | Path) -> np.ndarray:
    """The array in a .npy file; an object array is refused, never unpickled."""
    path = _existing(path)
    try:
        with open(path, "rb") as fp:
            _refuse_objects(fp, path, None)
        return np.load(path, allow_pickle=False)
    except _CORRUPT as err:
        hint = " (it is a zip archive: name it .npz)" if zipfile.is_zipfile(path) else ""
        raise DataError(f"{path} is not a readable .npy file{hint} ({err}); it may be truncated or corrupt: "
                        f"save or download it again") from None


def _refuse_objects(fp: IO[bytes], path: Path, key: str | None) -> None:
    """Raise DataError if the .npy stream at `fp` holds Python objects, reading only its header."""
    version = np.lib.format.read_magic(fp)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    _shape, _fortran_order, dtype = read_header(fp)
    if dtype.hasobject:
        where = f"{path}, array {key!r}," if key is not None else str(path)
        raise DataError(f"{where} holds Python objects (dtype {dtype}): object arrays are not supported, because "
                        f"reading them means unpickling, which can run arbitrary code; save the data as numeric "
                        f"arrays instead (pad ragged sequences into one integer array)")


def read_csv(path: str | Path, features: Sequence[str] | None, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Features (float32, 2-D) and target (float32, 1-D) from a CSV file with a header row of column names.

    `features` lists column names or inclusive "first:last" ranges in file order; None takes every column
    but the target.
    """
    path = _existing(path)
    rows = _read_rows(path, ",")
    if not rows:
        raise DataError(f"{path} is empty: expected a header row of column names, then one row per example")
    header, cells = [name.strip() for name in rows[0]], _cell_table(path, rows[1:], len(rows[0]), first_line=2)
    target_column = _column_index(path, header, target)
    columns = _feature_columns(path, header, features, target_column)
    names = [repr(name) for name in header]
    x = _numbers(path, cells, columns, names, first_line=2)
    y = _numbers(path, cells, [target_column], names, first_line=2)[:, 0]
    return x.astype(np.float32), y.astype(np.float32)


def read_csv_columns(path: str | Path, features: Sequence[str] | None, exclude: str | None = None) -> np.ndarray:
    """Feature columns (float32, 2-D) of a CSV with a header row, for prediction: the target may be absent.

    `features` as in read_csv; None takes every column except `exclude` (the training target), if present.
    """
    path = _existing(path)
    rows = _read_rows(path, ",")
    if not rows:
        raise DataError(f"{path} is empty: expected a header row of column names, then one row per example")
    header, cells = [name.strip() for name in rows[0]], _cell_table(path, rows[1:], len(rows[0]), first_line=2)
    skipped = header.index(exclude) if exclude in header else -1
    columns = _feature_columns(path, header, features, skipped)
    return _numbers(path, cells, columns, [repr(name) for name in header], first_line=2).astype(np.float32)


def read_csv_text(path: str | Path, text: str, target: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A column of raw text (unicode strings, 1-D) and, if named, a numeric target (float32, 1-D) from a CSV
    file with a header row; quoted cells may hold commas, quotes and line breaks."""
    path = _existing(path)
    rows = _read_rows(path, ",")
    if not rows:
        raise DataError(f"{path} is empty: expected a header row of column names, then one row per example")
    header, cells = [name.strip() for name in rows[0]], _cell_table(path, rows[1:], len(rows[0]), first_line=2)
    texts = cells[:, _column_index(path, header, text)]
    if target is None:
        return texts, None
    column = _column_index(path, header, target)
    return texts, _numbers(path, cells, [column], [repr(name) for name in header], first_line=2)[:, 0].astype(
        np.float32)


def read_text_lines(path: str | Path) -> np.ndarray:
    """The lines of a UTF-8 text file as unicode strings (1-D), one example a line; a final newline ends the
    last line rather than starting an empty one."""
    path = _existing(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not a readable UTF-8 text file ({err}); save it as UTF-8, one example a "
                        f"line") from None
    lines = text.split("\n")  # not splitlines(): it would also split at form feeds and other separators
    if lines[-1] == "":
        lines.pop()
    if not lines:
        raise DataError(f"{path} is empty: expected one text a line")
    return np.array([line.removesuffix("\r") for line in lines], dtype=str)


def read_table(path: str | Path, skip_rows: int = 0, delimiter: str | None = ",") -> np.ndarray:
    """Every cell of a headerless numeric table as float64 (2-D); `delimiter=None` splits on whitespace."""
    path = _existing(path)
    rows = _read_rows(path, delimiter)[skip_rows:]
    if not rows:
        raise DataError(f"{path} has no rows after its first {skip_rows}: expected a numeric table")
    cells = _cell_table(path, rows, len(rows[0]), first_line=skip_rows + 1)
    names = [f"{j} (counting from 0)" for j in range(cells.shape[1])]
    return _numbers(path, cells, list(range(cells.shape[1])), names, first_line=skip_rows + 1)


def _read_rows(path: Path, delimiter: str | None) -> list[list[str]]:
    """The non-blank rows of a text table, gzip-compressed or not, each a list of cell strings."""
    try:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw).decode("utf-8-sig")
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not a readable text table ({err}); it may be truncated, corrupt or "
                        f"binary: save or download it again") from None
    if delimiter is None:
        return [line.split() for line in text.splitlines() if line.strip()]
    return [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row]


def _cell_table(path: Path, rows: list[list[str]], width: int, first_line: int) -> np.ndarray:
    """The rows as a 2-D string array, after checking that every row has `width` cells."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    wrong = np.flatnonzero(lengths != width)
    if wrong.size:
        i = int(wrong[0])
        raise DataError(f"{path}, line {i + first_line}: expected {width} cells like the first row, found "
                        f"{lengths[i]} ({wrong.size} rows differ); fix the row or the delimiter")
    return np.array(rows, dtype=str).reshape(len(rows), width)


def _numbers(path: Path, cells: np.ndarray, columns: list[int], names: list[str], first_line: int) -> np.ndarray:
    """The chosen columns of a string table as float64, naming the first cell that is not a number."""
    try:
        return cells[:, columns].astype(np.float64)
    except ValueError:
        pass
    # only on failure: find the offending cell one column at a time
    for j in columns:
        try:
            cells[:, j].astype(np.float64)
        except ValueError:
            i = next(i for i, cell in enumerate(cells[:, j]) if not _is_number(cell))
            found = repr(str(cells[i, j])) if cells[i, j].strip() else "an empty cell"
            raise DataError(f"{path}, line {i + first_line}, column {names[j]}: expected a number, found {found}; "
                            f"fix that cell, drop the row, or leave the column out of the features") from None
    raise AssertionError("a column failed to convert as a whole but every cell converts")  # pragma: no cover


def _is_number(cell: str) -> bool:
    """Whether float() accepts the cell."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _feature_columns(path: Path, header: list[str], features: Sequence[str] | None, target: int) -> list[int]:
    """Column indices named by `features` (names or "first:last" ranges); None means all but the target."""
    if features is None:
        return [j for j in range(len(header)) if j != target]
    if isinstance(features, str):
        features = [features]
    columns: list[int] = []
    for item in features:
        if item not in header and ":" in item:
            first, last = (_column_index(path, header, part.strip()) for part in item.split(":", 1))
            if first > last:
                raise DataError(f"{path}: feature range {item!r} runs backwards ({header[first]!r} is column "
                                f"{first}, {header[last]!r} column {last}); write it as "
                                f"'{header[last]}:{header[first]}'")
            columns.extend(range(first, last + 1))
        else:
            columns.append(_column_index(path, header, item))
    if target in columns:
        raise DataError(f"{path}: the target column {header[target]!r} is also among the features; leave it out "
                        f"of features (or give features = None to take every other column)")
    return columns


def _column_index(path: Path, header: list[str], name: str) -> int:
    """The index of column `name`, or a DataError listing the columns there are."""
    found = [j for j, column in enumerate(header) if column == name]
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(f"{path}: column name {name!r} appears {len(found)} times in the header (columns "
                        f"{', '.join(map(str, found))}); rename the duplicates")
    close = difflib.get_close_matches(name, header, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DataError(f"{path} has no column {name!r}{hint}; its columns are: {', '.join(header)}")


def _existing(path: str | Path) -> Path:
    """`path` as a Path, or a DataError if no file is there."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"{path} {what}; check the path")
    return path
