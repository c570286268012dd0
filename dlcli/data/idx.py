"""IDX files (MNIST's format) into NumPy arrays: the dataset catalog's format, not a file users name in a spec."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from dlcli.data.files import read_file_bytes
from dlcli.errors import DataError

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
