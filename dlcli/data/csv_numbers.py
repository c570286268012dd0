"""The fastest way into a large CSV file of numbers: Numba kernels (kernels/csv_numbers.py) parse blocks of lines
on threads straight into one (rows, columns) float64 matrix, from the file mapped into memory.

On 2 cores this read 1,000,000 x 20 numbers (183 MB) in less time than pandas' C parser or pyarrow.csv took
(benchmarks/csv_load.py). It reads only what it reads exactly: a file without quotes whose header is followed by
rows of the header's width, each cell a number (exactly rounded: the kernels' fast path, else Python's float), an
empty cell, or one of the missing-value cells. Anything else (a text column, a quote, a row of another width) gives
None, and the other readers (csv_fast.py, then the careful one) take the file and name what they find.
"""

from __future__ import annotations

import mmap
import os
import re
from typing import Union

import numpy as np

from dlcli.data.prefetch import default_threads, thread_pool

MIN_BYTES = 4_000_000  # smaller files: pyarrow or NumPy read them in milliseconds, and no kernel compiles
OTHER_CELLS = 65_536  # cells the kernels leave to Python's float(), at most; more and the slower readers take it
MIN_BLOCK = 1 << 20  # bytes of lines per thread, at least
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)
Bytes = Union[bytes, memoryview, mmap.mmap]  # anything with find, slices and the buffer protocol


def read_numbers(raw: Bytes, missing_cells: tuple[str, ...], min_bytes: int | None = None
                 ) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(header, values, lines) of a CSV file's bytes when every cell is a number or missing (values: (rows,
    columns) float64, NaN where a cell is missing; lines: each row's line, from 1, blank lines counted), or None
    when another reader must read it (or the file is smaller than `min_bytes`, MIN_BYTES unless given)."""
    if len(raw) < (MIN_BYTES if min_bytes is None else min_bytes) or raw.find(b'"') >= 0:
        return None
    found = _header(raw)
    if found is None:
        return None
    header, header_line, body = found
    from dlcli.kernels import csv_numbers as kernels

    # the kernels look for no end but a line break: a last line without one is read from a copy that has it
    end = len(raw) if raw[-1:] == b"\n" else raw.rfind(b"\n") + 1
    whole = np.frombuffer(raw, np.uint8)
    parts = [(whole, lo, hi) for lo, hi in _blocks(raw, body, end)]
    if end < len(raw):
        parts.append((np.frombuffer(bytes(raw[end:]) + b"\n", np.uint8), 0, len(raw) - end + 1))
    if not parts:
        return None
    pool = thread_pool(len(parts))
    counts = list(pool.map(lambda part: kernels.count_rows(*part), parts))
    rows = sum(count[0] for count in counts)
    if rows == 0:
        return None  # a header alone: the careful reader says so
    values = np.empty((rows, len(header)))
    lines = np.empty(rows, np.int64)
    others = np.empty((len(parts), OTHER_CELLS // len(parts), 4), np.int64)
    first_rows = np.cumsum([0] + [count[0] for count in counts])
    first_lines = header_line + 1 + np.cumsum([0] + [count[1] for count in counts])

    def parse(p: int) -> tuple[int, int]:
        return kernels.parse_rows(*parts[p], values, lines, int(first_rows[p]), int(first_lines[p]), others[p],
                                  kernels.EXACT_POWERS)

    results = list(pool.map(parse, range(len(parts))))
    if any(status != count[0] for (status, _), count in zip(results, counts)):
        return None  # a row of another width (or too many cells for float()): the other readers name it
    for (data, _, _), block, (_, cells) in zip(parts, others, results):
        # the copied last line's places are places in the copy: shifted, they are places in the file
        places = block[:cells] + (np.array([0, 0, end, end]) if data is not whole else 0)
        if not _read_others(raw, places, values, missing_cells):
            return None
    return header, values, lines


def _header(raw: Bytes) -> tuple[list[str], int, int] | None:
    """(names, its line number, where the rows start) of the first line that is not blank; None when it is not
    UTF-8 or no line follows it."""
    start, line = 0, 1
    while True:
        stop = raw.find(b"\n", start)
        if stop < 0:
            return None
        if raw[start:stop].strip(b"\r"):
            break
        start, line = stop + 1, line + 1
    try:
        text = bytes(raw[start:stop]).decode("utf-8-sig" if start == 0 else "utf-8")
    except UnicodeDecodeError:
        return None
    return [name.strip() for name in text.rstrip("\r").split(",")], line, stop + 1


def _blocks(raw: Bytes, body: int, end: int) -> list[tuple[int, int]]:
    """raw[body:end] cut after line breaks into one block of lines a thread (each at least MIN_BLOCK bytes)."""
    threads = int(os.environ.get("NUMBA_NUM_THREADS") or default_threads())
    parts = max(1, min(threads, (end - body) // MIN_BLOCK))
    cuts = [body]
    for p in range(1, parts):
        cut = raw.find(b"\n", body + p * (end - body) // parts, end) + 1
        if cuts[-1] < cut < end:
            cuts.append(cut)
    cuts.append(end)
    return [(lo, hi) for lo, hi in zip(cuts, cuts[1:]) if lo < hi]


def _read_others(raw: Bytes, cells: np.ndarray, values: np.ndarray, missing_cells: tuple[str, ...]) -> bool:
    """Fill the cells the kernels left (row, column, start, stop) by Python's float() or as missing; False when
    one is neither a number nor a missing value (text: another reader takes the file)."""
    missing = set(missing_cells)
    for row, column, start, stop in cells.tolist():
        try:
            cell = bytes(raw[start:stop]).decode("ascii").strip()
        except UnicodeDecodeError:
            return False
        if cell in missing:
            values[row, column] = np.nan
        elif _NUMBER.fullmatch(cell):
            values[row, column] = float(cell)
        else:
            return False
    return True
