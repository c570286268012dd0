"""Winograd's tile transforms in two 1-D passes, for the larger tiles: F(3x3) and F(4x4, 3x3)'s 5x5 and 6x6 tiles.

A tile transform is Y = X D X^T for a tile D of channel vectors and a small matrix X (B^T, A^T or their
transposes). winograd.tile_map computes it as one entry of kron(X, X) per (target, source) pair, one vector of
channels each, paying its table look-ups per entry: for F(4x4) that is 484 entries a tile for B^T and 324 for
A^T, 1.5x the time of the GEMMs they feed. Here X D is X applied to whole rows of the tile, then (X D) X^T X
applied within each row, each pass a sum of X's nonzeros over cell vectors.

A cell's vectors of a group of tiles (GROUP_NUMBERS in winograd.py: 16 tiles of 32 channels) lie side by side
in scratch, so each term of a pass is one loop over the whole group (512 numbers), where one tile's vectors
(32) left the loops' setup and the table look-ups as much time as the arithmetic. The passes are bound by loads
and stores, so X's nonzeros go two at a time (a target is set by its first pair, then added to: a store per
two terms, not per term, and no separate zeroing). The planes side of a transform (the planes are one run of
consecutive tiles per cell) is read by the first pass and written by the second where it is, with no copy
through scratch; only the image side is gathered or scattered, a tile's vector at a time, by the tables (a
cell outside the image read as zero or dropped). The convnet's second layer (13x13x32 -> 64, F(4x4), batch 64,
one thread, ms a step; benchmarks/winograd_phases.py): input transform 0.43 against 0.81 for this kernel's
previous form (one tile at a time: gathered, transposed and scattered through scratch), output transform 0.42
against 0.66, output-gradient transform 0.34 against 0.68, input-gradient transform 0.35 against 0.57; the
products they feed 0.85-0.96 each. It compiles in 0.50-0.56 s CPU on an empty cache against the previous
form's 0.45-0.50 (one loop body for both passes and one scatter loop for set and add keep it there: each loop
LLVM vectorizes costs 0.03-0.08 s). A kernel with each 1-D transform written out ran an input transform in 0.14
ms in an earlier form, but its four transforms took 2.0 s to compile (every shipped spec that has a Winograd
layer compiles this kernel on its first run).
"""

from __future__ import annotations

import numba
import numpy as np

