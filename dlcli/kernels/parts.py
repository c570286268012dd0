"""Running a nogil kernel over blocks of independent rows (images, sequences), one block per thread.

A kernel that takes `lo, hi` last and touches only rows [lo, hi) of its outputs runs its blocks on plain Python
threads, since nogil kernels release the GIL. This replaces `parallel=True` (prange): a parfor costs 0.5-3 s
more to compile than the same loop serial (im2col 0.8 s against 0.15; the CTC loss 5.8 s against 1.5: measured
here with an empty cache), and every fresh CI container pays that again. The threads meet once per call, and
they sleep rather than spin between calls, so they never take the cores from OpenBLAS.
"""

from __future__ import annotations

import concurrent.futures
import functools
from typing import Callable

import numba
import numpy as np

from dlcli.kernels.cache import claimed_kernels_skipped, skips_claimed_kernels

_POOL: list[concurrent.futures.ThreadPoolExecutor] = []  # created on first use, grown to the thread count


def in_parts(kernel: Callable[..., None], rows: int, *args: object, totals: int = 0, min_rows: int = 1) -> np.ndarray:
    """Run kernel(*args, lo, hi) over blocks of rows, one per thread, or with totals=W, kernel(*args, total, lo,
    hi) where total is that block's (W,) float64 row of the returned (blocks, W) array. As many blocks as
    numba.get_num_threads() (dlcli sets it per process from OMP_NUM_THREADS, and per MPI rank: see
    train/environment.py and train/launcher.py), each of at least min_rows rows, so a small call runs on this
    thread alone."""
    parts = max(1, min(numba.get_num_threads(), rows // max(min_rows, 1)))
    sums = np.zeros((parts, totals))
    calls = [args + ((sums[p],) if totals else ()) + (p * rows // parts, (p + 1) * rows // parts)
             for p in range(parts)]
    if parts == 1:
        kernel(*calls[0])
        return sums
    if not _POOL or _POOL[0]._max_workers < parts - 1:
        _POOL[:] = [concurrent.futures.ThreadPoolExecutor(parts - 1, thread_name_prefix="dlcli-kernels")]
    # a caller that skips kernels another process compiles (kernels/cache.py) has its parts threads skip them too
    run = functools.partial(_skipping_claimed, kernel) if skips_claimed_kernels() else kernel
    futures = [_POOL[0].submit(run, *call) for call in calls[1:]]
    kernel(*calls[0])  # the first block on this thread
    for future in futures:
        future.result()
    return sums


def _skipping_claimed(kernel: Callable[..., None], *args: object) -> None:
    """kernel(*args) on a parts thread, for a caller that skips kernels another process is compiling: waiting for
    one, the parts thread would hold Numba's compiler lock, and the caller, having skipped it, would stand idle at
    its next kernel until the other process had compiled this one (segmentation_toy's compiling thread: 1.15 s)."""
    with claimed_kernels_skipped():
        kernel(*args)
