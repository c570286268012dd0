"""Max and average pooling of channels-last inputs, 2-D (N, H, W, C) and 1-D (N, steps, C), on Numba kernels.

A 1-D input is pooled as an image of height 1 (a free view), so both ranks share the 2-D kernels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dlcli.ops.conv import output_size
from dlcli.tensor import Array, Op, Tensor


def pool_output_size(size: int, pool: int, stride: int, padding: str) -> tuple[int, int]:
    """(output size, padding before) along one axis: a convolution's rule with a window of `pool` cells."""
    return output_size(size, pool, stride, 1, padding)


class _Pool(Op):
    """Window sizes, strides and padding of one pooling op, and the shapes they give."""

    def __init__(self, pool_size: tuple[int, int], strides: tuple[int, int], padding: str) -> None:
        self.pool_size, self.strides, self.padding = pool_size, strides, padding

    def _images(self, x: Array) -> tuple[Array, tuple[int, ...], tuple[int, ...]]:
        """x as contiguous images, the images' output shape, and the kernels' trailing geometry arguments."""
        self.in_shape = x.shape
        images = np.ascontiguousarray(x if x.ndim == 4 else x[:, None])  # (N, steps, C) -> (N, 1, steps, C)
        n_batch, height, width, channels = images.shape
        out_h, pad_top = pool_output_size(height, self.pool_size[0], self.strides[0], self.padding)
        out_w, pad_left = pool_output_size(width, self.pool_size[1], self.strides[1], self.padding)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"pool {self.pool_size} does not fit input {x.shape} with valid padding")
        self.geometry = (*self.pool_size, *self.strides, pad_top, pad_left)
        return images, (n_batch, out_h, out_w, channels), self.geometry

    def _shaped_like_input(self, images_out: Array) -> Array:
        """A pooled image batch back in the input's rank (1-D outputs lose the height of 1)."""
        return images_out if len(self.in_shape) == 4 else images_out[:, 0]

    def _images_grad(self, d_out: Array) -> Array:
        """The output gradient as contiguous images."""
        return np.ascontiguousarray(d_out if d_out.ndim == 4 else d_out[:, None])


class MaxPool(_Pool):
    """Maximum over each window; the argmax of every output cell is kept for the backward (kernels/pool.py)."""

    def forward(self, x: Array) -> Array:
        from dlcli.kernels import pool as kernels  # here, so `dlcli --help` and `dlcli validate` load no numba

        images, out_shape, geometry = self._images(x)
        out = np.empty(out_shape, x.dtype)
        self.argmax = np.empty(out_shape, np.int32)  # flat h * W + w within the image
        kernels.max_pool2d_forward(images, out, self.argmax, *geometry)
        return self._shaped_like_input(out)

    def backward(self, d_out: Array) -> tuple[Array]:
        from dlcli.kernels import pool as kernels

        in_shape = self.in_shape if len(self.in_shape) == 4 else (self.in_shape[0], 1, *self.in_shape[1:])
        d_x = np.empty(in_shape, d_out.dtype)  # the kernel writes every cell
        kernels.max_pool2d_backward(self._images_grad(d_out), self.argmax, d_x, *self.geometry)
        return (d_x.reshape(self.in_shape),)


class AveragePool(_Pool):
    """Mean over each window; with "same" padding, over the window's cells inside the input (as TF does)."""

    def forward(self, x: Array) -> Array:
        from dlcli.kernels import pool as kernels

        images, out_shape, geometry = self._images(x)
        out = np.empty(out_shape, x.dtype)
        kernels.average_pool2d_forward(images, out, *geometry)
        return self._shaped_like_input(out)

    def backward(self, d_out: Array) -> tuple[Array]:
        from dlcli.kernels import pool as kernels

        in_shape = self.in_shape if len(self.in_shape) == 4 else (self.in_shape[0], 1, *self.in_shape[1:])
        d_x = np.zeros(in_shape, d_out.dtype)
        kernels.average_pool2d_backward(self._images_grad(d_out), d_x, *self.geometry)
        return (d_x.reshape(self.in_shape),)


def _two(value: int | Sequence[int]) -> tuple[int, int]:
    """A (height, width) pair from one int for both or from a pair."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def max_pool2d(x: Tensor, pool_size: int | Sequence[int] = 2, strides: int | Sequence[int] | None = None,
               padding: str = "valid") -> Tensor:
    """Channels-last images (N, H, W, C): the maximum of each window; strides default to pool_size."""
    return MaxPool.apply(x, pool_size=_two(pool_size), strides=_two(pool_size if strides is None else strides),
                         padding=padding)


def max_pool1d(x: Tensor, pool_size: int = 2, strides: int | None = None, padding: str = "valid") -> Tensor:
    """Channels-last sequences (N, steps, C): the maximum of each window; strides default to pool_size."""
    return MaxPool.apply(x, pool_size=(1, pool_size), strides=(1, strides or pool_size), padding=padding)


def average_pool2d(x: Tensor, pool_size: int | Sequence[int] = 2, strides: int | Sequence[int] | None = None,
                   padding: str = "valid") -> Tensor:
    """Channels-last images (N, H, W, C): the mean of each window ("same": of its cells inside the image)."""
    return AveragePool.apply(x, pool_size=_two(pool_size),
                             strides=_two(pool_size if strides is None else strides), padding=padding)


def average_pool1d(x: Tensor, pool_size: int = 2, strides: int | None = None, padding: str = "valid") -> Tensor:
    """Channels-last sequences (N, steps, C): the mean of each window ("same": of its cells inside)."""
    return AveragePool.apply(x, pool_size=(1, pool_size), strides=(1, strides or pool_size), padding=padding)
