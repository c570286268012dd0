"""The backward pass of a convolution over 1-channel images (a first layer on grey images) whose input needs
no gradient: one pass over the output's gradient that reads the image directly, tap by tap; also straight from
the gradient of a max pool over that output.

With one input channel a kernel has only kh*kw numbers per filter (9 for 3x3), so im2col's kernel gradient is
a skinny (9, N*oh*ow) @ (N*oh*ow, F) product after a separate pass for the activation's gradient and the bias
sums. Here d = d_out * activation'(out) stays in registers and the kernel's and the bias's gradients
accumulate as it goes: 0.55-0.65 ms against 0.90-1.05 for the MNIST convnet's first layer (batch 64, 2
threads, A/B in one run). A direct forward of the plain conv (tap by tap, fused bias and activation) measured
0.80 ms against 0.42-0.54 for im2col by tap and its GEMM, so the plain forward stays im2col: it writes the whole
conv output either way.

Followed by a max pool that alone reads it (ops.conv2d_max_pool2d), the forward is direct (forward_pooled): only
the pooled output and the argmax are written, a quarter of the bytes, and the 9 taps stay in registers. The
convnet's first layer and pool, batch 64, 2 threads, one locked run: 0.20 ms against 0.54 for im2col, GEMM,
bias + relu, then the pool, and 0.60 for the pool taken on the GEMM's raw output with bias + relu on the
pooled quarter (relu and the bias commute with the max, but the conv-sized GEMM output is still written and
read).

After a max pool only a window's argmax gets a gradient, so the kernel can run per pooled cell from the pool's
gradient and argmax (ops/pool.ConvMaxPool): d = d_pool * activation'(pooled) (the pooled value is the argmax's
output), times x under each tap at the argmax, picked among the window's 4 corners by selects, so the filters
stay the vector axis. A quarter of the products, and no gradient of the conv output's size is written (by the
pool's backward) nor read. One kernel for both, the plain conv as a pool of 1 x 1 windows with no argmax: one
compilation, which a run's ahead-of-time compile of the conv layer alone (train/precompile.py) already does.

x is the padded image batch (N, Hp, Wp) (every window inside it). The innermost loops run over the filters,
contiguous in channels-last arrays, so LLVM vectorizes them. Images are independent: the kernel takes a range
[lo, hi) of them, nogil, and kernels/parts.in_parts runs the ranges on threads and returns their sums, added
at the end.
"""

from __future__ import annotations

import numba
import numpy as np

from dlcli.kernels.conv import RELU, TANH
from dlcli.kernels.parts import in_parts

# the plain conv's backward as a "pool" of 1 x 1 windows with no argmax: the same kernel, the same signature
_NO_ARGMAX = np.empty((0, 0, 0, 0), np.int32)
_NO_POOL = (1, 1, 1, 1, 0, 0)


