"""Winograd F(2x2, 3x3) transforms for 3x3 stride-1 convolutions, channels-last, and their adjoints.

Each 2x2 block of outputs (a tile) is A^T [(G w G^T) * (B^T d B)] A for its 4x4 input patch d: 16 products
per tile and channel pair instead of 36 (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
2015). The 16 elementwise products over channels are 16 GEMMs, (tiles, C) @ (C, F), which NumPy runs; these
kernels are the transforms around them. The backward pass is the exact adjoint of the same computation, so
it reuses the forward's transformed input: the output gradient goes through A (4x2) into the 16 planes, two
sets of 16 GEMMs give the planes' gradients, and the input planes go back through B into overlapping patches.

Tile t = (n * tiles_h + th) * tiles_w + tw covers outputs (2 th, 2 tw) .. (2 th + 1, 2 tw + 1) and reads the
input from (2 th - pad_top, 2 tw - pad_left); cells outside the image read as zero (adjoint: are dropped),
outputs past out_h, out_w are not written (adjoint: have no gradient). Plane e = 4 a + b holds element (a, b)
of a tile. The innermost loop runs over channels, contiguous in both the images and the planes, so it
vectorizes. Kernels take images [lo, hi) last, to run on threads (parts.in_parts); one image's tiles
overlap in the input, so its patches are added by one thread.
"""

from __future__ import annotations

import numba
import numpy as np

from dlcli.kernels.conv import RELU, TANH
from dlcli.kernels.parts import in_parts

