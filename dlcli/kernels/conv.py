"""Convolution kernels, channels-last: im2col / col2im around one BLAS product, and the fused elementwise
passes before and after it (bias + activation forward, activation mask + bias gradient backward).

A row of `cols` is one output position (n, oh, ow); its columns are (kh, kw, c) in the order of a Keras kernel
(kh, kw, in, out) reshaped to (kh*kw*in, out). Positions that fall in the padding read as zero (im2col) or
are skipped (col2im). The innermost loop runs over channels, which are contiguous in channels-last arrays.
Images are independent, so each kernel runs over a range of them (nogil) and in_parts gives each thread its
own range: no two threads touch one row of cols or one image of dx (col2im gathers, so it reads the rows
of its own images only). Not prange: a parfor took 0.5-0.9 s more
to compile per kernel (kernels/parts.py); im2col is a NumPy copy, with nothing to compile.
"""

from __future__ import annotations

import numba
import numpy as np

from dlcli.kernels.parts import in_parts


def _patches(x: np.ndarray, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int, dilation_h: int,
             dilation_w: int, out_h: int, out_w: int) -> np.ndarray:
    """A read-only strided view (N, out_h, out_w, kernel_h, kernel_w, C) of x: every patch, nothing copied."""
    s = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (x.shape[0], out_h, out_w, kernel_h, kernel_w, x.shape[3]),
        (s[0], s[1] * stride_h, s[2] * stride_w, s[1] * dilation_h, s[2] * dilation_w, s[3]), writeable=False)


def im2col(x: np.ndarray, cols: np.ndarray, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
           dilation_h: int, dilation_w: int, pad_top: int, pad_left: int, out_h: int, out_w: int) -> None:
    """Fill cols (N*out_h*out_w, kernel_h*kernel_w*C) with the patches of x (N, H, W, C).

    One NumPy copy from a strided view of the patches, split over threads by images (the copy releases the
    GIL): nothing to compile, and as fast as the parallel Numba loop it replaced from 32 channels up, 1.8x
    faster at 32 (measured here; 1.4x slower on a 1-channel first layer). A padded convolution copies x into a
    zeroed padded image first.
    """
    n = x.shape[0]
    x = padded(x, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_h, out_w)
    patches = _patches(x, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, out_h, out_w)
    target = cols.reshape(patches.shape)

    def copy(lo: int, hi: int) -> None:
        np.copyto(target[lo:hi], patches[lo:hi])

    in_parts(copy, n, min_rows=8)


def padded(x: np.ndarray, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int, dilation_h: int,
            dilation_w: int, pad_top: int, pad_left: int, out_h: int, out_w: int) -> np.ndarray:
    """x, or a zeroed copy padded so that every window lies inside it (pad_top, pad_left before, the rest after)."""
    n, height, width, channels = x.shape
    pad_h = max((out_h - 1) * stride_h + (kernel_h - 1) * dilation_h + 1 - height - pad_top, 0)
    pad_w = max((out_w - 1) * stride_w + (kernel_w - 1) * dilation_w + 1 - width - pad_left, 0)
    if not (pad_top or pad_left or pad_h or pad_w):
        return x
    padded = np.zeros((n, pad_top + height + pad_h, pad_left + width + pad_w, channels), x.dtype)
    padded[:, pad_top:pad_top + height, pad_left:pad_left + width] = x
    return padded


