"""Winograd F(2x2, 3x3) convolution for 3x3 stride-1 kernels, channels-last, and its adjoint.

Each 2x2 block of outputs (a tile) is A^T [(G w G^T) * (B^T d B)] A for its 4x4 input patch d: 16 products
per tile and channel pair instead of 36 (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
2015). The 16 elementwise products over channels are 16 GEMMs, (tiles, C) @ (C, F), which NumPy runs. The
backward pass is the exact adjoint of the same computation, so it reuses the forward's transformed input: the
output gradient goes through A (4x2) into the 16 planes, two sets of 16 GEMMs give the planes' gradients, and
the input planes go back through B into overlapping patches.

Every transform around the GEMMs is one linear map per tile with small constant coefficients (0, 1, -1), so
one kernel, tile_map, runs all four from a list of entries (target, source, coefficient) and per-tile tables
of where each source and target vector (one row of channels) starts. One small kernel to compile instead of
four unrolled ones: 0.26 s of compiling on an empty Numba cache against 2.2 s (benchmarks/compile_time.py,
the MNIST convnet), for about 0.3 ms more per forward of its second layer. The tables are NumPy, built once
per shape and kept (table_set's cache), for one image: image n's vectors start n image sizes further on.

Tile t = (n * tiles_h + th) * tiles_w + tw covers outputs (2 th, 2 tw) .. (2 th + 1, 2 tw + 1) and reads the
input from (2 th - pad_top, 2 tw - pad_left); cells outside the image read as zero (adjoint: are dropped),
outputs past out_h, out_w are not written (adjoint: have no gradient): their table entry is -1. Plane
e = 4 a + b holds element (a, b) of a tile. The innermost loop runs over channels, contiguous in the images
and the planes, so it vectorizes. Images are independent, so tile_map runs over images [lo, hi) on threads
(parts.in_parts); one image's tiles overlap in the input, so its patches are added by one thread.
"""

from __future__ import annotations

import functools
import threading
from typing import NamedTuple

import numba
import numpy as np

from dlcli.kernels.conv import RELU, TANH
from dlcli.kernels.parts import in_parts

# what an entry does to its target vector: the first one of a target sets it, the next ones add to it, and
# the last one of an output also adds the bias and applies the floor (0: a fused relu; -inf: none)
SET, ADD, ADD_BIAS_FLOOR = 0, 1, 2


@numba.njit(cache=True, error_model="numpy", nogil=True)
def tile_map(src: np.ndarray, dst: np.ndarray, src_at: np.ndarray, dst_at: np.ndarray, src_image: int,
             dst_image: int, kind: np.ndarray, source: np.ndarray, target: np.ndarray, coef: np.ndarray,
             bias: np.ndarray, floor: float, width: int, lo: int, hi: int) -> None:
    """For every image n in [lo, hi), tile t of it and entry e in order: the `width` numbers of dst from
    n * dst_image + dst_at[t, target[e]] are set to, or added (kind[e]), coef[e] times those of src from
    n * src_image + src_at[t, source[e]]. A source at -1 reads as zeros, a target at -1 is skipped; bias has
    `width` numbers."""
    for n in range(lo, hi):
        for t in range(src_at.shape[0]):
            for e in range(coef.shape[0]):
                d = dst_at[t, target[e]]
                if d < 0:
                    continue
                d += n * dst_image
                s, w, k = src_at[t, source[e]], coef[e], kind[e]
                if s < 0:
                    if k == SET:
                        for c in range(width):
                            dst[d + c] = 0.0
                    elif k == ADD_BIAS_FLOOR:
                        for c in range(width):
                            dst[d + c] = max(dst[d + c] + bias[c], floor)
                    continue
                s += n * src_image
                if s < 0 or d < 0:  # never; tells LLVM the indices below are not negative: no wraparound
                    continue        # check per element, so the loops vectorize (2x faster, measured here)
                if k == SET:
                    for c in range(width):
                        dst[d + c] = w * src[s + c]
                elif k == ADD:
                    for c in range(width):
                        dst[d + c] += w * src[s + c]
                else:
                    for c in range(width):
                        dst[d + c] = max(dst[d + c] + w * src[s + c] + bias[c], floor)