def weight_gradients(x: np.ndarray, d_out: np.ndarray, out: np.ndarray, argmax: np.ndarray | None, activation: int,
                     kernel_h: int, kernel_w: int, stride_h: int, stride_w: int, dilation_h: int, dilation_w: int,
                     pool: tuple[int, int, int, int, int, int] | None, conv_h: int, conv_w: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's (kh, kw, 1, F) and the bias's (F,) gradients, in out's dtype, by backward_images over the
    images on the parts threads. argmax and pool (pool_h, pool_w, stride_h, stride_w, pad_top, pad_left): the
    max pool's whose output and gradient out and d_out are, or None for the conv's own."""
    if argmax is None:
        argmax, pool = _NO_ARGMAX, _NO_POOL
    features, taps = d_out.shape[3], kernel_h * kernel_w
    sums = in_parts(backward_images, d_out.shape[0], x, d_out, out, argmax, activation, kernel_h, kernel_w,
                    stride_h, stride_w, dilation_h, dilation_w, *pool, conv_h, conv_w,
                    totals=(taps + 1) * features, min_rows=4).sum(axis=0).astype(out.dtype)
    return sums[:taps * features].reshape(kernel_h, kernel_w, 1, features), sums[taps * features:]


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def backward_images(x: np.ndarray, d_out: np.ndarray, out: np.ndarray, argmax: np.ndarray, activation: int,
                    kernel_h: int, kernel_w: int, stride_h: int, stride_w: int, dilation_h: int, dilation_w: int,
                    pool_h: int, pool_w: int, pool_stride_h: int, pool_stride_w: int, pad_top: int, pad_left: int,
                    conv_h: int, conv_w: int, total: np.ndarray, lo: int, hi: int) -> None:
    """Add to total (kh*kw*F + F,) float64 the kernel gradient (kh, kw, F) then the bias gradient (F) of the
    images [lo, hi). Without a pool (an empty argmax; pool 1 x 1, stride 1, no padding), out and d_out are the
    conv's output and its gradient (N, conv_h, conv_w, F): d = d_out * activation'(out), d_kernel[a, b] = sum
    of x at tap (a, b) times d, d_bias the sum of d. With one, they are the max pool's output and gradient,
    argmax its flat h * conv_w + w in the conv output, windows of at most 2 x 2 cells (the pool's geometry
    follows); overlapping windows add, as the chain rule does. Each image's sums are taken in the arrays'
    dtype, then added to the float64 total."""
    cells_h, cells_w, features = d_out.shape[1], d_out.shape[2], d_out.shape[3]
    pooled = argmax.size > 0
    taps = kernel_h * kernel_w
    # one allocation for the sums and d, zeroed here: np.zeros and a second np.empty compiled two more of NumPy's
    # allocator functions with the kernel (0.63 -> 0.53 s CPU to compile it alone, the same run time); a
    # workspace from the caller compiled faster still but ran 10-70% slower (LLVM could no longer tell it from
    # the arguments: alias checks in every filter loop)
    sums = np.empty((taps + 2, features), d_out.dtype)
    d = sums[taps + 1]
    for t in range(taps + 1):
        for f in range(features):
            sums[t, f] = 0.0
    for n in range(lo, hi):
        for i in range(cells_h):
            top, bottom = _window(i, pool_stride_h, pad_top, pool_h, conv_h)
            for j in range(cells_w):
                left, right = _window(j, pool_stride_w, pad_left, pool_w, conv_w)
                at_b, at_c = np.int32(top * conv_w + right), np.int32(bottom * conv_w + left)
                at_d = np.int32(bottom * conv_w + right)
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
                        row_t, row_b = top * stride_h + a * dilation_h, bottom * stride_h + a * dilation_h
                        col_l, col_r = left * stride_w + b * dilation_w, right * stride_w + b * dilation_w
                        va = x[n, row_t, col_l]
                        t = a * kernel_w + b
                        if pooled:
                            vb, vc, vd = x[n, row_t, col_r], x[n, row_b, col_l], x[n, row_b, col_r]
                            for f in range(features):
                                q = argmax[n, i, j, f]
                                v = vd if q == at_d else (vc if q == at_c else (vb if q == at_b else va))
                                sums[t, f] += v * d[f]
                        else:
                            for f in range(features):
                                sums[t, f] += va * d[f]
        for t in range(taps + 1):  # per image into float64: a float32 sum over a whole batch would drift
            for f in range(features):
                total[t * features + f] += sums[t, f]
                sums[t, f] = 0.0


def forward_pooled(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, activation: int, stride_h: int,
                   stride_w: int, dilation_h: int, dilation_w: int, pool: tuple[int, int, int, int, int, int],
                   conv_h: int, conv_w: int, out: np.ndarray, argmax: np.ndarray) -> None:
    """out (N, oh, ow, F) = max pool of activation(conv(x, kernel) + bias) for a 3x3 kernel (3, 3, 1, F) over
    the padded images x (N, Hp, Wp), and argmax its flat h * conv_w + w in the (conv_h, conv_w) conv output, by
    forward_pooled_images on the parts threads; pool: (pool_h, pool_w, stride_h, stride_w, pad_top, pad_left),
    windows of at most 2 x 2 cells."""
    in_parts(forward_pooled_images, x.shape[0], x, kernel.reshape(9, -1), bias, activation, stride_h, stride_w,
             dilation_h, dilation_w, *pool, conv_h, conv_w, out, argmax, min_rows=4)


@numba.njit(cache=True, inline="always", error_model="numpy", no_cfunc_wrapper=True)
def _window(cell: int, stride: int, pad: int, size: int, limit: int) -> tuple:
    """The first and last conv-output row (or column) of pooled cell `cell`'s window, clipped to [0, limit) as
    the pool clips them ("same" pooling)."""
    first = cell * stride - pad
    last = first + size - 1
    return (first if first > 0 else 0), (last if last < limit else limit - 1)


@numba.njit(cache=True, inline="always", error_model="numpy", no_cfunc_wrapper=True)
def _patch(x: np.ndarray, n: int, row: int, col: int, dilation_h: int, dilation_w: int) -> tuple:
    """The 9 cells of image n under a 3x3 kernel whose top left tap is at (row, col), row by row."""
    r1, r2, c1, c2 = row + dilation_h, row + 2 * dilation_h, col + dilation_w, col + 2 * dilation_w
    return (x[n, row, col], x[n, row, c1], x[n, row, c2], x[n, r1, col], x[n, r1, c1], x[n, r1, c2],
            x[n, r2, col], x[n, r2, c1], x[n, r2, c2])


@numba.njit(cache=True, inline="always", error_model="numpy", no_cfunc_wrapper=True)
def _dot9(p: tuple, w0: float, w1: float, w2: float, w3: float, w4: float, w5: float, w6: float, w7: float,
          w8: float) -> float:
    """The 9 products added tap by tap in order, as a matrix product over im2col's columns adds them."""
    s = p[0] * w0
    s += p[1] * w1
    s += p[2] * w2
    s += p[3] * w3
    s += p[4] * w4
    s += p[5] * w5
    s += p[6] * w6
    s += p[7] * w7
    return s + p[8] * w8


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath={"contract"}, no_cfunc_wrapper=True)
def forward_pooled_images(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, activation: int, stride_h: int,
                          stride_w: int, dilation_h: int, dilation_w: int, pool_h: int, pool_w: int,
                          pool_stride_h: int, pool_stride_w: int, pad_top: int, pad_left: int, conv_h: int,
                          conv_w: int, out: np.ndarray, argmax: np.ndarray, lo: int, hi: int) -> None:
    """forward_pooled for the images [lo, hi), kernel (9, F). Per pooled cell, the conv at the window's 4
    corners (a 1-wide or clipped window reads a corner twice, as max_pool2d_forward_small does): the 36 image
    cells are scalars, the filters the vector axis, the 9 taps added in registers (contract: as fused
    multiply-adds). The bias is added at each corner and relu applied there too (a select), so the max and its
    argmax are those of the unfused conv + pool, the first of tied cells winning. activation: LINEAR or RELU;
    for TANH the kernel pools the linear values and the caller applies tanh to the pooled output: tanh is
    monotone non-decreasing, so tanh(max) is the max of tanh, one tanh a pooled cell instead of four (np.tanh in
    the filter loop stopped its vectorization: 0.47 ms against 0.37). Nothing of the conv output's size is
    written."""
    cells_h, cells_w, features = out.shape[1], out.shape[2], out.shape[3]
    # relu as a floor of 0 at every corner, selected without a branch (an `if activation` in the filter loop
    # took 0.39 ms against 0.26 for the convnet's 64 images, one thread); NaN stays NaN (`floor if v < floor`)
    floor = np.float32(0.0) if activation == RELU else np.float32(-np.inf)
    for n in range(lo, hi):
        for i in range(cells_h):
            top, bottom = _window(i, pool_stride_h, pad_top, pool_h, conv_h)
            for j in range(cells_w):
                left, right = _window(j, pool_stride_w, pad_left, pool_w, conv_w)
                at_a, at_b = np.int32(top * conv_w + left), np.int32(top * conv_w + right)
                at_c, at_d = np.int32(bottom * conv_w + left), np.int32(bottom * conv_w + right)
                pa = _patch(x, n, top * stride_h, left * stride_w, dilation_h, dilation_w)
                pb = _patch(x, n, top * stride_h, right * stride_w, dilation_h, dilation_w)
                pc = _patch(x, n, bottom * stride_h, left * stride_w, dilation_h, dilation_w)
                pd = _patch(x, n, bottom * stride_h, right * stride_w, dilation_h, dilation_w)
                for f in range(features):
                    w0, w1, w2, w3, w4 = kernel[0, f], kernel[1, f], kernel[2, f], kernel[3, f], kernel[4, f]
                    w5, w6, w7, w8, b = kernel[5, f], kernel[6, f], kernel[7, f], kernel[8, f], bias[f]
                    a = _dot9(pa, w0, w1, w2, w3, w4, w5, w6, w7, w8) + b
                    b_ = _dot9(pb, w0, w1, w2, w3, w4, w5, w6, w7, w8) + b
                    c = _dot9(pc, w0, w1, w2, w3, w4, w5, w6, w7, w8) + b
                    d = _dot9(pd, w0, w1, w2, w3, w4, w5, w6, w7, w8) + b
                    a, b_ = (floor if a < floor else a), (floor if b_ < floor else b_)
                    c, d = (floor if c < floor else c), (floor if d < floor else d)
                    upper, upper_at = (b_, at_b) if b_ > a else (a, at_a)
                    lower, lower_at = (d, at_d) if d > c else (c, at_c)
                    take_lower = lower > upper  # row-major pairs: the first of tied cells wins
                    out[n, i, j, f] = lower if take_lower else upper
                    argmax[n, i, j, f] = lower_at if take_lower else upper_at
