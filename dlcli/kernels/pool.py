"""Max and average pooling over channels-last images (N, H, W, C): forward and backward passes.

Every loop nest ends in a loop over channels, the contiguous axis, so LLVM vectorizes it; max and argmax
are chosen with selects, not branches (an `if` in the channel loop doubled the time). No Numba thread pool: it
fights OpenBLAS's for the cores and slows the next matrix product; the max backward splits images over plain
threads instead (kernels/parts.py). The max forward stays on one thread: on two it took as long (0.20 against
0.18 ms on the convnet's first pool, memory-bound) or longer (0.06 against 0.04 on its second; in a training
step, where its input comes from the conv before it, 0.117 against 0.113 ms: profile_ab, one locked run).
The convnet's first pool no longer runs here: it is fused with its conv (conv_one_channel.forward_pooled).
Windows are
clipped to the image, which is how "same" padding ignores padded cells. Callers allocate outputs; the average
backward's come zeroed.
"""

from __future__ import annotations

import numba
import numpy as np

from dlcli.kernels.parts import in_parts


@numba.njit(cache=True, inline="always", error_model="numpy", no_cfunc_wrapper=True)
def _window(index: int, stride: int, pad_before: int, pool: int, size: int) -> tuple[int, int]:
    """[low, high) of the input cells under output cell `index` along one axis, clipped to the input."""
    start, end = index * stride - pad_before, index * stride - pad_before + pool
    # ifs, not min/max: each min/max argument type is one more Numba function to compile
    return (start if start > 0 else 0), (end if end < size else size)


