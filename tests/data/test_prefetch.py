"""Batches gathered ahead on worker threads: the same rows in the same order whatever the threads and their timing,
bounded work ahead, errors raised in the caller, and lazy arrays without fill() indexed in the caller's thread."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from dlcli.data.prefetch import MAX_PREFETCH_BATCHES, in_parts, prefetch_depth, prefetched
from dlcli.errors import DataError


class SlowRows:
    """A lazy array that fills rows on threads, each row after a random pause, recording what it was asked."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, count: int, threads: int, seed: int = 0) -> None:
        self.count, self.threads = count, threads
        self.rng = np.random.default_rng(seed)
        self.asked: list[int] = []
        self.lock = threading.Lock()
        self.fail_at: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.count, 3

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        out = np.empty((len(index), 3), np.float32)
        self.fill(index, out)
        return out

    def fill(self, index: np.ndarray, out: np.ndarray) -> None:
        with self.lock:
            pauses = self.rng.random(len(index)) * 0.002
            self.asked += index.tolist()
        for position, row in enumerate(index):
            if row == self.fail_at:
                raise DataError(f"row {row} cannot be read")
            time.sleep(pauses[position])
            out[position] = [row, row * 2, row * 3]


class IndexOnly:
    """A lazy array with no fill(): only indexed, recording the thread that asked."""

    dtype = np.dtype(np.int64)
    ndim = 1
    shape = (20,)

    def __init__(self) -> None:
        self.threads_seen: set[int] = set()

    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: Any) -> np.ndarray:
        self.threads_seen.add(threading.get_ident())
        return np.arange(20)[index] * 10


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_batches_are_the_same_rows_in_order_whatever_the_threads(threads: int) -> None:
    order = np.random.default_rng(3).permutation(50)
    batches = [order[start:start + 7] for start in range(0, 50, 7)]
    lazy, plain, other = SlowRows(50, threads, seed=threads), np.arange(50) * 5, IndexOnly()
    seen = list(prefetched({"lazy": lazy, "plain": plain, "other": SlowRows(50, 1)}, batches))
    assert len(seen) == len(batches)
    for batch, index in zip(seen, batches):
        assert batch["lazy"].tolist() == [[row, row * 2, row * 3] for row in index]
        assert batch["plain"].tolist() == (index * 5).tolist() and batch["other"][:, 0].tolist() == index.tolist()
    assert [batch["other"].tolist() for batch in prefetched({"other": other}, [np.arange(3), np.arange(3, 5)])] \
        == [[0, 10, 20], [30, 40]]
    assert other.threads_seen == {threading.get_ident()}  # no fill(): indexed in the caller's thread only


@pytest.mark.parametrize("depth", [2, None])
def test_work_ahead_is_bounded_and_an_early_stop_cancels_the_rest(depth: int | None) -> None:
    lazy = SlowRows(200, 2)
    batches = [np.arange(start, start + 10) for start in range(0, 200, 10)]
    gathered = prefetched({"lazy": lazy}, batches, depth=depth)
    next(gathered)
    ahead = MAX_PREFETCH_BATCHES if depth is None else depth  # 12-byte rows: the byte bound allows the most
    expected = 10 * (1 + ahead + 1)  # the one handed out, those ahead, one more
    deadline = time.monotonic() + 5
    while len(set(lazy.asked)) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    assert len(set(lazy.asked)) == expected
    gathered.close()
    time.sleep(0.1)
    assert len(set(lazy.asked)) < 200


def test_prefetch_depth_keeps_the_queue_to_a_few_megabytes_of_rows() -> None:
    assert prefetch_depth(64 * 64 * 3, 64) == MAX_PREFETCH_BATCHES == 8  # 0.8 MB a batch
    assert prefetch_depth(180 * 180 * 3, 128) == 2  # 12.4 MB a batch: 32 MB hold two
    assert prefetch_depth(1024 * 1024 * 3, 64) == 2  # 201 MB a batch: never fewer than two
    assert prefetch_depth(180 * 180 * 3, 32) == 8  # 3.1 MB a batch: ten would fit


def test_a_fill_error_reaches_the_caller_at_its_batch() -> None:
    lazy = SlowRows(30, 3)
    lazy.fail_at = 17
    gathered = prefetched({"lazy": lazy}, [np.arange(0, 10), np.arange(10, 20), np.arange(20, 30)])
    assert next(gathered)["lazy"][0, 0] == 0
    with pytest.raises(DataError, match="row 17 cannot be read"):
        next(gathered)


def test_in_parts_cuts_contiguous_nearly_equal_slices() -> None:
    assert in_parts(10, 3) == [slice(0, 3), slice(3, 6), slice(6, 10)]
    assert in_parts(2, 4) == [slice(0, 1), slice(1, 2)] and in_parts(0, 4) == []