def im2col_by_tap(x: np.ndarray, cols_t: np.ndarray, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
                  dilation_h: int, dilation_w: int, pad_top: int, pad_left: int, out_h: int, out_w: int) -> None:
    """im2col of a 1-channel x (N, H, W, 1) transposed: cols_t (kernel_h*kernel_w, N*out_h*out_w), so that
    cols_t.T is im2col's matrix. One block copy per kernel tap, whose rows are out_w numbers long, instead of
    a 9-number row per output position: 0.08 ms against 0.3 for the MNIST convnet's first layer (batch 64,
    measured here); the products take cols_t.T as it is (BLAS reads a transposed operand)."""
    x = padded(x, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_h, out_w)
    target = cols_t.reshape(kernel_h * kernel_w, x.shape[0], out_h, out_w)
    for kh in range(kernel_h):
        top = kh * dilation_h
        for kw in range(kernel_w):
            left = kw * dilation_w
            target[kh * kernel_w + kw] = x[:, top:top + (out_h - 1) * stride_h + 1:stride_h,
                                           left:left + (out_w - 1) * stride_w + 1:stride_w, 0]


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def col2im_images(cols: np.ndarray, dx: np.ndarray, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
                  dilation_h: int, dilation_w: int, pad_top: int, pad_left: int, out_h: int, out_w: int, lo: int,
                  hi: int) -> None:
    """col2im for the images [lo, hi), as a gather: each input pixel sums the columns of the output positions
    whose window covers it while its row of dx is in L1. The scatter-add it replaced (zero dx, then add every
    column into the pixels it covers) took 0.85 ms against 0.61 on the convnet's 13x13x32 layer and 0.13
    against 0.08 on its 5x5x64 one (batch 64, 2 threads, one locked run); under heavy load 3.7-4.0 against
    1.5-2.8, and 2.2 against 1.7 right after the GEMM that makes the columns, as in a backward pass. A local
    row for the sums ran 5% faster alone, no faster after the GEMM, and its allocation cost compiling time."""
    height, width, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    for n in range(lo, hi):
        first_row = n * out_h * out_w
        for ih in range(height):
            for iw in range(width):
                for c in range(channels):
                    dx[n, ih, iw, c] = 0.0
            for kh in range(kernel_h):
                # the output row whose window covers ih by tap kh; no division at stride 1 (an integer division
                # per pixel and tap is slow, and a runtime divisor cannot be strength-reduced)
                oh = ih + pad_top - kh * dilation_h
                if stride_h != 1:
                    if oh % stride_h != 0:
                        continue
                    oh //= stride_h
                if oh < 0 or oh >= out_h:
                    continue
                for iw in range(width):
                    for kw in range(kernel_w):
                        ow = iw + pad_left - kw * dilation_w
                        if stride_w != 1:
                            if ow % stride_w != 0:
                                continue
                            ow //= stride_w
                        if ow < 0 or ow >= out_w:
                            continue
                        row = first_row + oh * out_w + ow
                        col = (kh * kernel_w + kw) * channels
                        for c in range(channels):
                            dx[n, ih, iw, c] += cols[row, col + c]


def col2im(cols: np.ndarray, dx: np.ndarray, *geometry: int) -> None:
    """Set dx (N, H, W, C) to the sum of each row of cols over the input positions it was copied from."""
    in_parts(col2im_images, dx.shape[0], cols, dx, *geometry)


# activation codes shared by the fused kernels (strings do not vectorize)
LINEAR, RELU, TANH = 0, 1, 2


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def bias_activation_rows(out: np.ndarray, bias: np.ndarray, activation: int, lo: int, hi: int) -> None:
    """bias_activation for the rows [lo, hi)."""
    features = out.shape[1]
    for r in range(lo, hi):
        for f in range(features):
            v = out[r, f] + bias[f]
            if activation == RELU:
                v = max(v, np.float32(0.0))
            elif activation == TANH:
                v = np.tanh(v)
            out[r, f] = v


def bias_activation(out: np.ndarray, bias: np.ndarray, activation: int) -> None:
    """out (rows, F) += bias, then the activation, in one pass, in place."""
    in_parts(bias_activation_rows, out.shape[0], out, bias, activation, min_rows=256)


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def activation_grad_and_bias_sum(d_out: np.ndarray, out: np.ndarray, d: np.ndarray, d_bias: np.ndarray,
                                 activation: int) -> None:
    """d = d_out * activation'(from out) and d_bias = column sums of d, in one pass over (rows, F)."""
    rows, features = d_out.shape
    for f in range(features):
        d_bias[f] = 0.0
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