def max_pool2d_forward(x: np.ndarray, out: np.ndarray, argmax: np.ndarray, pool_h: int, pool_w: int,
                       stride_h: int, stride_w: int, pad_top: int, pad_left: int) -> None:
    """out[n, i, j, c] = max of x[n, window, c]; argmax gets its flat index h * W + w (first one on ties).

    Windows of at most 2 x 2 cells (Keras' default pool) take max_pool2d_forward_small; larger ones the
    general kernel, which is compiled only by a run that has such a pool.
    """
    kernel = max_pool2d_forward_small if pool_h <= 2 and pool_w <= 2 else max_pool2d_forward_any
    kernel(x, out, argmax, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def max_pool2d_forward_small(x: np.ndarray, out: np.ndarray, argmax: np.ndarray, pool_h: int, pool_w: int,
                             stride_h: int, stride_w: int, pad_top: int, pad_left: int) -> None:
    """max_pool2d_forward for windows of at most 2 x 2 cells, read through their corners in one channel loop
    that keeps every value in registers: 3x faster than updating a running maximum in memory cell by cell,
    which larger windows do. A 1-wide window just reads a cell twice.
    """
    n_batch, height, width, channels = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for n in range(n_batch):
        for i in range(out_h):
            h_low, h_high = _window(i, stride_h, pad_top, pool_h, height)
            top, bottom = h_low, h_high - 1
            for j in range(out_w):
                w_low, w_high = _window(j, stride_w, pad_left, pool_w, width)
                left, right = w_low, w_high - 1
                at_a, at_b = np.int32(top * width + left), np.int32(top * width + right)
                at_c, at_d = np.int32(bottom * width + left), np.int32(bottom * width + right)
                for c in range(channels):  # direct 4-D indexing: slicing views per cell cost 30% more
                    a, b = x[n, top, left, c], x[n, top, right, c]
                    c_, d = x[n, bottom, left, c], x[n, bottom, right, c]
                    upper_right, lower_right = b > a, d > c_
                    upper, upper_at = (b, at_b) if upper_right else (a, at_a)
                    lower, lower_at = (d, at_d) if lower_right else (c_, at_c)
                    take_lower = lower > upper  # row-major pairs: the first of tied cells wins
                    out[n, i, j, c] = lower if take_lower else upper
                    argmax[n, i, j, c] = lower_at if take_lower else upper_at


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def max_pool2d_forward_any(x: np.ndarray, out: np.ndarray, argmax: np.ndarray, pool_h: int, pool_w: int,
                           stride_h: int, stride_w: int, pad_top: int, pad_left: int) -> None:
    """max_pool2d_forward for windows of any size: a running maximum, updated with selects, not branches."""
    n_batch, height, width, channels = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for n in range(n_batch):
        for i in range(out_h):
            h_low, h_high = _window(i, stride_h, pad_top, pool_h, height)
            for j in range(out_w):
                w_low, w_high = _window(j, stride_w, pad_left, pool_w, width)
                start = np.int32(h_low * width + w_low)
                for c in range(channels):
                    out[n, i, j, c] = x[n, h_low, w_low, c]
                    argmax[n, i, j, c] = start
                for h in range(h_low, h_high):
                    for w in range(w_low, w_high):
                        at = np.int32(h * width + w)
                        for c in range(channels):
                            value, current = x[n, h, w, c], out[n, i, j, c]
                            greater = value > current
                            out[n, i, j, c] = value if greater else current
                            argmax[n, i, j, c] = at if greater else argmax[n, i, j, c]


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def max_pool2d_backward_images(d_out: np.ndarray, argmax: np.ndarray, d_x: np.ndarray, lo: int, hi: int) -> None:
    """max_pool2d_backward for the images [lo, hi)."""
    out_h, out_w, channels = d_out.shape[1], d_out.shape[2], d_out.shape[3]
    for n in range(lo, hi):
        for at in range(d_x.shape[1]):
            for c in range(channels):
                d_x[n, at, c] = 0.0
        for i in range(out_h):
            for j in range(out_w):
                for c in range(channels):
                    d_x[n, argmax[n, i, j, c], c] += d_out[n, i, j, c]


def max_pool2d_backward(d_out: np.ndarray, argmax: np.ndarray, d_x: np.ndarray, pool_h: int, pool_w: int,
                        stride_h: int, stride_w: int, pad_top: int, pad_left: int) -> None:
    """d_x[n, h, w, c] = sum of the d_out[n, i, j, c] whose window picked (h, w), for d_x (N, H, W, C).

    Windows that do not overlap (strides at least the pool, Keras' default) take max_pool2d_backward_disjoint,
    which writes every cell of d_x once, in order: its window's gradient if it was the window's argmax, else 0.
    Overlapping ones scatter-add, since one cell can win several windows; each image's slice of d_x is zeroed
    in the same pass. Either way the caller need not clear d_x. Images are split over threads
    (kernels/parts.py), each thread writing only its own images.
    """
    if stride_h >= pool_h and stride_w >= pool_w:
        in_parts(max_pool2d_backward_disjoint, d_out.shape[0], d_out, argmax, d_x, pool_h, pool_w, stride_h,
                 stride_w, pad_top, pad_left, min_rows=4)
    else:
        in_parts(max_pool2d_backward_images, d_out.shape[0], d_out, argmax,
                 d_x.reshape(d_x.shape[0], -1, d_x.shape[3]), min_rows=4)


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def max_pool2d_backward_disjoint(d_out: np.ndarray, argmax: np.ndarray, d_x: np.ndarray, pool_h: int, pool_w: int,
                                 stride_h: int, stride_w: int, pad_top: int, pad_left: int, lo: int,
                                 hi: int) -> None:
    """max_pool2d_backward of the images [lo, hi) for windows that do not overlap: d_x (N, H, W, C) is written
    once, cell by cell (a cell lies in at most one window, found by division), with no zeroing pass before
    and no scatter."""
    out_h, out_w, channels = d_out.shape[1], d_out.shape[2], d_out.shape[3]
    height, width = d_x.shape[1], d_x.shape[2]
    for n in range(lo, hi):
        for h in range(height):
            i = (h + pad_top) // stride_h
            inside_h = i < out_h and h + pad_top - i * stride_h < pool_h
            for w in range(width):
                j = (w + pad_left) // stride_w
                at = np.int32(h * width + w)
                if inside_h and j < out_w and w + pad_left - j * stride_w < pool_w:
                    for c in range(channels):
                        d_x[n, h, w, c] = d_out[n, i, j, c] if argmax[n, i, j, c] == at else np.float32(0.0)
                else:  # a cell no window covers ("valid" pooling of an odd size)
                    for c in range(channels):
                        d_x[n, h, w, c] = 0.0


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def average_pool2d_forward(x: np.ndarray, out: np.ndarray, pool_h: int, pool_w: int, stride_h: int,
                           stride_w: int, pad_top: int, pad_left: int) -> None:
    """out[n, i, j, c] = mean of x[n, window, c] over the window's cells inside the image (TF's "same" rule)."""
    n_batch, height, width, channels = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for n in range(n_batch):
        for i in range(out_h):
            h_low, h_high = _window(i, stride_h, pad_top, pool_h, height)
            for j in range(out_w):
                w_low, w_high = _window(j, stride_w, pad_left, pool_w, width)
                total = out[n, i, j]
                for c in range(channels):
                    total[c] = 0
                for h in range(h_low, h_high):
                    for w in range(w_low, w_high):
                        row = x[n, h, w]
                        for c in range(channels):
                            total[c] += row[c]
                count = out.dtype.type((h_high - h_low) * (w_high - w_low))
                for c in range(channels):
                    total[c] /= count


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def average_pool2d_backward(d_out: np.ndarray, d_x: np.ndarray, pool_h: int, pool_w: int, stride_h: int,
                            stride_w: int, pad_top: int, pad_left: int) -> None:
    """d_x[n, window, c] += d_out[n, i, j, c] / (cells in the window), for d_x of shape (N, H, W, C), zeroed."""
    n_batch, out_h, out_w, channels = d_out.shape
    height, width = d_x.shape[1], d_x.shape[2]
    for n in range(n_batch):
        for i in range(out_h):
            h_low, h_high = _window(i, stride_h, pad_top, pool_h, height)
            for j in range(out_w):
                w_low, w_high = _window(j, stride_w, pad_left, pool_w, width)
                grad = d_out[n, i, j]
                count = d_x.dtype.type((h_high - h_low) * (w_high - w_low))
                for h in range(h_low, h_high):
                    for w in range(w_low, w_high):
                        row = d_x[n, h, w]
                        for c in range(channels):
                            row[c] += grad[c] / count
