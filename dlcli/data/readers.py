"""Readers for dataset files (IDX, .npy, .npz, text lines) into NumPy arrays; nothing is ever unpickled.

CSV and other text tables are read in csv_table.py; these names are kept here for the callers that import them.
"""

from __future__ import annotations

import gzip
import math
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from dlcli.data.csv_table import read_csv, read_csv_columns, read_csv_text, read_table  # noqa: F401
from dlcli.data.files import existing_file, read_file_bytes, unreadable
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
    data = bytes(source) if isinstance(source, (bytes, bytearray)) else read_file_bytes(source)
    try:
        return gzip.decompress(data) if data[:2] == _GZIP_MAGIC else data
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
        raise DataError(f"{label} is not a readable gzip file ({err}); it may be truncated or corrupt: "
                        f"download it again") from None


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array in an .npz archive, by name; object arrays are refused, never unpickled."""
    path = existing_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith(".npy"):
                    with archive.open(member) as fp:
                        _refuse_objects(fp, path, member.removesuffix(".npy"))
        with np.load(path, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in arrays.files}
    except _CORRUPT as err:
        raise unreadable(path, err, "a readable .npz archive") from None


def read_npy(path: str | Path) -> np.ndarray:
    """The array in a .npy file; an object array is refused, never unpickled."""
    path = existing_file(path)
    try:
        with open(path, "rb") as fp:
            _refuse_objects(fp, path, None)
        return np.load(path, allow_pickle=False)
    except _CORRUPT as err:
        hint = " (it is a zip archive: name it .npz)" if zipfile.is_zipfile(path) else ""
        raise unreadable(path, err, "a readable .npy file", hint) from None


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


def read_text_lines(path: str | Path) -> np.ndarray:
    """The lines of a UTF-8 text file as unicode strings (1-D), one example a line; a final newline ends the
    last line rather than starting an empty one."""
    path = Path(path)
    raw = read_file_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not a readable UTF-8 text file ({err}); save it as UTF-8, one example a "
                        f"line") from None
    lines = text.split("\n")  # not splitlines(): it would also split at form feeds and other separators
    if lines[-1] == "":
        lines.pop()
    if not lines:
        raise DataError(f"{path} is empty: expected one text a line")
    return np.array([line.removesuffix("\r") for line in lines], dtype=str)
