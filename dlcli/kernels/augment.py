"""Affine resampling of channels-last image batches, and its adjoint (the scatter its backward needs).

Each output pixel (row y, column x) of image n reads the input at (column, row) = matrices[n] @ (x, y, 1):
the matrix maps output coordinates to input coordinates (Keras' convention), so a kernel never inverts one.
Pixel centres sit at integer coordinates. Interpolation picks the nearest pixel (ties round up) or blends
the four around the point bilinearly; each of those integer indices then goes through the fill mode, the
way scipy.ndimage.map_coordinates (and Keras' NumPy and JAX backends) do it. In constant mode a neighbour
outside the image reads `fill_value`, so an edge blends into the fill instead of stopping at it.

Both kernels share `_taps`, so the adjoint scatters with exactly the weights the forward pass gathered
with. Coordinates are float64 whatever the image dtype: float32 positions would drift by 1e-5 pixels
across a 28-pixel image and turn an exact 180-degree rotation into a blend.
"""

from __future__ import annotations

import numba
import numpy as np

CONSTANT, REFLECT, NEAREST, WRAP = 0, 1, 2, 3  # fill-mode codes: positions in dlcli.ops.augment.FILL_MODES


@numba.njit(cache=True, inline="always", error_model="numpy", no_cfunc_wrapper=True)
def _fix_index(i: int, size: int, fill_mode: int) -> int:
    """Index i brought inside [0, size) by the fill mode; -1 means "the fill value" (constant mode)."""
    if 0 <= i < size:
        return i
    if fill_mode == CONSTANT:
        return -1
    if fill_mode == NEAREST:  # (a a | a b c d | d d)
        return 0 if i < 0 else size - 1
    if fill_mode == WRAP:  # (a b c d | a b c d | a b c d)
        return i % size
    # REFLECT about the outer edge of the last pixel: (d c b a | a b c d | d c b a), period 2 * size
    i = i % (2 * size)
    return i if i < size else 2 * size - 1 - i


@numba.njit(cache=True, inline="always", error_model="numpy", no_cfunc_wrapper=True)
def _taps(matrix: np.ndarray, x: int, y: int, height: int, width: int, fill_mode: int,
          bilinear: bool) -> tuple[int, int, int, int, float, float, float, float]:
    """The input pixels output pixel (y, x) reads: rows r0, r1, columns c0, c1 (-1: fill) and the separable
    weights (1 - fy, fy, 1 - fx, fx) of the 2x2 block they form; nearest gives weight 1 to (r0, c0)."""
    sx = matrix[0] * x + matrix[1] * y + matrix[2]
    sy = matrix[3] * x + matrix[4] * y + matrix[5]
    if bilinear:
        x0, y0 = np.floor(sx), np.floor(sy)
        fx, fy = sx - x0, sy - y0
        ix, iy = int(x0), int(y0)
        return (_fix_index(iy, height, fill_mode), _fix_index(iy + 1, height, fill_mode),
                _fix_index(ix, width, fill_mode), _fix_index(ix + 1, width, fill_mode),
                1.0 - fy, fy, 1.0 - fx, fx)
    r = _fix_index(int(np.floor(sy + 0.5)), height, fill_mode)
    c = _fix_index(int(np.floor(sx + 0.5)), width, fill_mode)
    return r, r, c, c, 1.0, 0.0, 1.0, 0.0


@numba.njit(cache=True, error_model="numpy", no_cfunc_wrapper=True)
def affine_resample(images: np.ndarray, matrices: np.ndarray, fill_mode: int, bilinear: bool, fill_value: float,
                    out: np.ndarray) -> None:
    """out[n, y, x, :] = images[n] sampled at matrices[n] @ (x, y, 1); images, out (N, H, W, C), matrices (N, 2, 3)."""
    n_images, height, width, channels = images.shape
    dtype = out.dtype.type
    fill = dtype(fill_value)
    for n in range(n_images):
        matrix = matrices[n].ravel()  # six numbers, taken once per image rather than a 2x3 view per pixel
        for y in range(height):
            for x in range(width):
                r0, r1, c0, c1, wy0, wy1, wx0, wx1 = _taps(matrix, x, y, height, width, fill_mode, bilinear)
                wy0, wy1, wx0, wx1 = dtype(wy0), dtype(wy1), dtype(wx0), dtype(wx1)
                in00, in01 = r0 >= 0 and c0 >= 0, r0 >= 0 and c1 >= 0
                in10, in11 = r1 >= 0 and c0 >= 0, r1 >= 0 and c1 >= 0
                for ch in range(channels):
                    # every tap is read, even at weight 0 (nearest's three spare taps): no branch on weights
                    v00 = images[n, r0, c0, ch] if in00 else fill
                    v01 = images[n, r0, c1, ch] if in01 else fill
                    v10 = images[n, r1, c0, ch] if in10 else fill
                    v11 = images[n, r1, c1, ch] if in11 else fill
                    out[n, y, x, ch] = wy0 * (wx0 * v00 + wx1 * v01) + wy1 * (wx0 * v10 + wx1 * v11)


@numba.njit(cache=True, error_model="numpy", no_cfunc_wrapper=True)
def affine_resample_adjoint(d_out: np.ndarray, matrices: np.ndarray, fill_mode: int, bilinear: bool,
                            d_images: np.ndarray) -> None:
    """d_images += the transpose of affine_resample applied to d_out: each output gradient added back to the
    input pixels it was read from, with the same weights (the fill value is a constant: its share is dropped)."""
    n_images, height, width, channels = d_out.shape
    dtype = d_images.dtype.type
    for n in range(n_images):
        matrix = matrices[n].ravel()
        for y in range(height):
            for x in range(width):
                r0, r1, c0, c1, wy0, wy1, wx0, wx1 = _taps(matrix, x, y, height, width, fill_mode, bilinear)
                w00, w01 = dtype(wy0 * wx0), dtype(wy0 * wx1)
                w10, w11 = dtype(wy1 * wx0), dtype(wy1 * wx1)
                in00, in01 = r0 >= 0 and c0 >= 0 and w00 != 0, r0 >= 0 and c1 >= 0 and w01 != 0
                in10, in11 = r1 >= 0 and c0 >= 0 and w10 != 0, r1 >= 0 and c1 >= 0 and w11 != 0
                for ch in range(channels):
                    g = d_out[n, y, x, ch]
                    if in00:
                        d_images[n, r0, c0, ch] += w00 * g
                    if in01:
                        d_images[n, r0, c1, ch] += w01 * g
                    if in10:
                        d_images[n, r1, c0, ch] += w10 * g
                    if in11:
                        d_images[n, r1, c1, ch] += w11 * g
