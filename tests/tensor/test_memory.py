"""The allocator policy: applied once, harmless to call again, and arrays still behave."""

from __future__ import annotations

import sys

import numpy as np

from dlcli.tensor.memory import keep_freed_memory


def test_keep_freed_memory_is_idempotent_and_arrays_still_work() -> None:
    first = keep_freed_memory()
    assert keep_freed_memory() == first
    if sys.platform.startswith("linux"):
        assert first
    big = np.ones((4096, 1024), np.float32)  # 16 MiB: now from the heap
    assert float(big.sum()) == 4096 * 1024
