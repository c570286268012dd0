"""Image size changes, channels-last: up-sampling (nearest, bilinear) and zero padding of height and width."""

from __future__ import annotations

import numpy as np

from dlcli.tensor import Array, Op, Tensor


class UpSampleNearest(Op):
    """Each pixel repeated size_h times down and size_w times across; the gradient sums each block back."""

    def __init__(self, size_h: int, size_w: int) -> None:
        self.size_h, self.size_w = size_h, size_w

    def forward(self, x: Array) -> Array:
        self.x_shape = x.shape
        return np.repeat(np.repeat(x, self.size_h, axis=1), self.size_w, axis=2)

    def backward(self, d_out: Array) -> tuple[Array]:
        n, h, w, c = self.x_shape
        return (d_out.reshape(n, h, self.size_h, w, self.size_w, c).sum(axis=(2, 4)),)


def interpolation_matrix(size: int, scale: int) -> Array:
    """(size * scale, size) weights of linear interpolation with half-pixel centres, clamped at the edges.

    Output pixel o samples the input at (o + 0.5) / scale - 0.5, as Keras 3's bilinear resize does
    (PyTorch's interpolate with align_corners=False, no antialiasing).
    """
    out = size * scale
    source = np.clip((np.arange(out) + 0.5) / scale - 0.5, 0, size - 1)
    low = np.floor(source).astype(np.intp)
    high = np.minimum(low + 1, size - 1)
    weight = source - low
    matrix = np.zeros((out, size))
    np.add.at(matrix, (np.arange(out), low), 1 - weight)
    np.add.at(matrix, (np.arange(out), high), weight)
    return matrix


class UpSampleBilinear(Op):
    """Bilinear up-sampling as two matrix products, along the height and then along the width.

    Interpolation is linear in x, separately along each axis: out = A_h x A_w^T per channel, with A the
    (out, in) interpolation matrices; the backward is the same products with the matrices transposed.
    """

    def __init__(self, size_h: int, size_w: int) -> None:
        self.size_h, self.size_w = size_h, size_w

    def forward(self, x: Array) -> Array:
        n, h, w, c = self.x_shape = x.shape
        self.rows = interpolation_matrix(h, self.size_h).astype(x.dtype)
        self.columns = interpolation_matrix(w, self.size_w).astype(x.dtype)
        tall = self.rows @ x.reshape(n, h, w * c)  # (n, out_h, w * c)
        return (self.columns @ tall.reshape(n * h * self.size_h, w, c)).reshape(n, h * self.size_h, -1, c)

    def backward(self, d_out: Array) -> tuple[Array]:
        n, h, w, c = self.x_shape
        d_tall = self.columns.T @ d_out.reshape(n * h * self.size_h, -1, c)  # (n * out_h, w, c)
        return ((self.rows.T @ d_tall.reshape(n, h * self.size_h, w * c)).reshape(n, h, w, c),)


class ZeroPad2D(Op):
    """Zeros added around each image: (top, bottom) rows and (left, right) columns."""

    def __init__(self, rows: tuple[int, int], columns: tuple[int, int]) -> None:
        self.rows, self.columns = rows, columns

    def forward(self, x: Array) -> Array:
        self.x_shape = x.shape
        return np.pad(x, ((0, 0), self.rows, self.columns, (0, 0)))

    def backward(self, d_out: Array) -> tuple[Array]:
        _, h, w, _ = self.x_shape
        return (d_out[:, self.rows[0]:self.rows[0] + h, self.columns[0]:self.columns[0] + w],)


def up_sample2d(x: Tensor, size: tuple[int, int], interpolation: str = "nearest") -> Tensor:
    """x (N, H, W, C) enlarged to (N, H * size[0], W * size[1], C), "nearest" or "bilinear" (Keras' rules)."""
    op = UpSampleBilinear if interpolation == "bilinear" else UpSampleNearest
    return op.apply(x, size_h=size[0], size_w=size[1])


def zero_pad2d(x: Tensor, rows: tuple[int, int], columns: tuple[int, int]) -> Tensor:
    """x (N, H, W, C) with (top, bottom) rows and (left, right) columns of zeros added."""
    return ZeroPad2D.apply(x, rows=tuple(rows), columns=tuple(columns))