class Entries(NamedTuple):
    """One transform as tile_map's entry list, sorted by target (its vector stays in cache)."""

    kind: np.ndarray
    source: np.ndarray
    target: np.ndarray
    coef: np.ndarray


def entries(matrix: np.ndarray, first: int = SET, last: int = ADD) -> Entries:
    """target[i] = sum over j of matrix[i, j] source[j] as entries: each target's first nonzero `first`, its
    last one `last` (when it has two or more), the others ADD."""
    target, source = np.nonzero(matrix)  # row-major: sorted by target, then source
    kind = np.full(len(target), ADD, np.int64)
    starts = np.r_[True, target[1:] != target[:-1]]
    ends = np.r_[target[1:] != target[:-1], True]
    kind[ends & ~starts] = last
    kind[starts] = first
    return Entries(kind, source.astype(np.int64), target.astype(np.int64), matrix[target, source])


# B^T (4x4), G (4x3), A^T (2x4) of F(2x2, 3x3)
BT = np.array([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, -1.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
AT = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]])
# kron(X, X) maps a tile's 2-D block, flattened row-major, through X on both sides: plane 4a + b of B^T d B
# is kron(B^T, B^T)[4a + b] @ d.ravel(); G2 transforms the kernel (one (16, 9) @ (9, C*F) product a step)
INPUT = entries(np.kron(BT, BT))  # patch cell -> plane
OUTPUT = entries(np.kron(AT, AT), last=ADD_BIAS_FLOOR)  # plane -> output cell (+ bias, floor)
OUTPUT_GRADIENT = entries(np.kron(AT, AT).T)  # output cell -> plane: the adjoint of OUTPUT
INPUT_GRADIENT = entries(np.kron(BT, BT).T, first=ADD)  # plane -> patch cell, added: patches overlap
G2 = np.kron(G, G)