def planes(tiles: int, channels: int, dtype: np.dtype) -> np.ndarray:
    """An empty (16, tiles, channels) array whose planes start 5 cache lines past a multiple of 4 KiB apart.

    The transforms read or write all 16 planes at once; planes a multiple of 4 KiB apart fall in the same cache
    sets and evict each other: 4.8 ms against 0.6 to write the output-gradient planes of the convnet's second
    layer (measured here). The offsets 5 k lines (k < 16) are distinct modulo the 64 sets of a 4 KiB way.
    """
    itemsize = np.dtype(dtype).itemsize
    stride = -(-tiles * channels * itemsize // 4096) * 4096 + 5 * 64
    flat = np.empty(15 * stride // itemsize + tiles * channels, dtype)
    return np.lib.stride_tricks.as_strided(flat, (16, tiles, channels), (stride, channels * itemsize, itemsize))


# G (4x3): the kernel transform, applied once per step in NumPy (the kernel is 9 * C * F numbers)
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


@numba.njit(cache=True, error_model="numpy", nogil=True)
def input_planes(x: np.ndarray, v: np.ndarray, pad_top: int, pad_left: int, tiles_h: int, tiles_w: int, lo: int,
                 hi: int) -> None:
    """v[4a + b, t, c] = (B^T d B)[a, b] for the 4x4 patch d of every tile t of images [lo, hi)."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    d = np.zeros((4, 4, channels), x.dtype)
    for n in range(lo, hi):
        for th in range(tiles_h):
            for tw in range(tiles_w):
                t = (n * tiles_h + th) * tiles_w + tw
                top, left = 2 * th - pad_top, 2 * tw - pad_left
                for i in range(4):
                    for j in range(4):
                        inside = 0 <= top + i < height and 0 <= left + j < width
                        for c in range(channels):
                            d[i, j, c] = x[n, top + i, left + j, c] if inside else 0.0
                for c in range(channels):
                    # rows: B^T d
                    r00 = d[0, 0, c] - d[2, 0, c]
                    r01 = d[0, 1, c] - d[2, 1, c]
                    r02 = d[0, 2, c] - d[2, 2, c]
                    r03 = d[0, 3, c] - d[2, 3, c]
                    r10 = d[1, 0, c] + d[2, 0, c]
                    r11 = d[1, 1, c] + d[2, 1, c]
                    r12 = d[1, 2, c] + d[2, 2, c]
                    r13 = d[1, 3, c] + d[2, 3, c]
                    r20 = d[2, 0, c] - d[1, 0, c]
                    r21 = d[2, 1, c] - d[1, 1, c]
                    r22 = d[2, 2, c] - d[1, 2, c]
                    r23 = d[2, 3, c] - d[1, 3, c]
                    r30 = d[1, 0, c] - d[3, 0, c]
                    r31 = d[1, 1, c] - d[3, 1, c]
                    r32 = d[1, 2, c] - d[3, 2, c]
                    r33 = d[1, 3, c] - d[3, 3, c]
                    # columns: (B^T d) B
                    v[0, t, c], v[1, t, c], v[2, t, c], v[3, t, c] = r00 - r02, r01 + r02, r02 - r01, r01 - r03
                    v[4, t, c], v[5, t, c], v[6, t, c], v[7, t, c] = r10 - r12, r11 + r12, r12 - r11, r11 - r13
                    v[8, t, c], v[9, t, c], v[10, t, c], v[11, t, c] = r20 - r22, r21 + r22, r22 - r21, r21 - r23
                    v[12, t, c], v[13, t, c], v[14, t, c], v[15, t, c] = r30 - r32, r31 + r32, r32 - r31, r31 - r33


@numba.njit(cache=True, error_model="numpy", nogil=True)
def output_tiles(m: np.ndarray, bias: np.ndarray, out: np.ndarray, activation: int, tiles_h: int, tiles_w: int,
                 lo: int, hi: int) -> None:
    """out[n, 2th + i, 2tw + j, f] = activation((A^T m[:, t, f] A)[i, j] + bias[f]) for images [lo, hi)."""
    out_h, out_w, filters = out.shape[1], out.shape[2], out.shape[3]
    y = np.empty((2, 2, filters), out.dtype)
    for n in range(lo, hi):
        for th in range(tiles_h):
            for tw in range(tiles_w):
                t = (n * tiles_h + th) * tiles_w + tw
                for f in range(filters):
                    # rows: A^T m, then columns
                    s0 = m[0, t, f] + m[4, t, f] + m[8, t, f]
                    s1 = m[1, t, f] + m[5, t, f] + m[9, t, f]
                    s2 = m[2, t, f] + m[6, t, f] + m[10, t, f]
                    s3 = m[3, t, f] + m[7, t, f] + m[11, t, f]
                    u0 = m[4, t, f] - m[8, t, f] - m[12, t, f]
                    u1 = m[5, t, f] - m[9, t, f] - m[13, t, f]
                    u2 = m[6, t, f] - m[10, t, f] - m[14, t, f]
                    u3 = m[7, t, f] - m[11, t, f] - m[15, t, f]
                    y[0, 0, f] = s0 + s1 + s2 + bias[f]
                    y[0, 1, f] = s1 - s2 - s3 + bias[f]
                    y[1, 0, f] = u0 + u1 + u2 + bias[f]
                    y[1, 1, f] = u1 - u2 - u3 + bias[f]
                for i in range(2):
                    oh = 2 * th + i
                    for j in range(2):
                        ow = 2 * tw + j
                        if oh < out_h and ow < out_w:
                            for f in range(filters):
                                value = y[i, j, f]
                                if activation == RELU:
                                    value = max(value, np.float32(0.0))
                                elif activation == TANH:
                                    value = np.tanh(value)
                                out[n, oh, ow, f] = value


@numba.njit(cache=True, error_model="numpy", nogil=True)
def output_gradient_planes(d: np.ndarray, dm: np.ndarray, tiles_h: int, tiles_w: int, lo: int, hi: int) -> None:
    """dm[4a + b, t, f] = (A g A^T)[a, b] for the 2x2 block g of d (N, out_h, out_w, F) of every tile of images
    [lo, hi): the adjoint of output_tiles' transform, with zeros past the image's edge."""
    out_h, out_w, filters = d.shape[1], d.shape[2], d.shape[3]
    g = np.zeros((2, 2, filters), d.dtype)
    for n in range(lo, hi):
        for th in range(tiles_h):
            for tw in range(tiles_w):
                t = (n * tiles_h + th) * tiles_w + tw
                for i in range(2):
                    for j in range(2):
                        inside = 2 * th + i < out_h and 2 * tw + j < out_w
                        for f in range(filters):
                            g[i, j, f] = d[n, 2 * th + i, 2 * tw + j, f] if inside else 0.0
                for f in range(filters):
                    # A = [[1, 0], [1, 1], [1, -1], [0, -1]]: rows A g, then columns (A g) A^T
                    p0, p1, p2, p3 = g[0, 0, f], g[0, 0, f] + g[1, 0, f], g[0, 0, f] - g[1, 0, f], -g[1, 0, f]
                    q0, q1, q2, q3 = g[0, 1, f], g[0, 1, f] + g[1, 1, f], g[0, 1, f] - g[1, 1, f], -g[1, 1, f]
                    dm[0, t, f], dm[1, t, f], dm[2, t, f], dm[3, t, f] = p0, p0 + q0, p0 - q0, -q0
                    dm[4, t, f], dm[5, t, f], dm[6, t, f], dm[7, t, f] = p1, p1 + q1, p1 - q1, -q1
                    dm[8, t, f], dm[9, t, f], dm[10, t, f], dm[11, t, f] = p2, p2 + q2, p2 - q2, -q2
                    dm[12, t, f], dm[13, t, f], dm[14, t, f], dm[15, t, f] = p3, p3 + q3, p3 - q3, -q3


@numba.njit(cache=True, error_model="numpy", nogil=True)
def input_gradient(dv: np.ndarray, dx: np.ndarray, pad_top: int, pad_left: int, tiles_h: int, tiles_w: int,
                   lo: int, hi: int) -> None:
    """dx[n] = the sum over tiles of B dv[:, t, c] B^T added into each tile's patch, for images [lo, hi): the
    adjoint of input_planes. Overwrites dx[lo:hi]."""
    height, width, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    p = np.empty((4, 4, channels), dx.dtype)
    for n in range(lo, hi):
        for ih in range(height):
            for iw in range(width):
                for c in range(channels):
                    dx[n, ih, iw, c] = 0.0
        for th in range(tiles_h):
            for tw in range(tiles_w):
                t = (n * tiles_h + th) * tiles_w + tw
                for c in range(channels):
                    # B = [[1, 0, 0, 0], [0, 1, -1, 1], [-1, 1, 1, 0], [0, 0, 0, -1]]: rows r = B dv, then r B^T
                    r00, r01, r02, r03 = dv[0, t, c], dv[1, t, c], dv[2, t, c], dv[3, t, c]
                    r30, r31, r32, r33 = -dv[12, t, c], -dv[13, t, c], -dv[14, t, c], -dv[15, t, c]
                    r10 = dv[4, t, c] - dv[8, t, c] - r30
                    r11 = dv[5, t, c] - dv[9, t, c] - r31
                    r12 = dv[6, t, c] - dv[10, t, c] - r32
                    r13 = dv[7, t, c] - dv[11, t, c] - r33
                    r20 = dv[4, t, c] + dv[8, t, c] - r00
                    r21 = dv[5, t, c] + dv[9, t, c] - r01
                    r22 = dv[6, t, c] + dv[10, t, c] - r02
                    r23 = dv[7, t, c] + dv[11, t, c] - r03
                    p[0, 0, c], p[0, 1, c], p[0, 2, c], p[0, 3, c] = r00, r01 - r02 + r03, r01 + r02 - r00, -r03
                    p[1, 0, c], p[1, 1, c], p[1, 2, c], p[1, 3, c] = r10, r11 - r12 + r13, r11 + r12 - r10, -r13
                    p[2, 0, c], p[2, 1, c], p[2, 2, c], p[2, 3, c] = r20, r21 - r22 + r23, r21 + r22 - r20, -r23
                    p[3, 0, c], p[3, 1, c], p[3, 2, c], p[3, 3, c] = r30, r31 - r32 + r33, r31 + r32 - r30, -r33
                top, left = 2 * th - pad_top, 2 * tw - pad_left
                for i in range(4):
                    for j in range(4):
                        if 0 <= top + i < height and 0 <= left + j < width:
                            for c in range(channels):
                                dx[n, top + i, left + j, c] += p[i, j, c]


# kron(G, G): row 4a + b, column 3i + j is G[a, i] G[b, j], so the 16 planes of G w G^T for every channel pair
# are one (16, 9) @ (9, C*F) product, and the kernel gradient the transposed one
G2 = np.kron(G, G)


def tiles(out_h: int, out_w: int) -> tuple[int, int]:
    """Tiles down and across that cover an (out_h, out_w) output."""
    return -(-out_h // 2), -(-out_w // 2)


def forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, activation: int, pad_top: int, pad_left: int,
            out_h: int, out_w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(activation(conv(x, kernel) + bias) as (N, out_h, out_w, F), the input planes, the kernel planes) for
    x (N, H, W, C) and a 3x3 kernel (3, 3, C, F); the planes are what backward needs."""
    n, channels, filters = x.shape[0], x.shape[3], kernel.shape[3]
    tiles_h, tiles_w = tiles(out_h, out_w)
    v = planes(n * tiles_h * tiles_w, channels, x.dtype)
    in_parts(input_planes, n, x, v, pad_top, pad_left, tiles_h, tiles_w)
    u = (G2.astype(kernel.dtype) @ kernel.reshape(9, -1)).reshape(16, channels, filters)
    m = planes(v.shape[1], filters, x.dtype)
    np.matmul(v, u, out=m)
    out = np.empty((n, out_h, out_w, filters), x.dtype)
    in_parts(output_tiles, n, m, bias, out, activation, tiles_h, tiles_w)
    return out, v, u


def backward(d: np.ndarray, v: np.ndarray, u: np.ndarray, x_shape: tuple[int, ...], pad_top: int, pad_left: int,
             need_x: bool, need_kernel: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(input gradient, kernel gradient) from d (N, out_h, out_w, F), the gradient after the activation, and
    forward's planes; None for one not needed."""
    n, filters, channels = d.shape[0], d.shape[3], v.shape[2]
    tiles_h, tiles_w = tiles(d.shape[1], d.shape[2])
    dm = planes(v.shape[1], filters, d.dtype)
    in_parts(output_gradient_planes, n, d, dm, tiles_h, tiles_w)
    d_kernel = d_x = None
    if need_kernel:
        du = np.matmul(v.transpose(0, 2, 1), dm)
        d_kernel = (G2.T.astype(d.dtype) @ du.reshape(16, -1)).reshape(3, 3, channels, filters)
    if need_x:
        dv = planes(v.shape[1], channels, d.dtype)
        np.matmul(dm, u.transpose(0, 2, 1), out=dv)
        d_x = np.empty(x_shape, d.dtype)
        in_parts(input_gradient, n, dv, d_x, pad_top, pad_left, tiles_h, tiles_w)
    return d_x, d_kernel
