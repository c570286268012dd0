"""Winograd's tile transforms in two 1-D passes, for the larger tiles: F(4x4, 3x3)'s 6x6 input tiles.

A tile transform is Y = X D X^T for a tile D of channel vectors and a small matrix X (B^T, A^T or their
transposes). winograd.tile_map computes it as one entry of kron(X, X) per (target, source) pair, one vector of
channels each, paying its table look-ups per entry: for F(4x4) that is 484 entries a tile for B^T and 324 for
A^T, and its transforms took 1.5x the time of the GEMMs they feed (the convnet's second layer, one thread: 1.10 ms
input transform, 0.71 GEMMs, 0.77 output transform). Here Y = (X (X D)^T)^T: X applied to whole rows of the tile
(each of X's nonzeros one pass over a row of side vectors, contiguous), the result transposed in a scratch block,
X applied to its rows again, and the transposed result scattered by a table that names each cell's target: 44
row passes a tile for B^T. The tile is gathered into (and scattered from) scratch blocks that stay in L1, so a
tile at the image's edge (cells read as zero, or dropped) takes the same path as any other. 0.35-0.42 ms
against tile_map's 1.0-1.1 for that input transform; a kernel with each 1-D transform written out ran it in
0.14 ms, but its four transforms took 2.0 s to compile against this one's 0.7 (every shipped spec that has a
Winograd layer compiles them on its first run).
"""

from __future__ import annotations

import numba
import numpy as np

# how a transformed cell meets its target: set to max(cell + bias, floor) (a plain set with a zero bias and a
# floor of -inf; a NaN stays NaN), or added to it. Also the entries' kinds: a target's first sets, the next add
SET, ADD = 0, 1


@numba.njit(cache=True, error_model="numpy", nogil=True)
def tile_transform(src: np.ndarray, dst: np.ndarray, src_at: np.ndarray, dst_at: np.ndarray, src_image: int,
                   dst_image: int, kind: np.ndarray, target: np.ndarray, source: np.ndarray, coef: np.ndarray,
                   mode: int, bias: np.ndarray, floor: float, scratch: np.ndarray, width: int, lo: int,
                   hi: int) -> None:
    """For every image n in [lo, hi) and tile t: the side_in x side_in vectors of `width` numbers at
    n * src_image + src_at[t, cell] (cell = row * side_in + column; -1: zeros) go through X on both sides, X the
    (side_out, side_in) matrix whose nonzeros are the entries (target, source, coef; kind: SET for a target's
    first, ADD after), and output cell q meets dst at n * dst_image + dst_at[t, q] by `mode` (-1: dropped).
    scratch: (4, side, side * width) numbers, side the larger of side_in and side_out (the caller's: no
    allocation here, which would compile one more helper)."""
    w, side_in, side_out = width, round(src_at.shape[1] ** 0.5), round(dst_at.shape[1] ** 0.5)
    patch, rows, columns, result = scratch[0], scratch[1], scratch[2], scratch[3]
    for n in range(lo, hi):
        for t in range(src_at.shape[0]):
            for r in range(side_in):
                for col in range(side_in):
                    s, o = src_at[t, r * side_in + col], col * w
                    if s < 0:
                        for c in range(w):
                            patch[r, o + c] = 0.0
                        continue
                    s += n * src_image
                    if s < 0:  # never; tells LLVM that s + c is not negative: no wraparound check, a vector loop
                        continue
                    for c in range(w):
                        patch[r, o + c] = src[s + c]
            for e in range(coef.shape[0]):  # X D: a row of the tile at a time
                i, k, a = target[e], source[e], coef[e]
                if kind[e] == SET:  # a loop LLVM makes a memset, then the one loop that adds: cheaper to
                    for c in range(side_in * w):  # compile than a loop that sets and one that adds
                        rows[i, c] = 0.0
                for c in range(side_in * w):
                    rows[i, c] += a * patch[k, c]
            for i in range(side_out):  # (X D)^T
                for j in range(side_in):
                    for c in range(w):
                        columns[j, i * w + c] = rows[i, j * w + c]
            for e in range(coef.shape[0]):  # X (X D)^T = Y^T: result[j, i w + c] is cell (i, j) of Y
                i, k, a = target[e], source[e], coef[e]
                if kind[e] == SET:
                    for c in range(side_out * w):
                        result[i, c] = 0.0
                for c in range(side_out * w):
                    result[i, c] += a * columns[k, c]
            for i in range(side_out):
                for j in range(side_out):
                    d, o = dst_at[t, i * side_out + j], i * w
                    if d < 0:
                        continue
                    d += n * dst_image
                    if d < 0:
                        continue
                    if mode == ADD:
                        for c in range(w):
                            dst[d + c] += result[j, o + c]
                    else:
                        for c in range(w):
                            value = result[j, o + c] + bias[c]
                            dst[d + c] = floor if value < floor else value