# the pairs' kinds: a target's first pair sets it, the next ones add to it
SET, ADD = 0, 1


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def tile_transform(src: np.ndarray, dst: np.ndarray, src_at: np.ndarray, dst_at: np.ndarray, src_image: int,
                   dst_image: int, src_runs: bool, dst_runs: bool, kind: np.ndarray, target: np.ndarray,
                   source: np.ndarray, coef: np.ndarray, source2: np.ndarray, coef2: np.ndarray,
                   bias: np.ndarray, floor: float, scratch: np.ndarray, width: int, lo: int, hi: int) -> None:
    """For every image n in [lo, hi) and tile t: the side_in x side_in vectors of `width` numbers at
    n * src_image + src_at[t, cell] (cell = row * side_in + column; -1: zeros) go through X on both sides, X the
    (side_out, side_in) matrix whose nonzeros come in pairs (target, source, coef, source2, coef2; kind: SET
    for a target's first pair, ADD after; a target's odd nonzero paired with itself at coef2 0), and output
    cell q is added, with bias, to the `width` numbers of dst at n * dst_image + dst_at[t, q] (-1: dropped),
    floored at `floor` (-inf: none; a NaN stays NaN): a set where the caller zeroed dst, one loop for both (a
    loop of its own for each was 0.08 s more compiling). A pair is one loop of two loads and a store (a set)
    or three loads and a store (an add): the passes are bound by loads and stores, and a nonzero each was two
    loads and a store.

    The tiles go in groups (scratch: (3, 36 * group * width) numbers, the caller's: no allocation here, which
    would compile one more helper), a cell's vectors of the group's tiles side by side in one row of scratch,
    so that both passes run over a cell of the whole group at once. src_runs (dst_runs): the source's
    (target's) vectors of a cell of consecutive tiles lie one after the other, none at -1, as in the planes
    (tile t of image n is row n * tiles + t of every plane): the first pass reads such a source where it is, and
    the second pass writes such a target where it is (set: bias and floor apply to a target of cells), no
    copy through scratch. bias: `width` numbers."""
    w, side_in, side_out = width, round(src_at.shape[1] ** 0.5), round(dst_at.shape[1] ** 0.5)
    span = scratch.shape[1] // 36  # one cell's numbers: the group's vectors side by side
    group, tiles = span // w, src_at.shape[0]
    patch, rows, result = scratch[0], scratch[1], scratch[2]
    # a source of runs is read where it is, a target of runs written where it is: no copy of either
    cells = src if src_runs else patch
    into = dst if dst_runs else result
    n0, t0 = lo, -group  # the group's first tile: tile t0 of image n0 (no divmod: cheaper to compile)
    for first in range(lo * tiles, hi * tiles, group):
        t0 += group
        while t0 >= tiles:
            n0, t0 = n0 + 1, t0 - tiles
        count = hi * tiles - first
        if count > group:
            count = group
        length = count * w
        if not src_runs:
            for q in range(side_in * side_in):
                n, t = n0, t0 - 1
                for g in range(count):
                    t += 1
                    if t == tiles:
                        n, t = n + 1, 0
                    s, o = src_at[t, q], q * span + g * w
                    if o < 0:  # never; tells LLVM that o + c is not negative: no wraparound check, a vector loop
                        continue
                    if s < 0:
                        for c in range(w):
                            patch[o + c] = 0.0
                        continue
                    s += n * src_image
                    if s < 0:  # never, as o
                        continue
                    for c in range(w):
                        patch[o + c] = src[s + c]
        # X D by rows of cells (a cell at a time), then (X D) X^T a cell at a time: one loop body for both
        # passes (each loop LLVM vectorizes is compile time)
        for second in range(2):
            frm, to = (rows, into) if second else (cells, rows)
            for outer in range(side_out if second else side_in):
                for e in range(coef.shape[0]):
                    if second:  # outer: row i of X D; the pair's cells (i, source) -> (i, target)
                        q = outer * side_out + target[e]
                        j = dst_at[t0, q] + n0 * dst_image if dst_runs else q * span
                        k, k2 = (outer * side_in + source[e]) * span, (outer * side_in + source2[e]) * span
                    else:  # outer: a column; the pair's cells (source, column) -> (target, column)
                        q, q2 = source[e] * side_in + outer, source2[e] * side_in + outer
                        k = src_at[t0, q] + n0 * src_image if src_runs else q * span
                        k2 = src_at[t0, q2] + n0 * src_image if src_runs else q2 * span
                        j = (target[e] * side_in + outer) * span
                    a, b = coef[e], coef2[e]
                    if j < 0 or k < 0 or k2 < 0:  # never, as o
                        continue
                    if kind[e] == SET:
                        for c in range(length):
                            to[j + c] = a * frm[k + c] + b * frm[k2 + c]
                    else:
                        for c in range(length):
                            to[j + c] += a * frm[k + c] + b * frm[k2 + c]
        if dst_runs:
            continue
        for q in range(side_out * side_out):
            n, t = n0, t0 - 1
            for g in range(count):
                t += 1
                if t == tiles:
                    n, t = n + 1, 0
                d, o = dst_at[t, q], q * span + g * w
                if d < 0 or o < 0:
                    continue
                d += n * dst_image
                if d < 0:
                    continue
                for c in range(w):
                    value = dst[d + c] + result[o + c] + bias[c]
                    dst[d + c] = floor if value < floor else value
