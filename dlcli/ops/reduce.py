"""Reductions over axes: sum, mean and max, with keepdims."""

from __future__ import annotations

import numpy as np

from dlcli.tensor import Array, Op, Tensor

Axis = int | tuple[int, ...] | None


def _expand(grad: Array, in_shape: tuple[int, ...], axis: Axis, keepdims: bool) -> Array:
    """Give a reduced gradient back the reduced axes (as size 1), ready to broadcast over the input."""
    if keepdims or axis is None:
        return grad.reshape([1] * len(in_shape)) if axis is None and not keepdims else grad
    axes = (axis,) if isinstance(axis, int) else axis
    return np.expand_dims(grad, tuple(a % len(in_shape) for a in axes))


class Sum(Op):
    """Sum over `axis` (all axes when None)."""

    def __init__(self, axis: Axis = None, keepdims: bool = False) -> None:
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a: Array) -> Array:
        self.in_shape = a.shape
        return np.asarray(a.sum(axis=self.axis, keepdims=self.keepdims))

    def backward(self, d_out: Array) -> tuple[Array]:
        d = _expand(d_out, self.in_shape, self.axis, self.keepdims)
        return (np.broadcast_to(d, self.in_shape).copy(),)


class Mean(Op):
    """Mean over `axis` (all axes when None)."""

    def __init__(self, axis: Axis = None, keepdims: bool = False) -> None:
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a: Array) -> Array:
        self.in_shape = a.shape
        if a.size:
            out = np.asarray(a.mean(axis=self.axis, keepdims=self.keepdims))
        else:  # NaN, as NumPy's, without its "Mean of empty slice" warning (np.errstate cannot silence it): an MPI
            # rank with no example of a short last batch takes a mean loss of nothing, which counts for nothing
            out = np.full(np.sum(a, axis=self.axis, keepdims=self.keepdims).shape, np.nan)
        self.count = a.size // (out.size or 1) if a.size else 1
        return out.astype(a.dtype, copy=False)

    def backward(self, d_out: Array) -> tuple[Array]:
        d = _expand(d_out, self.in_shape, self.axis, self.keepdims) / np.asarray(self.count, d_out.dtype)
        return (np.broadcast_to(d, self.in_shape).copy(),)


class Max(Op):
    """Maximum over `axis`; ties share the gradient equally, so it stays a valid subgradient."""

    def __init__(self, axis: Axis = None, keepdims: bool = False) -> None:
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a: Array) -> Array:
        self.a = a
        self.out_kept = a.max(axis=self.axis, keepdims=True)
        # the kept maxima without their reduced axes: a view, not a second pass over a
        return self.out_kept if self.keepdims else np.squeeze(self.out_kept, axis=self.axis)

    def backward(self, d_out: Array) -> tuple[Array]:
        winners = self.a == self.out_kept
        counts = winners.sum(axis=self.axis, keepdims=True)
        d = _expand(d_out, self.a.shape, self.axis, self.keepdims)
        if counts.max(initial=1) == 1:  # no ties (the rule for real data): one pass, in d's dtype
            return (np.where(winners, d, np.zeros((), d_out.dtype)),)
        return ((winners * (d / counts)).astype(d_out.dtype, copy=False),)


def sum(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001 - the op's name
    """Sum over axes."""
    return Sum.apply(a, axis=axis, keepdims=keepdims)


def mean(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Mean over axes."""
    return Mean.apply(a, axis=axis, keepdims=keepdims)


def max(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001 - the op's name
    """Maximum over axes."""
    return Max.apply(a, axis=axis, keepdims=keepdims)
