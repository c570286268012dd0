"""Text files, one example a file (a folder of reviews), read as UTF-8 on the decode threads; and TextRows, the
texts of a split held as Python strings and handed out a batch at a time as a NumPy unicode array.

Why not one NumPy array: NumPy's unicode arrays are fixed-width, 4 bytes a character of the longest text, so
25,000 IMDB reviews (the longest 13,704 characters) would take 1.4 GB instead of the 33 MB they hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.data.files import os_problem
from dlcli.data.prefetch import in_parts, thread_pool

_READ_PART = 256  # files a read task takes


class TextRows:
    """A lazy array (see readers/reader.py) of texts, shape (examples, 1): one string per example, for a model
    input of dtype "string"; indexing gives a unicode array as wide as that batch's longest text."""

    dtype = np.dtype("U")
    ndim = 2

    def __init__(self, texts: Sequence[str], sources: Sequence[str] | None = None) -> None:
        self.texts = list(texts)
        self.sources = list(sources) if sources is not None else None

    @property
    def shape(self) -> tuple[int, int]:
        """(examples, 1)."""
        return len(self.texts), 1

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: Any) -> np.ndarray:
        """The texts at `index` (an index array, a boolean mask, a slice or one position) as a (k, 1) array."""
        if isinstance(index, (int, np.integer)):
            return np.array([self.texts[index]], dtype=str)
        positions = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        texts = [self.texts[i] for i in positions.tolist()]  # strings are Python objects: one lookup each
        return np.array(texts, dtype=str).reshape(len(texts), 1)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """Every text as one unicode array (as wide as the longest): for small splits only."""
        whole = self[np.arange(len(self))]
        return whole if dtype is None else whole.astype(dtype)

    def select(self, index: np.ndarray) -> TextRows:
        """The examples at `index` (a validation part held out of a training folder)."""
        chosen = np.asarray(index).tolist()
        return TextRows([self.texts[i] for i in chosen],
                        [self.sources[i] for i in chosen] if self.sources is not None else None)

    def describe(self) -> dict[str, Any]:
        """For the data report: text lengths in characters and in whitespace-separated words."""
        if not self.texts:
            return {"texts": 0}
        characters = np.fromiter(map(len, self.texts), np.int64, count=len(self.texts))
        words = np.fromiter((len(text.split()) for text in self.texts), np.int64, count=len(self.texts))
        return {"texts": len(self.texts),
                "characters": _spread(characters), "words": _spread(words),
                "empty": int((characters == 0).sum())}


def _spread(values: np.ndarray) -> dict[str, float]:
    return {"min": int(values.min()), "median": float(np.median(values)), "mean": float(values.mean()),
            "max": int(values.max())}


def read_texts(files: Sequence[Path], threads: int) -> tuple[list[str | None], list[tuple[Path, str]]]:
    """Each file's text (UTF-8; a byte-order mark is dropped), None for a file that cannot be read, and the bad
    files with what is wrong with each."""
    pool = thread_pool(threads)
    parts = in_parts(len(files), max(1, -(-len(files) // _READ_PART)))
    texts: list[str | None] = []
    bad: list[tuple[Path, str]] = []
    for found in pool.map(lambda part: [_read_text(path) for path in files[part]], parts):
        texts += [text for text, _ in found]
        bad += [(path, problem) for path, (text, problem) in zip(files[len(texts) - len(found):], found)
                if text is None]
    return texts, bad


def _read_text(path: Path) -> tuple[str | None, str]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        return None, os_problem(path, err).removeprefix(f"{path} ")
    try:
        return raw.decode("utf-8-sig"), ""
    except UnicodeDecodeError as err:
        return None, (f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start} cannot be decoded); "
                      f"save it as UTF-8")
