"""The backward pass of a convolution over 1-channel images (a first layer on grey images) whose input needs
no gradient: one pass over d_out and out that reads the image directly, tap by tap.

With one input channel a kernel has only kh*kw numbers per filter (9 for 3x3), so im2col's kernel gradient is
a skinny (9, N*oh*ow) @ (N*oh*ow, F) product after a separate pass for the activation's gradient and the bias
sums. Here d = d_out * activation'(out) stays in registers and the kernel's and the bias's gradients
accumulate as it goes: 0.55-0.65 ms against 0.90-1.05 for the MNIST convnet's first layer (batch 64, 2
threads, A/B in one run). A direct forward (tap by tap, fused bias and activation) measured 0.80 ms against
0.42-0.54 for im2col by tap and its GEMM, so the forward stays im2col.

x is the padded image batch (N, Hp, Wp) (every window inside it); out and d_out are (N, oh, ow, F). The
innermost loops run over the filters, contiguous in channels-last arrays, so LLVM vectorizes them. Images are
independent: the kernel takes a range [lo, hi) of them, nogil, and kernels/parts.in_parts runs the ranges on
threads and returns their sums, added at the end.
"""

from __future__ import annotations

import numba
import numpy as np

from dlcli.kernels.conv import RELU, TANH


@numba.njit(cache=True, error_model="numpy", nogil=True)
def backward_images(x: np.ndarray, d_out: np.ndarray, out: np.ndarray, activation: int, kernel_h: int,
                    kernel_w: int, stride_h: int, stride_w: int, dilation_h: int, dilation_w: int, total: np.ndarray,
                    lo: int, hi: int) -> None:
    """Add to total (kh*kw*F + F,) float64 the kernel gradient (kh, kw, F) then the bias gradient (F) of the
    images [lo, hi): d = d_out * activation'(out), d_kernel[a, b] = sum of x at tap (a, b) times d, d_bias the
    sum of d. Each image's sums are taken in the arrays' dtype, then added to the float64 total."""
    out_h, out_w, features = d_out.shape[1], d_out.shape[2], d_out.shape[3]
    taps = kernel_h * kernel_w
    sums = np.zeros((taps + 1, features), d_out.dtype)
    d = np.empty(features, d_out.dtype)
    for n in range(lo, hi):
        for i in range(out_h):
            for j in range(out_w):
                for f in range(features):
                    g = d_out[n, i, j, f]
                    if activation == RELU:
                        g = g if out[n, i, j, f] > 0.0 else np.float32(0.0)
                    elif activation == TANH:
                        g = g * (np.float32(1.0) - out[n, i, j, f] * out[n, i, j, f])
                    d[f] = g
                    sums[taps, f] += g
                for a in range(kernel_h):
                    for b in range(kernel_w):
                        v = x[n, i * stride_h + a * dilation_h, j * stride_w + b * dilation_w]
                        t = a * kernel_w + b
                        for f in range(features):
                            sums[t, f] += v * d[f]
        for t in range(taps + 1):  # per image into float64: a float32 sum over a whole batch would drift
            for f in range(features):
                total[t * features + f] += sums[t, f]
                sums[t, f] = 0.0


@numba.njit(cache=True, error_model="numpy", nogil=True)
def backward_pooled_images(x: np.ndarray, d_pool: np.ndarray, pooled: np.ndarray, argmax: np.ndarray,
                           activation: int, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
                           dilation_h: int, dilation_w: int, pool_h: int, pool_w: int, pool_stride_h: int,
                           pool_stride_w: int, pad_top: int, pad_left: int, conv_h: int, conv_w: int,
                           total: np.ndarray, lo: int, hi: int) -> None:
    """backward_images for a convolution whose output went only through a max pool of windows of at most 2 x 2
    cells, from the pool's gradient: add to total (kh*kw*F + F,) the kernel's then the bias's gradient of the
    images [lo, hi). Only a window's argmax gets a gradient, so each pooled cell adds one conv output's share:
    d = d_pool * activation'(pooled) (the pooled value is that output), times x under the tap at the argmax,
    picked among the window's 4 corners by selects (the filters stay the vector axis). A quarter of
    backward_images' products, and no d_out of the conv's size is written or read. argmax is the pool's flat
    h * conv_w + w in the (conv_h, conv_w) conv output; overlapping windows simply add, as the chain rule does."""
    pooled_h, pooled_w, features = d_pool.shape[1], d_pool.shape[2], d_pool.shape[3]
    taps = kernel_h * kernel_w
    sums = np.zeros((taps + 1, features), d_pool.dtype)
    d = np.empty(features, d_pool.dtype)
    for n in range(lo, hi):
        for i in range(pooled_h):
            top = i * pool_stride_h - pad_top
            bottom = top + pool_h - 1
            top = top if top > 0 else 0  # windows clipped to the image ("same" padding), as the pool has them
            bottom = bottom if bottom < conv_h else conv_h - 1
            for j in range(pooled_w):
                left = j * pool_stride_w - pad_left
                right = left + pool_w - 1
                left = left if left > 0 else 0
                right = right if right < conv_w else conv_w - 1
                at_b, at_c = np.int32(top * conv_w + right), np.int32(bottom * conv_w + left)
                at_d = np.int32(bottom * conv_w + right)
                for f in range(features):
                    g = d_pool[n, i, j, f]
                    if activation == RELU:
                        g = g if pooled[n, i, j, f] > 0.0 else np.float32(0.0)
                    elif activation == TANH:
                        g = g * (np.float32(1.0) - pooled[n, i, j, f] * pooled[n, i, j, f])
                    d[f] = g
                    sums[taps, f] += g
                for a in range(kernel_h):
                    for b in range(kernel_w):
                        row_t, row_b = top * stride_h + a * dilation_h, bottom * stride_h + a * dilation_h
                        col_l, col_r = left * stride_w + b * dilation_w, right * stride_w + b * dilation_w
                        va, vb, vc, vd = x[n, row_t, col_l], x[n, row_t, col_r], x[n, row_b, col_l], x[n, row_b, col_r]
                        t = a * kernel_w + b
                        for f in range(features):
                            q = argmax[n, i, j, f]
                            v = vd if q == at_d else (vc if q == at_c else (vb if q == at_b else va))
                            sums[t, f] += v * d[f]
        for t in range(taps + 1):  # per image into float64, as backward_images
            for f in range(features):
                total[t * features + f] += sums[t, f]
                sums[t, f] = 0.0
