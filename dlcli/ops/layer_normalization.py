"""Layer normalization: each example normalized over its own features, the forward and backward fused."""

from __future__ import annotations

import numpy as np

from dlcli.tensor import Array, Op, Tensor


class LayerNormalization(Op):
    """gamma * (x - mean) / sqrt(variance + epsilon) + beta, mean and biased variance over `axes` of each example.

    The normalized axes are moved last and flattened, so the kernels see (rows, features) with one row per
    normalized group; gamma and beta have the normalized axes' shape (Keras'), flattened the same way. Two
    Numba kernels (dlcli/kernels/layer_normalization.py) instead of a dozen NumPy passes; the backward is the
    closed form d_x = inv_std * (g - mean(g) - x_hat * mean(g * x_hat)) with g = d_out * gamma.
    """

    def __init__(self, axes: tuple[int, ...] = (-1,), epsilon: float = 1e-3) -> None:
        self.axes, self.epsilon = axes, epsilon

    def _rows(self, a: Array) -> Array:
        """a with the normalized axes last, as a contiguous (rows, features) array."""
        if self.order is not None:
            a = a.transpose(self.order)
        return np.ascontiguousarray(a).reshape(-1, self.features)

    def _unrows(self, rows: Array) -> Array:
        """The inverse of _rows, back to the input's shape."""
        moved = rows.reshape(self.moved_shape)
        return moved if self.order is None else moved.transpose(np.argsort(self.order))

    def forward(self, x: Array, gamma: Array, beta: Array) -> Array:
        from dlcli.kernels import layer_normalization as kernels  # here, so `dlcli --help` loads no numba

        axes = sorted(a % x.ndim for a in self.axes)
        order = [a for a in range(x.ndim) if a not in axes] + axes
        self.order = None if order == list(range(x.ndim)) else order
        self.moved_shape = tuple(x.shape[a] for a in order)
        self.features = int(np.prod([x.shape[a] for a in axes]))
        self.x = self._rows(x)
        self.gamma = np.ascontiguousarray(gamma, x.dtype).reshape(-1)
        out = np.empty_like(self.x)
        rows = len(self.x)
        self.mean, self.inv_std = np.empty(rows, x.dtype), np.empty(rows, x.dtype)
        kernels.layer_norm_forward(self.x, self.gamma, np.ascontiguousarray(beta, x.dtype).reshape(-1),
                                   self.epsilon, out, self.mean, self.inv_std)
        self.param_shape = gamma.shape
        return self._unrows(out)

    def backward(self, d_out: Array) -> tuple[Array | None, Array | None, Array | None]:
        from dlcli.kernels import layer_normalization as kernels

        x = self.x
        d_rows = self._rows(d_out).astype(x.dtype, copy=False)
        d_x = np.empty_like(x)
        d_gamma, d_beta = kernels.layer_norm_backward(d_rows, x, self.gamma, self.mean, self.inv_std, d_x)
        return (self._unrows(d_x) if self.needs_grad[0] else None,
                d_gamma.reshape(self.param_shape) if self.needs_grad[1] else None,
                d_beta.reshape(self.param_shape) if self.needs_grad[2] else None)


def layer_normalization(x: Tensor, gamma: Tensor, beta: Tensor, axes: tuple[int, ...] = (-1,),
                        epsilon: float = 1e-3) -> Tensor:
    """Layer normalization of x over `axes` (batch axis counted): gamma and beta have those axes' shape."""
    return LayerNormalization.apply(x, gamma, beta, axes=tuple(axes), epsilon=epsilon)
