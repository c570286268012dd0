"""Arrays computed once from a dataset's files and kept in the cache as a plain .npz, so later runs skip the work.

The caller names the file after everything the arrays depend on (a source file's sha256, a recipe version),
so a changed source or recipe is another file, never a stale one. The file is read back like any data file
(`allow_pickle=False`), written atomically (a temporary file in the same folder, fsynced, renamed), and a
file that cannot be read, or that the caller's check rejects, is rebuilt rather than trusted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from dlcli.data.readers.npz import read_npz
from dlcli.errors import DataError

Arrays = dict[str, np.ndarray]


def cached_arrays(path: Path, build: Callable[[], Arrays], valid: Callable[[Arrays], bool] = lambda _: True
                  ) -> Arrays:
    """The arrays saved at `path` if it reads back and `valid` accepts them, else `build()`'s, saved there."""
    if path.is_file():
        try:
            arrays = read_npz(path)
            if valid(arrays):
                return arrays
        except DataError:
            pass  # damaged (cut short, bit-flipped, not a zip): rebuilt below, and replaced
    arrays = build()
    _save_atomically(path, arrays)
    return arrays


def _save_atomically(path: Path, arrays: Arrays) -> None:
    """Write arrays to path so that a crash leaves the old file or the new one; a cache that cannot be
    written (a read-only or full disk) is skipped: the next run builds the arrays again."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
