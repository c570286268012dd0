"""Convolution kernels, channels-last: im2col / col2im around one BLAS product, and the fused elementwise
passes before and after it (bias + activation forward, activation mask + bias gradient backward).

A row of `cols` is one output position (n, oh, ow); its columns are (kh, kw, c) in the order of a Keras kernel
(kh, kw, in, out) reshaped to (kh*kw*in, out). Positions that fall in the padding read as zero (im2col) or
are skipped (col2im). The innermost loop runs over channels, which are contiguous in channels-last arrays.
Images are independent, so the outer loop is parallel over them (prange): no two threads touch one row
of cols or one image of dx.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, error_model="numpy", parallel=True)
def im2col(x: np.ndarray, cols: np.ndarray, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
           dilation_h: int, dilation_w: int, pad_top: int, pad_left: int, out_h: int, out_w: int) -> None:
    """Fill cols (N*out_h*out_w, kernel_h*kernel_w*C) with the patches of x (N, H, W, C)."""
    n_images, height, width, channels = x.shape
    for n in numba.prange(n_images):
        row = n * out_h * out_w
        for oh in range(out_h):
            for ow in range(out_w):
                col = 0
                for kh in range(kernel_h):
                    ih = oh * stride_h + kh * dilation_h - pad_top
                    for kw in range(kernel_w):
                        iw = ow * stride_w + kw * dilation_w - pad_left
                        if 0 <= ih < height and 0 <= iw < width:
                            for c in range(channels):
                                cols[row, col + c] = x[n, ih, iw, c]
                        else:
                            for c in range(channels):
                                cols[row, col + c] = 0.0
                        col += channels
                row += 1


@numba.njit(cache=True, error_model="numpy", parallel=True)
def col2im(cols: np.ndarray, dx: np.ndarray, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
           dilation_h: int, dilation_w: int, pad_top: int, pad_left: int, out_h: int, out_w: int) -> None:
    """Set dx (N, H, W, C) to the sum of each row of cols over the input positions it was copied from."""
    n_images, height, width, channels = dx.shape
    for n in numba.prange(n_images):
        dx[n] = 0.0
        row = n * out_h * out_w
        for oh in range(out_h):
            for ow in range(out_w):
                col = 0
                for kh in range(kernel_h):
                    ih = oh * stride_h + kh * dilation_h - pad_top
                    for kw in range(kernel_w):
                        iw = ow * stride_w + kw * dilation_w - pad_left
                        if 0 <= ih < height and 0 <= iw < width:
                            for c in range(channels):
                                dx[n, ih, iw, c] += cols[row, col + c]
                        col += channels
                row += 1


# activation codes shared by the fused kernels (strings do not vectorize)
LINEAR, RELU, TANH = 0, 1, 2


@numba.njit(cache=True, error_model="numpy", parallel=True)
def bias_activation(out: np.ndarray, bias: np.ndarray, activation: int) -> None:
    """out (rows, F) += bias, then the activation, in one pass, in place."""
    rows, features = out.shape
    for r in numba.prange(rows):
        for f in range(features):
            v = out[r, f] + bias[f]
            if activation == RELU:
                v = max(v, np.float32(0.0))
            elif activation == TANH:
                v = np.tanh(v)
            out[r, f] = v


@numba.njit(cache=True, error_model="numpy")
def activation_grad_and_bias_sum(d_out: np.ndarray, out: np.ndarray, d: np.ndarray, d_bias: np.ndarray,
                                 activation: int) -> None:
    """d = d_out * activation'(from out) and d_bias = column sums of d, in one pass over (rows, F)."""
    rows, features = d_out.shape
    d_bias[:] = 0.0
    for r in range(rows):
        for f in range(features):
            g = d_out[r, f]
            if activation == RELU:
                if out[r, f] <= 0.0:
                    g = np.float32(0.0)
            elif activation == TANH:
                g = g * (np.float32(1.0) - out[r, f] * out[r, f])
            d[r, f] = g
            d_bias[f] += g
