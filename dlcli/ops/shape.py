"""Shape ops: reshape, transpose, concatenate, slicing, gathers and row lookups."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from dlcli.tensor import Array, Op, SparseRows, Tensor


class Reshape(Op):
    """The same values in a new shape (one axis may be -1)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, a: Array) -> Array:
        self.in_shape = a.shape
        return a.reshape(self.shape)

    def backward(self, d_out: Array) -> tuple[Array]:
        return (d_out.reshape(self.in_shape),)


class Transpose(Op):
    """Axes permuted (reversed when `axes` is None)."""

    def __init__(self, axes: tuple[int, ...] | None = None) -> None:
        self.axes = axes

    def forward(self, a: Array) -> Array:
        return np.transpose(a, self.axes)

    def backward(self, d_out: Array) -> tuple[Array]:
        inverse = None if self.axes is None else tuple(np.argsort(self.axes))
        return (np.transpose(d_out, inverse),)


class Concatenate(Op):
    """Several tensors joined along one axis."""

    def __init__(self, axis: int = -1) -> None:
        self.axis = axis

    def forward(self, *arrays: Array) -> Array:
        self.bounds = np.cumsum([a.shape[self.axis] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=self.axis)

    def backward(self, d_out: Array) -> tuple[Array, ...]:
        return tuple(np.split(d_out, self.bounds, axis=self.axis))


class GetItem(Op):
    """a[index] for any NumPy index: slices, integers, integer or boolean arrays.

    Basic indexes write the gradient back into a zero array; fancy indexes may repeat positions, so
    their gradient is scatter-added with np.add.at, where every repeat counts.
    """

    def __init__(self, index: Any) -> None:
        self.index = index

    def forward(self, a: Array) -> Array:
        self.in_shape, self.dtype = a.shape, a.dtype
        return a[self.index]

    def backward(self, d_out: Array) -> tuple[Array]:
        d_a = np.zeros(self.in_shape, self.dtype)
        if _is_basic(self.index):
            d_a[self.index] = d_out
        else:
            np.add.at(d_a, self.index, d_out)
        return (d_a,)


def _is_basic(index: Any) -> bool:
    """Whether `index` selects without repeats (ints, slices, None, Ellipsis), so assignment is exact."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice)) or p is None or p is Ellipsis for p in parts)


class Gather(Op):
    """Entries of a taken along `axis` at integer `indices` (np.take); repeated indices add up."""

    def __init__(self, axis: int = 0) -> None:
        self.axis = axis

    def forward(self, a: Array, indices: Array) -> Array:
        self.in_shape, self.indices = a.shape, indices.astype(np.intp, copy=False)
        return np.take(a, self.indices, axis=self.axis)

    def backward(self, d_out: Array) -> tuple[Array, None]:
        axis = self.axis % len(self.in_shape)
        d_moved = np.zeros((self.in_shape[axis], *np.delete(self.in_shape, axis)), d_out.dtype)
        # bring the gathered axis (with the index axes where it was) to the front, then scatter-add rows
        lead = d_out.ndim - len(self.in_shape) + 1
        d_front = np.moveaxis(d_out, tuple(range(axis, axis + lead)), tuple(range(lead)))
        np.add.at(d_moved, self.indices.reshape(-1), d_front.reshape(-1, *d_moved.shape[1:]))
        return np.moveaxis(d_moved, 0, axis), None


class TakeRows(Op):
    """table[ids]: rows of a table picked by integer ids of any shape (an embedding lookup).

    The table's gradient is SparseRows: the distinct ids, sorted, each with the sum of its rows of d_out
    (an id that repeats adds up). Optimizers then update only those rows.
    """

    def forward(self, table: Array, ids: Array) -> Array:
        self.ids, self.table_shape = ids.reshape(-1), table.shape
        return table[ids]

    def backward(self, d_out: Array) -> tuple[SparseRows, None]:
        return SparseRows.from_rows(self.ids, d_out, self.table_shape), None  # integer ids have no gradient


def reshape(a: Tensor, shape: Sequence[int]) -> Tensor:
    """The same values in a new shape."""
    return Reshape.apply(a, shape=tuple(shape))


def transpose(a: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    """Axes permuted (reversed by default)."""
    return Transpose.apply(a, axes=None if axes is None else tuple(axes))


def concatenate(tensors: Sequence[Tensor], axis: int = -1) -> Tensor:
    """Tensors joined along an axis."""
    return Concatenate.apply(*tensors, axis=axis)


def getitem(a: Tensor, index: Any) -> Tensor:
    """a[index]: slices, integers, integer or boolean arrays."""
    if isinstance(index, Tensor):
        index = index.data
    return GetItem.apply(a, index=index)


def split(a: Tensor, sections: int | Sequence[int], axis: int = -1) -> list[Tensor]:
    """a cut along `axis` into equal parts (an int) or at the given indices, as np.split does."""
    size = a.shape[axis]
    if isinstance(sections, int):
        if size % sections:
            raise ValueError(f"axis of size {size} does not split into {sections} equal parts")
        bounds = list(range(0, size + 1, size // sections))
    else:
        bounds = [0, *sections, size]
    axis = axis % a.ndim
    lead = (slice(None),) * axis
    return [getitem(a, (*lead, slice(lo, hi))) for lo, hi in zip(bounds[:-1], bounds[1:])]


def gather(a: Tensor, indices: np.ndarray, axis: int = 0) -> Tensor:
    """np.take(a, indices, axis): rows (or entries along `axis`) picked by integer indices."""
    return Gather.apply(a, Tensor(np.asarray(indices)), axis=axis)


def take_rows(table: Tensor, ids: np.ndarray | Tensor) -> Tensor:
    """table[ids]: rows of a 2-D table at integer ids of any shape; the table's gradient is SparseRows."""
    return TakeRows.apply(table, ids if isinstance(ids, Tensor) else Tensor(np.asarray(ids)))
