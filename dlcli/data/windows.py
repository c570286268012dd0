"""Windows over the rows of a time-ordered table, as Keras' timeseries_dataset_from_array makes them, kept as
start indices into the table: memory stays O(rows x features) whatever the number of windows, and a batch of
windows is one gather.

Window i takes rows starts[i] + k * sampling_rate for k < sequence_length; its target is the row `delay` rows
after the window's last row (delay = 0: the last row itself). Keras counts the same windows; dlcli's `delay` is
what the book's `targets=temperature[delay:]` offset becomes once the window's own span is taken off it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowShape:
    """How windows are cut: Keras' sequence_length, sampling_rate, sequence_stride, and the target's delay."""

    sequence_length: int
    sampling_rate: int = 1
    sequence_stride: int = 1
    delay: int = 1

    @property
    def span(self) -> int:
        """Rows from a window's first row to its target row, both counted."""
        return (self.sequence_length - 1) * self.sampling_rate + self.delay + 1


def window_starts(rows: int, shape: WindowShape, to_end: bool = False) -> np.ndarray:
    """The first row of every window whose rows and target lie in a range of `rows` rows (relative to its
    start), every sequence_stride rows: Keras' start positions, from row 0. `to_end`: counted back from the
    window that ends on the range's last row instead (predict's: the newest rows are never the ones a stride
    leaves out; the first `(rows - span) % sequence_stride` rows are)."""
    count = rows - shape.span + 1
    first = (count - 1) % shape.sequence_stride if to_end and count > 0 else 0
    return np.arange(first, max(count, 0), shape.sequence_stride, dtype=np.int64)


def target_rows(starts: np.ndarray, shape: WindowShape) -> np.ndarray:
    """Each window's target row."""
    return starts + shape.span - 1


class Windows:
    """A lazy array of windows over `table` (rows, features): shape (windows, sequence_length, features).

    Indexing with an integer array, a slice or an integer gathers those windows into a new NumPy array; nothing
    else is ever copied, so shuffling an epoch only shuffles start indices.
    """

    def __init__(self, table: np.ndarray, starts: np.ndarray, shape: WindowShape) -> None:
        self.table, self.starts, self.window = table, np.asarray(starts, np.int64), shape
        self.offsets = np.arange(shape.sequence_length, dtype=np.int64) * shape.sampling_rate

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def shape(self) -> tuple[int, ...]:
        """(windows, sequence_length, features): the array this stands for."""
        return (len(self.starts), self.window.sequence_length, *self.table.shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.table.dtype

    @property
    def rows(self) -> np.ndarray:
        """The table's rows that some window reads, in order (what statistics of the inputs are taken over)."""
        first, last = int(self.starts.min(initial=0)), int(self.starts.max(initial=-1)) + int(self.offsets[-1])
        return self.table[first:last + 1]

    def nonfinite_rows(self) -> np.ndarray:
        """Which windows read a row holding NaN or infinity (for predict to refuse or mark), without gathering
        them: the starts of the windows that read each such row, looked up among the windows' starts."""
        with np.errstate(invalid="ignore", over="ignore"):
            if np.isfinite(self.table.sum()):
                return np.zeros(len(self.starts), bool)
        flat = self.table.reshape(len(self.table), -1)
        bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
        return np.isin(self.starts, (bad[:, None] - self.offsets).ravel())

    def __getitem__(self, index: np.ndarray | slice | int) -> np.ndarray:
        """The windows at `index`, gathered: (len(index), sequence_length, features)."""
        return self.table[self.starts[index][..., None] + self.offsets]

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        """Every window as one array: O(windows x sequence_length) memory, for small tables and tests only."""
        windows = self[np.arange(len(self))]
        return windows if dtype is None else windows.astype(dtype)

    def select(self, index: np.ndarray) -> Windows:
        """The windows at `index`, still lazy: a lazy array's optional `select`, so a part held out of the
        windows is never gathered."""
        return Windows(self.table, self.starts[index], self.window)
