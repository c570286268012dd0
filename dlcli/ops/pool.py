"""Max and average pooling of channels-last inputs, 2-D (N, H, W, C) and 1-D (N, steps, C), on Numba kernels.

A 1-D input is pooled as an image of height 1 (a free view), so both ranks share the 2-D kernels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dlcli import activations
from dlcli.activations import Activation
from dlcli.ops.conv import Conv2D, ConvGeometry, conv2d, output_size, winograd_tile
from dlcli.tensor import Array, Op, Tensor, is_grad_enabled


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
        return images, self._pooled_shape(images.shape), self.geometry

    def _pooled_shape(self, images_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """The output shape of pooling images of this shape (N, H, W, C); sets self.geometry, the kernels'
        trailing arguments (pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)."""
        n_batch, height, width, channels = images_shape
        out_h, pad_top = pool_output_size(height, self.pool_size[0], self.strides[0], self.padding)
        out_w, pad_left = pool_output_size(width, self.pool_size[1], self.strides[1], self.padding)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"pool {self.pool_size} does not fit input {images_shape} with valid padding")
        self.geometry = (*self.pool_size, *self.strides, pad_top, pad_left)
        return n_batch, out_h, out_w, channels

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


class ConvMaxPool(MaxPool):
    """max_pool2d of a 1-channel Conv2D's output, differentiated straight to the conv's kernel and bias.

    Its inputs are the conv's (image, kernel, bias), not the conv's output: the backward runs
    kernels/conv_one_channel.backward_images from the pooled gradient and the argmax, so no gradient of
    the conv output's size is written or read, and the conv's own backward runs only if something else takes its
    output (then both add into the kernel's and bias's gradients, as the chain rule does). Chosen by max_pool2d
    when its input is the output of such a conv: one input channel, the image needing no gradient (the conv's
    direct backward, first layers) and windows of at most 2 x 2 (`fuses`). Made by conv2d_max_pool2d without a
    conv (the conv's output read by this pool alone), its forward is fused too: conv_one_channel.forward_pooled
    computes the conv at each window's corners and writes only the pooled output and the argmax
    (`fuses_forward`).
    """

    def __init__(self, pool_size: tuple[int, int], strides: tuple[int, int], padding: str,
                 conv: Conv2D | None = None, conv_geometry: ConvGeometry | None = None, code: int = 0) -> None:
        super().__init__(pool_size, strides, padding)
        if conv is None:  # the forward fused too
            self.conv_geometry, self.code, self.conv_out = conv_geometry, code, None
        else:
            self.conv_geometry, self.code, self.direct = conv.geometry, conv.code, conv.direct
            self.conv_out = conv.out.reshape(conv.x_shape[0], conv.geometry.out_h, conv.geometry.out_w, -1)

    @staticmethod
    def fuses(x: Tensor, pool_size: tuple[int, int]) -> bool:
        """Whether max_pool2d of x can run as a ConvMaxPool."""
        conv = x.op
        return (type(conv) is Conv2D and x.requires_grad and getattr(conv, "direct", None) is not None
                and pool_size[0] <= 2 and pool_size[1] <= 2)

    @staticmethod
    def fuses_forward(x: Tensor, kernel: Tensor, g: ConvGeometry, algorithm: str, pool_size: tuple[int, int]) -> bool:
        """Whether max_pool2d(conv2d(x, kernel, ...)) can run as one ConvMaxPool, forward included: a 3x3 kernel
        over 1 channel that the algorithm computes by im2col here (auto does; a Winograd tile asked for runs as
        asked), an image needing no gradient, windows of at most 2 x 2."""
        return (kernel.shape[:3] == (3, 3, 1) and not (x.requires_grad and is_grad_enabled())
                and winograd_tile(algorithm, g, 1) is None and pool_size[0] <= 2 and pool_size[1] <= 2)

    def forward(self, x: Array, kernel: Array, bias: Array) -> Array:
        if self.conv_out is None:
            return self._fused_forward(x, kernel, bias)
        self.pooled = super().forward(self.conv_out)  # the output itself, kept: the activation's gradient reads it
        del self.conv_out
        return self.pooled

    def _fused_forward(self, x: Array, kernel: Array, bias: Array) -> Array:
        """The pooled output and argmax straight from the image, in one pass (the conv's output never exists)."""
        from dlcli.kernels import conv as conv_kernels
        from dlcli.kernels import conv_one_channel

        g = self.conv_geometry
        padded = conv_kernels.padded(np.ascontiguousarray(x), *g.args())
        self.direct = padded.reshape(padded.shape[:3])  # what the backward reads, as Conv2D's direct path keeps
        out_shape = self._pooled_shape((x.shape[0], g.out_h, g.out_w, kernel.shape[3]))
        out, self.argmax = np.empty(out_shape, x.dtype), np.empty(out_shape, np.int32)
        conv_one_channel.forward_pooled(self.direct, np.ascontiguousarray(kernel, x.dtype),
                                        bias.astype(x.dtype, copy=False), self.code, *g.args()[2:6],
                                        self.geometry, g.out_h, g.out_w, out, self.argmax)
        if self.code == conv_kernels.TANH:  # monotone: tanh of the pooled linear values (the kernel's docstring)
            np.tanh(out, out=out)
        self.pooled = out
        return out

    def backward(self, d_out: Array) -> tuple[None, Array | None, Array | None]:
        from dlcli.kernels import conv_one_channel

        g = self.conv_geometry
        d_kernel, d_bias = conv_one_channel.weight_gradients(
            self.direct, np.ascontiguousarray(d_out), self.pooled, self.argmax, self.code, *g.args()[:6],
            self.geometry, g.out_h, g.out_w)
        return None, d_kernel if self.needs_grad[1] else None, d_bias if self.needs_grad[2] else None


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
    """Channels-last images (N, H, W, C): the maximum of each window; strides default to pool_size. After a
    1-channel first conv2d, a ConvMaxPool: the same output, a backward straight to the conv's weights."""
    pool, strides = _two(pool_size), _two(pool_size if strides is None else strides)
    if ConvMaxPool.fuses(x, pool):
        conv = x.op
        out = ConvMaxPool.apply(*conv.inputs, conv=conv, pool_size=pool, strides=strides, padding=padding)
        out.op.node = conv.node  # profiled: its backward is the conv's weight gradient, so the conv's row has it
        return out
    return MaxPool.apply(x, pool_size=pool, strides=strides, padding=padding)


def conv2d_max_pool2d(x: Tensor, kernel: Tensor, bias: Tensor, geometry: ConvGeometry,
                      activation: str | type[Activation] = "linear", algorithm: str = "auto",
                      pool_size: int | Sequence[int] = 2, strides: int | Sequence[int] | None = None,
                      padding: str = "valid") -> Tensor:
    """max_pool2d(conv2d(x, kernel, bias, geometry, activation, algorithm), pool_size, strides, padding), for a
    conv whose output nothing else reads. A 3x3 conv over 1-channel images that need no gradient (a first
    layer), pooled by windows of at most 2 x 2, runs as one op whose forward writes only the pooled output
    (ConvMaxPool.fuses_forward); anything else as the two ops. activation: one conv2d computes (linear, relu,
    tanh: all monotone non-decreasing, so pooling commutes with them)."""
    pool, strides = _two(pool_size), _two(pool_size if strides is None else strides)
    row = activations.get(activation) if isinstance(activation, str) else activation
    if not (activations.fusable(row) and ConvMaxPool.fuses_forward(x, kernel, geometry, algorithm, pool)):
        return max_pool2d(conv2d(x, kernel, bias, geometry, activation, algorithm), pool, strides, padding)
    return ConvMaxPool.apply(x, kernel, bias, pool_size=pool, strides=strides, padding=padding,
                             conv_geometry=geometry, code=row.code)


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
