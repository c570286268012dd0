"""The images of a folder as a lazy array (see readers/reader.py): decoded from their files when a batch asks for
them, on the decode threads, through the decoded-image cache; and the check of every file before training."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dlcli.data.image_cache import ImageStore, contents_sha256, describe_store
from dlcli.data.images import BadImage, DecodeOptions, ImageHeader, decode, probe
from dlcli.data.plain_png import load_kernels
from dlcli.data.prefetch import in_parts, thread_pool
from dlcli.errors import DataError

SHOWN_BAD_FILES = 20  # a message lists this many bad files, then counts the rest
_CHECK_PART = 64  # files a check task takes: small enough to keep every thread busy to the end


class ImageFiles:
    """Images decoded when a batch asks for them: a lazy array of shape (files, height, width, channels), uint8.

    `files` are the folder's files (the cache's rows); `rows` are this array's among them, so a validation part
    held out with select() shares the files, the cache and the decode threads.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, files: Sequence[Path], options: DecodeOptions, threads: int, store: ImageStore | None = None,
                 headers: Sequence[ImageHeader] | None = None, rows: np.ndarray | None = None) -> None:
        self.files, self.options, self.threads, self.store = list(files), options, threads, store
        self.headers = list(headers) if headers is not None else None
        self.rows = np.arange(len(self.files)) if rows is None else np.asarray(rows, np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        """(examples, height, width, channels)."""
        return (len(self.rows), *self.options.shape)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def resident(self) -> bool:
        """Whether every image is in a complete cache held in memory (RAM, or a disk cache small enough to stay in
        the page cache): a batch is then one gather, as from an in-memory array, cheaper in the caller's thread
        than as tasks on the decode threads (see prefetch.streams)."""
        return self.store is not None and self.store.resident

    def __getitem__(self, index: Any) -> np.ndarray:
        """The decoded images at `index` (an index array, a boolean mask, a slice or one position), in this
        thread; training gathers its batches with prefetched() instead, on the decode threads until the cache is
        complete."""
        if isinstance(index, (int, np.integer)):
            return self[np.array([index])][0]
        positions = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        if self.resident:
            assert self.store is not None
            return self.store.pixels[self.rows[positions]]  # one gather: what an in-memory .npz batch costs
        out = np.empty((len(positions), *self.options.shape), np.uint8)
        self.fill(positions, out)
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """Every image decoded at once: only for small folders (tests, reports); training never asks for it."""
        whole = self[np.arange(len(self))]
        return whole if dtype is None else whole.astype(dtype)

    def fill(self, index: np.ndarray, out: np.ndarray) -> None:
        """Write the images at positions `index` into `out` (one row each): from the cache where they are in it,
        else decoded straight into their row of `out` (and then put in the cache, all in one write). Safe to call
        from several threads on different `out` rows."""
        rows = self.rows[np.asarray(index, np.int64)]
        hits = self.store.get(rows, out) if self.store is not None else np.zeros(len(rows), bool)
        missing = np.flatnonzero(~hits)
        for position in missing.tolist():  # one Pillow call per file: the decoding is the file's own
            path = self.files[rows[position]]
            try:
                decode(path, self.options, out[position])
            except BadImage as err:
                raise DataError(f"{path}: {err}; it passed the check before training (its header and its end are "
                                f"whole), so its compressed data is damaged inside: replace it with a whole copy, "
                                f"then resume with dlcli train RUN --resume (a run cannot resume without it: "
                                f"removing it changes the examples, so then train a new run)") from None
        if self.store is not None and len(missing):
            self.store.put(rows[missing], out[missing])

    def select(self, index: np.ndarray) -> ImageFiles:
        """The examples at `index`, still lazy (a validation part held out of a training folder)."""
        return ImageFiles(self.files, self.options, self.threads, self.store, self.headers, self.rows[index])

    def paths(self) -> list[str]:
        """The file of each example, in order."""
        return [str(self.files[row]) for row in self.rows]

    def describe(self) -> dict[str, Any]:
        """For the data report: how many images of each size and mode the files' headers give, and the cache."""
        report: dict[str, Any] = {"images": len(self), "decoded_shape": list(self.options.shape),
                                  **describe_store(self.store)}
        if self.headers is not None:
            headers = [self.headers[row] for row in self.rows]
            report["sizes"] = {f"{w}x{h}": n for (w, h), n in Counter((h.width, h.height) for h in headers)
                               .most_common()}
            report["modes"] = dict(Counter(h.mode for h in headers).most_common())
            report["formats"] = dict(Counter(h.format for h in headers).most_common())
        return report


@dataclass
class CheckedFiles:
    """The file check's result: the files that are whole images, in order, with their headers (and contents'
    sha256 when asked), and the bad ones with what is wrong."""

    kept: np.ndarray  # bool, for each file given
    headers: list[ImageHeader]
    bad: list[tuple[Path, str]]
    seconds: float
    digests: list[str] = field(default_factory=list)


def check_files(files: Sequence[Path], threads: int, with_digests: bool) -> CheckedFiles:
    """Every file's header and end checked (see images.probe) on the decode threads; with `with_digests`, each
    file's contents hashed too (the disk cache's key). Meanwhile this thread loads the PNG decoder's kernel if
    the files look like PNGs, so that the first batches do not wait for it."""
    started = time.perf_counter()
    pool = thread_pool(threads)
    parts = in_parts(len(files), max(1, -(-len(files) // _CHECK_PART)))
    results: list[tuple[ImageHeader | None, str]] = []
    checking = pool.map(lambda part: _probe_part(files[part], with_digests), parts)  # every part submitted now
    if files and files[0].suffix.lower() == ".png":
        load_kernels()
    for found in checking:
        results += found
    kept = np.array([header is not None for header, _ in results], bool)
    headers = [header for header, _ in results if header is not None]
    bad = [(path, note) for path, (header, note) in zip(files, results) if header is None]
    digests = [note for header, note in results if header is not None] if with_digests else []
    return CheckedFiles(kept, headers, bad, time.perf_counter() - started, digests)


def _probe_part(files: Sequence[Path], with_digests: bool) -> list[tuple[ImageHeader | None, str]]:
    """(header, sha256 or "") of each file, or (None, what is wrong)."""
    found: list[tuple[ImageHeader | None, str]] = []
    for path in files:
        try:
            header = probe(path)
            found.append((header, contents_sha256(path) if with_digests else ""))
        except BadImage as err:
            found.append((None, str(err)))
        except OSError as err:  # the file went away between the check and the hash
            found.append((None, f"unreadable ({err.strerror or err})"))
    return found


def bad_files_message(bad: list[tuple[Path, str]], total: int, where: str, kind: str = "image") -> str:
    """The one error naming every bad file: the first SHOWN_BAD_FILES with what is wrong, then how many more."""
    lines = [f"  {path}: {problem}" for path, problem in bad[:SHOWN_BAD_FILES]]
    if len(bad) > SHOWN_BAD_FILES:
        lines.append(f"  and {len(bad) - SHOWN_BAD_FILES:,} more")
    return (f"{where}: {len(bad):,} of {total:,} {kind} files cannot be read; fix or remove them, or set "
            f"data.on_bad_file = \"skip\" to leave them out:\n" + "\n".join(lines))
