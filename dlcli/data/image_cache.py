"""The decoded-image cache of data.cache: "memory" keeps a folder's decoded images in RAM for later epochs;
"disk" keeps them in a memory-mapped .npy file under the dataset cache folder, for later epochs and later runs.

A disk cache is named by a key: the sha256 of the decode options and of every file's contents, in order, so a
changed, added or removed file, or another image_size, is another cache. It is built in a file of its own
(.KEY.npy.partial-PID) as the first epoch decodes, and only once every image is in it is it fsynced, its sha256
written beside it (KEY.json), and renamed to KEY.npy. A run that opens it checks that sha256 first: a damaged or
half-written cache is deleted and built again, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
import weakref
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.data.images import DecodeOptions

CACHE_VERSION = 1  # of the decoding: bump it when decode() changes its output, so old caches are not used
_CHUNK = 1 << 22


class ImageStore:
    """Decoded images by row (the folder's file order) in RAM: which rows are in, and their pixels."""

    def __init__(self, count: int, shape: tuple[int, int, int]) -> None:
        self.pixels: np.ndarray = np.empty((count, *shape), np.uint8)  # pages are only taken when written
        self.filled = np.zeros(count, bool)
        self.lock = threading.Lock()
        self.count = 0

    @property
    def complete(self) -> bool:
        """Whether every row is stored: a batch is then one gather from `pixels`, nothing left to decode."""
        return self.count == len(self.filled)

    @property
    def resident(self) -> bool:
        """Whether every row is stored and in RAM: a batch is then best gathered in the caller's thread, as from
        an in-memory array (see ImageFiles.resident)."""
        return self.complete

    def get(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Copy the stored rows of `rows` into `out` (same positions); returns which positions were stored."""
        if self.complete:
            # mode="clip": with the default "raise" NumPy gathers into a buffer and copies that into `out`; rows
            # are in range (they were indexed from the images' own rows)
            np.take(self.pixels, rows, axis=0, out=out, mode="clip")
            return np.ones(len(rows), bool)
        hits = self.filled[rows]
        if hits.any():
            out[hits] = self.pixels[rows[hits]]
        return hits

    def put(self, rows: np.ndarray, images: np.ndarray) -> None:
        """Store decoded images (images[i] is row rows[i]): the pixels first, in one write, then the flags, so a
        reader never sees a half-written row."""
        self.pixels[rows] = images
        with self.lock:
            fresh = np.unique(rows[~self.filled[rows]])  # a row asked for twice in one batch counts once
            if not len(fresh):
                return
            self.filled[fresh] = True
            self.count += len(fresh)
            if self.count == len(self.filled):
                self.completed()

    def completed(self) -> None:
        """Called once, when every row is stored (under the lock)."""


class DiskImageStore(ImageStore):
    """The images in a memory-mapped .npy file under the cache folder; see the module's docstring."""

    def __init__(self, folder: Path, key: str, count: int, shape: tuple[int, int, int]) -> None:
        self.folder, self.key = folder, key
        self.final, self.sidecar = folder / f"{key}.npy", folder / f"{key}.json"
        self.lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(folder, key)
        if self._usable(count, shape):
            self.pixels = np.load(self.final, mmap_mode="r", allow_pickle=False)
            self.filled = np.ones(count, bool)
            self.count = count
            self.partial: Path | None = None
            if self.resident and hasattr(os, "posix_fadvise"):
                with open(self.final, "rb") as stream:  # the kernel reads it ahead, in the background
                    os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)
            return
        # its own file: another run, or another split of this process, may be building the same cache
        self.partial = folder / f".{key}.npy.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.pixels = np.lib.format.open_memmap(self.partial, mode="w+", dtype=np.uint8, shape=(count, *shape))
        self.filled = np.zeros(count, bool)
        self.count = 0
        # a cache left unfinished (a run that stopped early) is deleted when the store goes, not left behind
        weakref.finalize(self, _unlink, self.partial)

    @property
    def resident(self) -> bool:
        """Whether the finished cache is small enough to stay in the page cache (half the RAM at most): its
        batches are then gathered from the memory map in the caller's thread. A larger one is read batch by batch
        on the decode threads, so that its disk reads overlap training."""
        return self.complete and self.pixels.nbytes <= _memory_bytes() // 2

    def _usable(self, count: int, shape: tuple[int, ...]) -> bool:
        """Whether a finished cache is there and whole: its recorded shape, and the sha256 of its bytes."""
        try:
            recorded = json.loads(self.sidecar.read_text())
            found = np.load(self.final, mmap_mode="r", allow_pickle=False)
            whole = (list(found.shape) == [count, *shape] and found.dtype == np.uint8
                     and recorded.get("sha256") == _file_sha256(self.final))
        except (OSError, ValueError, AttributeError):  # missing, unreadable, not JSON, not a .npy
            whole = False
        if not whole:
            for path in (self.sidecar, self.final):
                path.unlink(missing_ok=True)
        return whole

    def completed(self) -> None:
        """Every image is in: flush, fsync, record the sha256, and rename the file into place."""
        assert self.partial is not None
        memmap = self.pixels
        memmap.flush()  # type: ignore[union-attr]
        with open(self.partial, "rb+") as stream:
            os.fsync(stream.fileno())
        record = json.dumps({"sha256": _file_sha256(self.partial), "shape": list(memmap.shape),
                             "version": CACHE_VERSION}).encode()
        os.replace(self.partial, self.final)
        temporary = self.folder / f".{self.key}.json.tmp-{os.getpid()}"
        with open(temporary, "wb") as stream:
            stream.write(record)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, self.sidecar)  # last: a cache without its record is not used
        _fsync_folder(self.folder)
        self.partial = None


def cache_key(options: DecodeOptions, digests: list[str]) -> str:
    """The cache's name: sha256 of the decode options and of each file's contents (their sha256s, in order)."""
    digest = hashlib.sha256(json.dumps({"version": CACHE_VERSION, **asdict(options)}, sort_keys=True).encode())
    for item in digests:
        digest.update(bytes.fromhex(item))
    return digest.hexdigest()


def contents_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (hashlib releases the GIL, so worker threads hash in parallel)."""
    return _file_sha256(path)


def open_store(kind: str, count: int, shape: tuple[int, int, int], folder: Path | None = None,
               key: str | None = None) -> ImageStore | None:
    """The store data.cache asks for: None for "none", RAM for "memory", the disk cache of `key` for "disk"."""
    if kind == "none":
        return None
    if kind == "memory":
        return ImageStore(count, shape)
    assert folder is not None and key is not None
    return DiskImageStore(folder, key, count, shape)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _memory_bytes() -> int:
    """The machine's RAM; 0 where the platform does not tell (then no disk cache counts as resident)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 0


def _remove_abandoned(folder: Path, key: str) -> None:
    """Delete half-built caches of `key` whose process is gone (a killed run); a live run keeps its own."""
    for partial in folder.glob(f".{key}.npy.partial-*"):
        pid = partial.name.rsplit("-", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            partial.unlink(missing_ok=True)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def describe_store(store: ImageStore | None) -> dict[str, Any]:
    """What the data report says of a split's cache."""
    if store is None:
        return {"cache": "none"}
    if isinstance(store, DiskImageStore):
        return {"cache": "disk", "cache_file": str(store.final), "complete": store.partial is None}
    return {"cache": "memory", "decoded": store.count}