def plane_stride(tiles: int, channels: int, itemsize: int) -> int:
    """Elements between planes of (16, tiles, channels): the planes start 5 cache lines past a multiple of
    4 KiB apart. The transforms touch all 16 planes at once; planes a multiple of 4 KiB apart fall in the same
    cache sets and evict each other (4.8 ms against 0.6 to write the output-gradient planes of the convnet's
    second layer, measured here). The offsets 5 k lines (k < 16) are distinct modulo the 64 sets of a 4 KiB
    way."""
    return (-(-tiles * channels * itemsize // 4096) * 4096 + 5 * 64) // itemsize


# scratch planes (the forward's products, the backward's two sets of plane gradients) kept per thread and
# reused: fresh 5-10 MB arrays every step came from new pages once glibc's heap trimmed them, 5 ms more per
# forward + backward of the convnet's second layer in a loop of only that layer (measured here). dlcli's
# training keeps freed memory anyway (tensor/memory.py); other callers (benchmarks, predict, an embedding
# program) may not
_SCRATCH = threading.local()


def planes(tiles: int, channels: int, dtype: np.dtype, scratch: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(a flat buffer, its (16, tiles, channels) view) for one set of planes: tile_map takes the flat buffer,
    NumPy's matmul the view. A named scratch buffer is this thread's, reused by the next call with that name:
    for planes that do not outlive the call."""
    dtype = np.dtype(dtype)
    stride = plane_stride(tiles, channels, dtype.itemsize)
    size = 15 * stride + tiles * channels
    if scratch is None:
        flat = np.empty(size, dtype)
    else:
        buffers = _SCRATCH.__dict__.setdefault("buffers", {})
        kept = buffers.get((scratch, dtype))
        if kept is None or kept.size < size:
            kept = buffers[(scratch, dtype)] = np.empty(size, dtype)
        flat = kept[:size]
    view = np.lib.stride_tricks.as_strided(flat, (16, tiles, channels),
                                           (stride * dtype.itemsize, channels * dtype.itemsize, dtype.itemsize))
    return flat, view


class Tables(NamedTuple):
    """Where one image's tile vectors start, per tile (rows) and cell or plane (columns), from the image's own
    start; -1: outside the image. Image n's vectors start n * (its size) further on."""

    cells: np.ndarray  # (tiles, 16): the input patch's cells in an image (H, W, C), flat
    outputs: np.ndarray  # (tiles, 4): the output cells in an output image (out_h, out_w, F), flat
    in_planes: np.ndarray  # (tiles, 16): the 16 planes of C channels
    out_planes: np.ndarray  # (tiles, 16): the 16 planes of F channels


@functools.lru_cache(maxsize=64)
def table_set(n: int, height: int, width: int, channels: int, filters: int, pad_top: int, pad_left: int,
              out_h: int, out_w: int, itemsize: int) -> Tables:
    """The tables of one image of a convolution's shapes, for a batch of n (the planes' stride depends on it);
    cached: a training run meets two batch sizes per layer. A few hundred bytes per tile of one image."""
    tiles_h, tiles_w = tiles(out_h, out_w)
    th, tw = np.divmod(np.arange(tiles_h * tiles_w), tiles_w)
    cells = np.empty((len(th), 16), np.int64)
    for i in range(4):
        for j in range(4):
            row, col = 2 * th + i - pad_top, 2 * tw + j - pad_left
            inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
            cells[:, 4 * i + j] = np.where(inside, (row * width + col) * channels, -1)
    outputs = np.empty((len(th), 4), np.int64)
    for i in range(2):
        for j in range(2):
            row, col = 2 * th + i, 2 * tw + j
            outputs[:, 2 * i + j] = np.where((row < out_h) & (col < out_w), (row * out_w + col) * filters, -1)
    count, t = n * len(th), np.arange(len(th))[:, None]
    in_planes = np.arange(16) * plane_stride(count, channels, itemsize) + t * channels
    out_planes = np.arange(16) * plane_stride(count, filters, itemsize) + t * filters
    for table in (cells, outputs, in_planes, out_planes):
        table.flags.writeable = False  # shared by every call with these shapes
    return Tables(cells, outputs, in_planes, out_planes)


def tiles(out_h: int, out_w: int) -> tuple[int, int]:
    """Tiles down and across that cover an (out_h, out_w) output."""
    return -(-out_h // 2), -(-out_w // 2)


def _map(transform: Entries, src: np.ndarray, dst: np.ndarray, src_at: np.ndarray, dst_at: np.ndarray,
         src_image: int, dst_image: int, width: int, images: int, bias: np.ndarray | None = None,
         floor: float = -np.inf) -> None:
    """tile_map over every image, on threads; image n's part of src starts n * src_image in, of dst n *
    dst_image."""
    dtype = dst.dtype
    bias = np.zeros(width, dtype) if bias is None else bias
    in_parts(tile_map, images, src, dst, src_at, dst_at, src_image, dst_image, transform.kind,
             transform.source, transform.target, transform.coef.astype(dtype), bias, dtype.type(floor), width)


# tiles per block of images: a block's planes go from one transform through the products to the next while
# they are still in cache. 1152 tiles (32 images of the MNIST convnet's second layer) took 2.4/3.5 ms forward/
# backward against 2.5/4.0 for the whole batch of 64 at once and 2.5/3.6 for 16 images (measured here)
BLOCK_TILES = 1152


def _blocks(n: int, per_image: int) -> list[tuple[int, int]]:
    """Image ranges [lo, hi) of about BLOCK_TILES tiles each (at least one image)."""
    step = max(1, BLOCK_TILES // per_image)
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, activation: int, pad_top: int, pad_left: int,
            out_h: int, out_w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(activation(conv(x, kernel) + bias) as (N, out_h, out_w, F), the input planes, the kernel planes) for
    x (N, H, W, C) and a 3x3 kernel (3, 3, C, F); the planes are what backward needs."""
    x = np.ascontiguousarray(x)
    n, height, width, channels = x.shape
    filters = kernel.shape[3]
    tiles_h, tiles_w = tiles(out_h, out_w)
    per_image = tiles_h * tiles_w
    at = table_set(n, height, width, channels, filters, pad_top, pad_left, out_h, out_w, x.dtype.itemsize)
    v_flat, v = planes(n * per_image, channels, x.dtype)
    u = (G2.astype(kernel.dtype) @ kernel.reshape(9, -1)).reshape(16, channels, filters)
    out = np.empty((n, out_h, out_w, filters), x.dtype)
    bias = bias.astype(x.dtype, copy=False)
    # relu is a floor of 0 in the kernel; tanh (rare on a convolution) one NumPy pass after it
    floor = 0.0 if activation == RELU else -np.inf
    for lo, hi in _blocks(n, per_image):
        block = table_set(hi - lo, height, width, channels, filters, pad_top, pad_left, out_h, out_w,
                          x.dtype.itemsize)
        # the batch's planes from image lo on: the same plane stride, so the batch's tables serve
        _map(INPUT, x[lo:hi].reshape(-1), v_flat[lo * per_image * channels:], at.cells, at.in_planes,
             height * width * channels, per_image * channels, channels, hi - lo)
        m_flat, m = planes((hi - lo) * per_image, filters, x.dtype, scratch="products")
        np.matmul(v[:, lo * per_image:hi * per_image], u, out=m)
        _map(OUTPUT, m_flat, out[lo:hi].reshape(-1), block.out_planes, block.outputs, per_image * filters,
             out_h * out_w * filters, filters, hi - lo, bias, floor)
    if activation == TANH:
        np.tanh(out, out=out)
    return out, v, u


def backward(d: np.ndarray, v: np.ndarray, u: np.ndarray, x_shape: tuple[int, ...], pad_top: int, pad_left: int,
             need_x: bool, need_kernel: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(input gradient, kernel gradient) from d (N, out_h, out_w, F), the gradient after the activation, and
    forward's planes; None for one not needed."""
    d = np.ascontiguousarray(d)
    n, out_h, out_w, filters = d.shape
    height, width, channels = x_shape[1], x_shape[2], x_shape[3]
    tiles_h, tiles_w = tiles(out_h, out_w)
    per_image = tiles_h * tiles_w
    du = np.zeros((16, channels, filters), d.dtype) if need_kernel else None
    d_x = np.zeros(x_shape, d.dtype) if need_x else None  # patches overlap: every cell is a sum
    for lo, hi in _blocks(n, per_image):
        block = table_set(hi - lo, height, width, channels, filters, pad_top, pad_left, out_h, out_w,
                          d.dtype.itemsize)
        dm_flat, dm = planes((hi - lo) * per_image, filters, d.dtype, scratch="product gradients")
        _map(OUTPUT_GRADIENT, d[lo:hi].reshape(-1), dm_flat, block.outputs, block.out_planes,
             out_h * out_w * filters, per_image * filters, filters, hi - lo)
        if du is not None:
            du += np.matmul(v[:, lo * per_image:hi * per_image].transpose(0, 2, 1), dm)
        if d_x is not None:
            dv_flat, dv = planes((hi - lo) * per_image, channels, d.dtype, scratch="input plane gradients")
            np.matmul(dm, u.transpose(0, 2, 1), out=dv)
            _map(INPUT_GRADIENT, dv_flat, d_x[lo:hi].reshape(-1), block.in_planes, block.cells,
                 per_image * channels, height * width * channels, channels, hi - lo)
    d_kernel = None if du is None else (G2.T.astype(d.dtype) @ du.reshape(16, -1)).reshape(3, 3, channels, filters)
    return d_x, d_kernel
