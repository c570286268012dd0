"""Window arithmetic against Keras' timeseries_dataset_from_array and hand-computed indices, and windows as views:
a batch is one gather, and nothing else is copied."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from dlcli.data.windows import WindowShape, Windows, target_rows, window_starts

# Keras 3.15.1, timeseries_dataset_from_array(data, data[offset:], sequence_length, sampling_rate=...,
# sequence_stride=..., batch_size=None) over data = np.arange(40), offset = (sequence_length - 1) *
# sampling_rate + delay (the book's way of putting the target `delay` rows after the window's last row); each
# window's first value is its start, the target value its target row
KERAS_WINDOWS = [
    {"sequence_length": 5, "sampling_rate": 1, "sequence_stride": 1, "delay": 1,
     "starts": list(range(0, 35)), "targets": list(range(5, 40)), "first_window": [0, 1, 2, 3, 4]},
    {"sequence_length": 4, "sampling_rate": 3, "sequence_stride": 1, "delay": 2,
     "starts": list(range(0, 29)), "targets": list(range(11, 40)), "first_window": [0, 3, 6, 9]},
    {"sequence_length": 3, "sampling_rate": 2, "sequence_stride": 4, "delay": 0,
     "starts": [0, 4, 8, 12, 16, 20, 24, 28, 32], "targets": [4, 8, 12, 16, 20, 24, 28, 32, 36],
     "first_window": [0, 2, 4]},
    {"sequence_length": 6, "sampling_rate": 6, "sequence_stride": 2, "delay": 5,
     "starts": [0, 2, 4], "targets": [35, 37, 39], "first_window": [0, 6, 12, 18, 24, 30]},
]


@pytest.mark.parametrize("case", KERAS_WINDOWS, ids=lambda case: "L{sequence_length}-r{sampling_rate}-s"
                                                                  "{sequence_stride}-d{delay}".format(**case))
def test_windows_and_targets_are_keras_ones(case: dict) -> None:
    shape = WindowShape(case["sequence_length"], case["sampling_rate"], case["sequence_stride"], case["delay"])
    starts = window_starts(40, shape)
    assert starts.tolist() == case["starts"]
    assert target_rows(starts, shape).tolist() == case["targets"]
    table = np.arange(40, dtype=np.float32)[:, None]  # row i holds i: a window's values are its rows
    assert Windows(table, starts, shape)[0][:, 0].tolist() == case["first_window"]


def test_window_arithmetic_by_hand_with_delay_and_sampling_rate() -> None:
    # 20 rows; windows of 3 steps every 2nd row (rows s, s+2, s+4), a new window every 3 rows, the target 4 rows
    # after the last step (row s+8): the last window must have s + 8 <= 19, so s in 0, 3, 6, 9
    shape = WindowShape(sequence_length=3, sampling_rate=2, sequence_stride=3, delay=4)
    starts = window_starts(20, shape)
    assert starts.tolist() == [0, 3, 6, 9] and shape.span == 9
    assert target_rows(starts, shape).tolist() == [8, 11, 14, 17]
    table = np.arange(40, dtype=np.float32).reshape(20, 2)  # row i holds 2i, 2i + 1
    windows = Windows(table, starts, shape)
    assert windows.shape == (4, 3, 2) and len(windows) == 4 and windows.dtype == np.float32
    np.testing.assert_array_equal(windows[np.array([3, 1])], [[[18, 19], [22, 23], [26, 27]],
                                                               [[6, 7], [10, 11], [14, 15]]])
    assert window_starts(8, shape).size == 0  # 8 rows hold no window and its target (9 rows)


def test_a_gather_equals_the_sliding_window_view_and_copies_only_the_batch() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(500, 3)).astype(np.float32)
    shape = WindowShape(sequence_length=7, sampling_rate=3, sequence_stride=2, delay=5)
    starts = window_starts(500, shape)
    windows = Windows(table, starts, shape)
    view = sliding_window_view(table, (7 - 1) * 3 + 1, axis=0)[:, :, ::3].transpose(0, 2, 1)
    index = rng.permutation(len(windows))[:32]  # a shuffled batch: only start indices move
    np.testing.assert_array_equal(windows[index], view[starts[index]])
    np.testing.assert_array_equal(windows[5:9], view[starts[5:9]])
    np.testing.assert_array_equal(np.asarray(windows), view[starts])
    # what a Windows keeps: the table itself (not a copy) and one int64 start per window
    assert windows.table is table and windows.starts.nbytes == 8 * len(windows)
    assert windows.select(index[:4]).starts.tolist() == starts[index[:4]].tolist()


def test_windows_counted_back_from_the_end_take_the_newest_rows() -> None:
    # predict's windows: the last one ends on the last row, the rest every sequence_stride rows before it
    shape = WindowShape(sequence_length=3, sampling_rate=2, sequence_stride=4, delay=0)  # windows span 5 rows
    assert window_starts(40, shape).tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 32]  # Keras': ends on row 36
    assert window_starts(40, shape, to_end=True).tolist() == [3, 7, 11, 15, 19, 23, 27, 31, 35]  # ends on 39
    assert window_starts(39, shape, to_end=True).tolist() == [2, 6, 10, 14, 18, 22, 26, 30, 34]
    assert window_starts(4, shape, to_end=True).size == 0


def test_the_windows_that_read_a_nonfinite_row_are_found_without_gathering() -> None:
    table = np.arange(60, dtype=np.float32).reshape(30, 2)
    table[7, 1], table[20, 0] = np.nan, np.inf
    shape = WindowShape(sequence_length=3, sampling_rate=2, sequence_stride=2, delay=0)
    windows = Windows(table, window_starts(30, shape), shape)
    expected = ~np.isfinite(np.asarray(windows)).reshape(len(windows), -1).all(axis=1)
    assert windows.nonfinite_rows().tolist() == expected.tolist() and expected.sum() == 3  # starts 16, 18, 20
    assert not Windows(np.zeros((30, 2), np.float32), windows.starts, shape).nonfinite_rows().any()
