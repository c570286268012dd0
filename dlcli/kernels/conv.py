"""im2col / col2im for channels-last convolutions: patches copied into (or summed back from) a matrix, so the
convolution itself is one BLAS matrix product.

A row of `cols` is one output position (n, oh, ow); its columns are (kh, kw, c) in the order of a Keras kernel
(kh, kw, in, out) reshaped to (kh*kw*in, out). Positions that fall in the padding read as zero (im2col) or
are skipped (col2im). The innermost loop runs over channels, which are contiguous in channels-last arrays.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, error_model="numpy")
def im2col(x: np.ndarray, cols: np.ndarray, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
           dilation_h: int, dilation_w: int, pad_top: int, pad_left: int, out_h: int, out_w: int) -> None:
    """Fill cols (N*out_h*out_w, kernel_h*kernel_w*C) with the patches of x (N, H, W, C)."""
    n_images, height, width, channels = x.shape
    row = 0
    for n in range(n_images):
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


@numba.njit(cache=True, error_model="numpy")
def col2im(cols: np.ndarray, dx: np.ndarray, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
           dilation_h: int, dilation_w: int, pad_top: int, pad_left: int, out_h: int, out_w: int) -> None:
    """Add each row of cols back onto the input positions it was copied from; dx (N, H, W, C) starts at zero."""
    n_images, height, width, channels = dx.shape
    row = 0
    for n in range(n_images):
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
