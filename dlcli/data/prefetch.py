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

# How far decoding runs ahead of training: batches up to PREFETCH_BYTES of decoded rows, at least MIN and at most
# MAX of them. Two batches were too few: the training step hands the cores and the GIL to the decode threads in
# bursts (while BLAS waits on memory, between ops), and with a short queue the threads had run dry by the next
# burst, so the step waited for its batch. A few MB of queue lets them decode ahead whenever they get the chance.
PREFETCH_BYTES = 32 << 20
MIN_PREFETCH_BATCHES, MAX_PREFETCH_BATCHES = 2, 8
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


def prefetch_depth(row_bytes: int, batch_size: int) -> int:
    """Batches to decode ahead of the training one, for batches of `batch_size` rows of `row_bytes` each."""
    fits = PREFETCH_BYTES // max(1, row_bytes * batch_size)
    return int(min(MAX_PREFETCH_BATCHES, max(MIN_PREFETCH_BATCHES, fits)))


def prefetched(arrays: dict[str, Any], batches: Iterable[np.ndarray],
               depth: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """For each index array of `batches`, in order, the rows of every array in `arrays` (name -> array).

    An array that streams (see streams()) is filled `depth` batches ahead on its thread pool (by default as many
    as prefetch_depth() allows for the first batch's size), each batch split into one task per thread; any other
    array (NumPy, or a lazy array with no `fill`) is indexed when its batch is handed out. A task's error (a DataError naming a file) is raised here, in the caller's thread. Closing the
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
        index = next(upcoming, None)
        if index is not None:
            submit(index)
            if depth is None:
                row_bytes = sum(int(np.prod(array.shape[1:])) * array.dtype.itemsize for array in streamed.values())
                depth = prefetch_depth(row_bytes, len(index)) if streamed else 0
        for _ in range(depth or 0):
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
