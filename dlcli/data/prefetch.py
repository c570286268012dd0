"""Batches gathered ahead of the training step: lazy arrays that can decode rows on worker threads (image folders)
fill the next batches on a shared thread pool while the model trains on the current one.

What a batch holds depends only on its index array, never on which thread decoded which row or when: each task
writes its own rows of a buffer the batch owns, and batches come out in the order they were asked for. So
results are bit-identical whatever the thread timing and the number of threads.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterable, Iterator

import numpy as np

PREFETCH_BATCHES = 2  # batches decoded ahead of the one training: bounded, so memory stays a few batches
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def default_threads() -> int:
    """Decode threads when data.decode_threads is not given: the cores, at most 4 (Pillow releases the GIL while
    it decodes, so threads scale until the cores are busy)."""
    return max(1, min(4, os.cpu_count() or 1))


def thread_pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool of `threads` decode threads (made once, shared by every split and epoch)."""
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="dlcli-decode")
        return pool


def in_parts(count: int, parts: int) -> list[slice]:
    """range(count) cut into at most `parts` contiguous, nearly equal slices (none empty)."""
    bounds = np.linspace(0, count, min(parts, count) + 1).astype(int) if count else np.zeros(1, int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def streams(array: Any) -> bool:
    """Whether `array` is a lazy array that fills rows on worker threads (it has `fill` and `threads`), and has
    not every row in memory already (`resident`: an image folder whose cache is complete is gathered as a NumPy
    array is, in the caller's thread)."""
    return hasattr(array, "fill") and hasattr(array, "threads") and not getattr(array, "resident", False)


def prefetched(arrays: dict[str, Any], batches: Iterable[np.ndarray],
               depth: int = PREFETCH_BATCHES) -> Iterator[dict[str, np.ndarray]]:
    """For each index array of `batches`, in order, the rows of every array in `arrays` (name -> array).

    An array that streams (see streams()) is filled `depth` batches ahead on its thread pool, each batch split
    into one task per thread; any other array (NumPy, or a lazy array with no `fill`) is indexed when its batch
    is handed out. A task's error (a DataError naming a file) is raised here, in the caller's thread. Closing the
    iterator early cancels the batches not started.
    """
    streamed = {name: array for name, array in arrays.items() if streams(array)}
    pending: deque[tuple[np.ndarray, dict[str, tuple[np.ndarray, list[Future]]]]] = deque()
    upcoming = iter(batches)

    def submit(index: np.ndarray) -> None:
        parts = {}
        for name, array in streamed.items():
            out = np.empty((len(index), *array.shape[1:]), array.dtype)
            pool = thread_pool(array.threads)
            futures = [pool.submit(array.fill, index[part], out[part]) for part in in_parts(len(index), array.threads)]
            parts[name] = (out, futures)
        pending.append((index, parts))

    try:
        for _ in range(depth + 1):
            index = next(upcoming, None)
            if index is None:
                break
            submit(index)
        while pending:
            index, parts = pending.popleft()
            following = next(upcoming, None)
            if following is not None:
                submit(following)
            batch = {}
            for name, array in arrays.items():
                if name in parts:
                    out, futures = parts[name]
                    for future in futures:
                        future.result()
                    batch[name] = out
                else:
                    batch[name] = array[index]
            yield batch
    finally:
        for _, parts in pending:
            for _, futures in parts.values():
                for future in futures:
                    future.cancel()
