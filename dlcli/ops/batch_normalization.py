"""Batch normalization in training mode: batch statistics, normalization and its backward in one op."""

from __future__ import annotations

import numpy as np

from dlcli.tensor import Array, Op, Tensor


class BatchNormalization(Op):
    """gamma * (x - mean) / sqrt(variance + epsilon) + beta with the batch's mean and biased variance.

    Statistics are taken over every axis but `axis` (the channel axis, counting the batch axis); the
    biased variance (divided by the count) is what Keras and PyTorch both normalize with. Three outputs: the
    normalized x, and the mean and variance (one entry per channel) for the caller's moving averages, each
    with its own gradient. One op and two Numba kernels instead of a dozen NumPy passes; the backward is the
    closed form d_x = gamma / std * (d_y - mean(d_y) - x_hat * mean(d_y * x_hat)).
    """

    def __init__(self, axis: int = -1, epsilon: float = 1e-3) -> None:
        self.axis, self.epsilon = axis, epsilon

    def _rows(self, a: Array) -> Array:
        """a as a contiguous (rows, channels) array, the channel axis moved last when it is not already."""
        return np.ascontiguousarray(np.moveaxis(a, self.axis, -1)).reshape(-1, a.shape[self.axis])

    def _unrows(self, rows: Array) -> Array:
        """The inverse of _rows, back to the input's shape."""
        others = [n for i, n in enumerate(self.in_shape) if i != self.axis]
        return np.moveaxis(rows.reshape(*others, self.in_shape[self.axis]), -1, self.axis)

    def forward(self, x: Array, gamma: Array, beta: Array) -> tuple[Array, Array, Array]:
        from dlcli.kernels import batch_normalization as kernels  # here, so `dlcli --help` loads no numba

        self.axis, self.in_shape = self.axis % x.ndim, x.shape
        self.x, self.gamma = self._rows(x), gamma.astype(x.dtype, copy=False)
        channels = self.x.shape[1]
        out = np.empty_like(self.x)
        mean, variance, self.inv_std = (np.empty(channels, x.dtype) for _ in range(3))
        kernels.batch_norm_forward(self.x, self.gamma, beta.astype(x.dtype, copy=False), self.epsilon, out,
                                   mean, variance, self.inv_std)
        self.mean = mean
        return self._unrows(out), mean, variance

    def backward(self, d_out: Array | None, d_mean: Array | None = None,
                 d_variance: Array | None = None) -> tuple[Array | None, Array | None, Array | None]:
        from dlcli.kernels import batch_normalization as kernels

        x = self.x
        d_x = np.zeros_like(x)
        d_gamma, d_beta = np.zeros_like(self.gamma), np.zeros_like(self.gamma)
        if d_out is not None:
            d_rows = self._rows(d_out).astype(x.dtype, copy=False)
            kernels.batch_norm_backward(d_rows, x, self.gamma, self.mean, self.inv_std, d_x, d_gamma, d_beta)
        # mean = sum(x) / rows and variance = sum((x - mean)^2) / rows; the mean's own change drops out of the
        # variance's gradient, since the centred values sum to zero
        if d_mean is not None:
            d_x += (d_mean / len(x)).astype(x.dtype, copy=False)
        if d_variance is not None:
            d_x += (x - self.mean) * (2 * d_variance / len(x)).astype(x.dtype, copy=False)
        return (self._unrows(d_x) if self.needs_grad[0] else None, d_gamma if self.needs_grad[1] else None,
                d_beta if self.needs_grad[2] else None)


def batch_normalization(x: Tensor, gamma: Tensor, beta: Tensor, axis: int = -1,
                        epsilon: float = 1e-3) -> tuple[Tensor, Tensor, Tensor]:
    """Training-mode batch normalization over every axis but `axis`: (output, batch mean, biased batch variance).

    gamma and beta have one entry per channel; the statistics (one entry per channel) are for a layer's moving
    averages, and have gradients like the output.
    """
    return BatchNormalization.apply(x, gamma, beta, axis=axis, epsilon=epsilon)
