"""Batch normalization in training mode: batch statistics, normalization and its backward in one op."""

from __future__ import annotations

import numpy as np

from dlcli.tensor import Array, Op


class BatchNormalization(Op):
    """gamma * (x - mean) / sqrt(variance + epsilon) + beta with the batch's mean and biased variance.

    Statistics are taken over every axis but `axis` (the channel axis, counting the batch axis); the
    biased variance (divided by the count) is what Keras and PyTorch both normalize with. They are put in
    `moments` (mean, variance: one entry per channel) for the caller's moving averages, because Op.apply
    hands back only the output. One op and two Numba kernels instead of a dozen NumPy passes; the backward
    is the closed form d_x = gamma / std * (d_y - mean(d_y) - x_hat * mean(d_y * x_hat)).
    """

    def __init__(self, axis: int = -1, epsilon: float = 1e-3, moments: list[Array] | None = None) -> None:
        self.axis, self.epsilon, self.moments = axis, epsilon, moments

    def _rows(self, a: Array) -> Array:
        """a as a contiguous (rows, channels) array, the channel axis moved last when it is not already."""
        return np.ascontiguousarray(np.moveaxis(a, self.axis, -1)).reshape(-1, a.shape[self.axis])

    def _unrows(self, rows: Array) -> Array:
        """The inverse of _rows, back to the input's shape."""
        others = [n for i, n in enumerate(self.in_shape) if i != self.axis]
        return np.moveaxis(rows.reshape(*others, self.in_shape[self.axis]), -1, self.axis)

    def forward(self, x: Array, gamma: Array, beta: Array) -> Array:
        from dlcli.kernels import normalization as kernels  # here, so `dlcli --help` loads no numba

        self.axis, self.in_shape = self.axis % x.ndim, x.shape
        self.x, self.gamma = self._rows(x), gamma.astype(x.dtype, copy=False)
        channels = self.x.shape[1]
        out = np.empty_like(self.x)
        mean, variance, self.inv_std = (np.empty(channels, x.dtype) for _ in range(3))
        kernels.batch_norm_forward(self.x, self.gamma, beta.astype(x.dtype, copy=False), self.epsilon, out,
                                   mean, variance, self.inv_std)
        self.mean = mean
        if self.moments is not None:
            self.moments[:] = [mean, variance]
        return self._unrows(out)

    def backward(self, d_out: Array) -> tuple[Array | None, Array | None, Array | None]:
        from dlcli.kernels import normalization as kernels

        d_rows = self._rows(d_out).astype(self.x.dtype, copy=False)
        d_x = np.empty_like(self.x)
        d_gamma, d_beta = np.empty_like(self.gamma), np.empty_like(self.gamma)
        kernels.batch_norm_backward(d_rows, self.x, self.gamma, self.mean, self.inv_std, d_x, d_gamma, d_beta)
        return (self._unrows(d_x) if self.needs_grad[0] else None, d_gamma if self.needs_grad[1] else None,
                d_beta if self.needs_grad[2] else None)
