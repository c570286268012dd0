"""Winograd F(m x m, 3x3) convolutions (m = 2, 3, 4) for 3x3 stride-1 kernels, channels-last, and their adjoint.

Each m x m block of outputs (a tile) is A^T [(G w G^T) * (B^T d B)] A for its (m + 2) x (m + 2) input patch d:
(m + 2)^2 products per tile and channel pair instead of 9 m^2 (Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks", 2015): F(2x2) 16 for 4 outputs, F(3x3) 25 for 9, F(4x4) 36 for 16. The
products over channels are (m + 2)^2 GEMMs, (tiles, C) @ (C, F), which NumPy runs. The backward pass is the
exact adjoint of the same computation, so it reuses the forward's transformed input: the output gradient goes
through A into the planes, two sets of GEMMs give the planes' gradients, and the input planes go back through B
into overlapping patches. F(2x2)'s matrices are the classic ones (coefficients 0, 1, -1, 1/2); F(3x3) and F(4x4)
come from cook_toom on the points 0, 1, -1, 1/2 and 0, 1, -1, 2, -2 (Lavin and Gray's F(4x4)). Larger tiles lose
float32 accuracy to their larger coefficients (ops/conv.py winograd_fits has the figures).

The batch runs in blocks of about BLOCK_CELLS plane rows (whole images), each block from one transform through
its GEMMs to the next while its planes are still in the core's cache, and the blocks in parts, one a thread
(parts.in_parts): the transform kernels and NumPy's matmul both release the GIL, so the parts run side by side,
each on one core with NumPy's OpenBLAS held to one thread (blas.one_thread). Against the transforms on threads
and the batch's GEMMs on OpenBLAS's two threads one after the other, the convnet's second layer by F(2x2) went
from 2.1-2.2/3.4-3.6 to 1.6-1.8/2.6-3.1 ms forward/backward. Numba kernels calling np.dot per block were
slower (SciPy's BLAS) and took 1.6 s more to compile.

Every transform around the GEMMs is one linear map per tile with small constant coefficients. For F(2x2) one
kernel, tile_map, runs all four from a list of entries (target, source, coefficient) of kron(X, X) and per-tile
tables of where each source and target vector (one row of channels) starts: 0.26 s of compiling on an empty
Numba cache against 2.2 s for four unrolled kernels (benchmarks/compile_time.py, the MNIST convnet). For the
larger tiles kron(X, X) has hundreds of entries, and winograd_separable's kernel runs X D X^T as two passes of
1-D pairs of nonzeros instead, on the same tables (SEPARABLE), over groups of tiles. The tables are NumPy,
built once per shape and kept (table_set's cache), for one image: image n's vectors start n image sizes further
on.

Tile t = (n * tiles_h + th) * tiles_w + tw covers outputs (m th, m tw) .. (m th + m - 1, m tw + m - 1) and
reads the input from (m th - pad_top, m tw - pad_left); cells outside the image read as zero (adjoint: are
dropped), outputs past out_h, out_w are not written (adjoint: have no gradient): their table entry is -1. Plane
e = (m + 2) a + b holds element (a, b) of a tile. The innermost loop runs over channels, contiguous in the
images and the planes, so it vectorizes. Images are independent: the kernels run over images [lo, hi); one
image's tiles overlap in the input, so its patches are added by one thread.
"""

from __future__ import annotations

import functools
import threading
from typing import NamedTuple

import numba
import numpy as np

from dlcli.kernels.conv import RELU, TANH, activation_grad_and_bias_sum
from dlcli.kernels.parts import in_parts
from dlcli.kernels.winograd_matrices import ADD, ADD_BIAS_FLOOR, SET, TRANSFORMS, Entries, Pairs, pairs
from dlcli.kernels.winograd_separable import tile_transform


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
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


def plane_rows(tiles: int) -> int:
    """Rows (tiles) between planes of (planes * plane_rows, channels): an odd number. The transforms touch all 16
    planes at once; planes a multiple of 4 KiB apart fall in the same cache sets and evict each other (4.8 ms
    against 0.6 to write the output-gradient planes of the convnet's second layer, measured here). An odd
    number of rows of 32 or 64 channels puts the 16 planes in 16 different sets of a 4 KiB way."""
    return tiles | 1


class Tables(NamedTuple):
    """Where one image's tile vectors start, per tile (rows) and cell or plane (columns), from the image's own
    start; -1: outside the image. Image n's vectors start n * (its size) further on."""

    cells: np.ndarray  # (tiles, alpha^2): the input patch's cells in an image (H, W, C), flat
    outputs: np.ndarray  # (tiles, m^2): the output cells in an output image (out_h, out_w, F), flat
    in_planes: np.ndarray  # (tiles, alpha^2): the planes of C channels
    out_planes: np.ndarray  # (tiles, alpha^2): the planes of F channels


@functools.lru_cache(maxsize=64)
def table_set(n: int, height: int, width: int, channels: int, filters: int, pad_top: int, pad_left: int,
              out_h: int, out_w: int, m: int = 2) -> Tables:
    """The tables of one image of a convolution's shapes in tiles of m x m outputs, for a batch of n (the
    planes' stride depends on it); cached: a training run meets two batch sizes per layer. A few hundred bytes
    per tile of one image."""
    alpha = m + 2
    tiles_h, tiles_w = tiles(out_h, out_w, m)
    th, tw = np.divmod(np.arange(tiles_h * tiles_w), tiles_w)
    cells = np.empty((len(th), alpha * alpha), np.int64)
    for i in range(alpha):
        for j in range(alpha):
            row, col = m * th + i - pad_top, m * tw + j - pad_left
            inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
            cells[:, alpha * i + j] = np.where(inside, (row * width + col) * channels, -1)
    outputs = np.empty((len(th), m * m), np.int64)
    for i in range(m):
        for j in range(m):
            row, col = m * th + i, m * tw + j
            outputs[:, m * i + j] = np.where((row < out_h) & (col < out_w), (row * out_w + col) * filters, -1)
    count, t = n * len(th), np.arange(len(th))[:, None]
    in_planes = (np.arange(alpha * alpha) * plane_rows(count) + t) * channels
    out_planes = (np.arange(alpha * alpha) * plane_rows(count) + t) * filters
    for table in (cells, outputs, in_planes, out_planes):
        table.flags.writeable = False  # shared by every call with these shapes
    return Tables(cells, outputs, in_planes, out_planes)


def tiles(out_h: int, out_w: int, m: int = 2) -> tuple[int, int]:
    """Tiles of m x m down and across that cover an (out_h, out_w) output."""
    return -(-out_h // m), -(-out_w // m)


def _forward_part(x: np.ndarray, v: np.ndarray, v_planes: np.ndarray, u: np.ndarray, out: np.ndarray,
                  m: np.ndarray, m_planes: np.ndarray, bias: np.ndarray, floor: np.floating, into: Entries,
                  outof: Entries, rows: Rows | None, at: Tables, block_at: Tables, sizes: tuple[int, ...],
                  lo: int, hi: int) -> None:
    """Parts [lo, hi) of the forward, each a run of blocks of images: a block's input planes go into v (the
    batch's, kept for backward), its products into the part's scratch m[p], and through the output
    transform (+ bias, floor) into out while they are still in cache. Runs on a parts thread: tile_map and
    NumPy's matmul release the GIL. rows: the 1-D transforms for winograd_separable (the larger tiles), None
    for tile_map's entries. sizes: see _plan."""
    images, per_image, channels, filters, x_image, out_image, block, _, _, parts, _ = sizes
    blocks = -(-images // block)
    for p in range(lo, hi):
        for b in range(p * blocks // parts, (p + 1) * blocks // parts):
            first, last = b * block, min(b * block + block, images)
            tiles_of = slice(first * per_image, last * per_image)
            if rows is not None:
                _separable(rows.bt, x, v, at.cells, at.in_planes, x_image, per_image * channels, None, floor,
                           channels, first, last, True)
            else:
                tile_map(x, v, at.cells, at.in_planes, x_image, per_image * channels, into.kind, into.source,
                         into.target, into.coef, bias, floor, channels, first, last)
            np.matmul(v_planes[:, tiles_of], u, out=m_planes[p][:, :tiles_of.stop - tiles_of.start])
            if rows is not None:
                out[first * out_image:last * out_image] = 0.0  # the transform adds (one loop for set and add)
                _separable(rows.at, m[p], out[first * out_image:], block_at.out_planes, block_at.outputs,
                           per_image * filters, out_image, bias, floor, filters, 0, last - first, False)
            else:
                tile_map(m[p], out[first * out_image:], block_at.out_planes, block_at.outputs, per_image * filters,
                         out_image, outof.kind, outof.source, outof.target, outof.coef, bias, floor, filters, 0,
                         last - first)


def _backward_part(d_out: np.ndarray, out: np.ndarray, activation: int, v_planes: np.ndarray, u_t: np.ndarray,
                   d_x: np.ndarray, du: np.ndarray, d_bias: np.ndarray, d: np.ndarray, d_rows: np.ndarray,
                   dm: np.ndarray, dm_planes: np.ndarray, dv: np.ndarray, dv_planes: np.ndarray, no_bias: np.ndarray,
                   floor: np.floating, need_x: bool, need_kernel: bool, outof_adjoint: Entries,
                   into_adjoint: Entries, rows: Rows | None, block_at: Tables, sizes: tuple[int, ...], lo: int,
                   hi: int) -> None:
    """Parts [lo, hi) of the backward, block by block as _forward_part: the activation's gradient (from the
    output) and block b's bias sum into d_bias[b] in one pass over the block's rows of d_out and out, the
    output-gradient transform into the part's planes dm[p], block b's kernel-plane gradient into du[b] (blocks
    summed after), the input planes' gradient (over u_t: the kernel planes transposed) and its transform back
    into the block's images of d_x (set here: a block's images are sums of its own tiles' patches only)."""
    images, per_image, channels, filters, x_image, out_image, block, _, _, parts, _ = sizes
    blocks, cells = -(-images // block), out_image // filters
    for p in range(lo, hi):
        for b in range(p * blocks // parts, (p + 1) * blocks // parts):
            first, last = b * block, min(b * block + block, images)
            tiles_of = slice(first * per_image, last * per_image)
            gradients = dm_planes[p][:, :tiles_of.stop - tiles_of.start]
            activation_grad_and_bias_sum(d_out[first * cells:last * cells], out[first * cells:last * cells],
                                         d_rows[p][:(last - first) * cells], d_bias[b], activation)
            if rows is not None:
                _separable(rows.a, d[p], dm[p], block_at.outputs, block_at.out_planes, out_image,
                           per_image * filters, None, floor, filters, 0, last - first, True)
            else:
                tile_map(d[p], dm[p], block_at.outputs, block_at.out_planes, out_image, per_image * filters,
                         outof_adjoint.kind, outof_adjoint.source, outof_adjoint.target, outof_adjoint.coef,
                         no_bias, floor, filters, 0, last - first)
            if need_kernel:
                np.matmul(v_planes[:, tiles_of].transpose(0, 2, 1), gradients, out=du[b])
            if need_x:
                np.matmul(gradients, u_t, out=dv_planes[p][:, :tiles_of.stop - tiles_of.start])
                d_x[first * x_image:last * x_image] = 0.0
                if rows is not None:
                    _separable(rows.b, dv[p], d_x[first * x_image:], block_at.in_planes, block_at.cells,
                               per_image * channels, x_image, None, floor, channels, 0, last - first, False)
                else:
                    tile_map(dv[p], d_x[first * x_image:], block_at.in_planes, block_at.cells, per_image * channels,
                             x_image, into_adjoint.kind, into_adjoint.source, into_adjoint.target,
                             into_adjoint.coef, no_bias, floor, channels, 0, last - first)


# plane rows (tiles x planes) per block of images: a block's planes go from one transform through the products
# to the next while they are still in cache. F(2x2): 288 tiles of 16 planes (8 images of the convnet's second
# layer): 1.94/3.35 ms forward/backward against 1.96/3.48 with 144 tiles, 2.10/3.47 with 576, 2.80/3.96 with 1152
# (one locked run, alternating, a loaded machine); F(4x4) the same bytes: 128 tiles of 36 planes
BLOCK_CELLS = 288 * 16

# each calling thread's scratch (the precompiling thread may run a layer beside training), kept across calls:
# a block's products and plane gradients per part; nothing in it outlives the call that fills it
_SCRATCH = threading.local()


def _scratch(role: str, parts: int, rows: int, width: int, dtype: np.dtype,
             planes: int) -> tuple[np.ndarray, np.ndarray]:
    """This thread's scratch for `role`: `planes` planes of `rows` rows (plane_rows apart) per part, as (parts,
    numbers) for tile_map and as (parts, planes, rows, width) for matmul; reused by the next call with that
    role."""
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    kept = buffers.get((role, dtype))
    size = parts * planes * rows * width
    if kept is None or kept.size < size:
        kept = buffers[(role, dtype)] = np.empty(size, dtype)
    return kept[:size].reshape(parts, -1), kept[:size].reshape(parts, planes, rows, width)


@functools.lru_cache(maxsize=8)
def _entries(m: int, dtype: np.dtype) -> tuple[Entries, Entries, Entries, Entries]:
    """F(m x m, 3x3)'s into, outof, outof_adjoint, into_adjoint with coefficients in dtype."""
    t = TRANSFORMS[m]
    return tuple(e._replace(coef=e.coef.astype(dtype)) for e in (t.into, t.outof, t.outof_adjoint, t.into_adjoint))


class Rows(NamedTuple):
    """One F(m x m, 3x3)'s 1-D transforms as winograd_separable's pairs of nonzeros."""

    bt: Pairs  # B^T: input tile -> planes
    at: Pairs  # A^T: planes -> output tile
    a: Pairs  # A: output gradients -> planes
    b: Pairs  # B: plane gradients -> input tile


# the tiles whose transforms run in two 1-D passes (winograd_separable), where tile_map's kron entries are many:
# the convnet's 13x13x32 -> 64 layer, batch 64, one thread, forward/backward ms: F(3x3) 1.94/3.05 against
# 2.69/3.78 on tile_map; its 5x5x64 -> 128 layer 0.39/0.72 against 0.46/0.77. F(2x2) (64 entries a tile) ran
# the same either way (2.47/3.98 against 2.41/3.95, winograd_separable's first form) and stays on tile_map
SEPARABLE = {3, 4}


@functools.lru_cache(maxsize=8)
def _rows(tile: int, dtype: np.dtype) -> Rows | None:
    """F(tile x tile)'s Rows with coefficients in dtype, or None for a tile that runs on tile_map."""
    if tile not in SEPARABLE:
        return None
    t = TRANSFORMS[tile]
    return Rows(*(e._replace(coef=e.coef.astype(dtype), coef2=e.coef2.astype(dtype))
                  for e in map(pairs, (t.bt, t.at, t.at.T, t.bt.T))))  # B^T, A^T and their adjoints


# numbers of one cell of a group of tiles in winograd_separable's scratch (tiles: GROUP_NUMBERS // channels;
# scratch 3 x 36 cells of it a thread, 216 KiB in float32: the core's L2). The convnet's second layer, one
# thread, forward/backward min ms over 120 steps alternating: 1.62/2.75 at 512, 1.69/2.81 at 256, 1.89/3.02 at
# 128, 1.72/2.88 at 1024
GROUP_NUMBERS = 512


def _separable(e: Pairs, src: np.ndarray, dst: np.ndarray, src_at: np.ndarray, dst_at: np.ndarray,
               src_image: int, dst_image: int, bias: np.ndarray | None, floor: np.floating, width: int,
               lo: int, hi: int, into_planes: bool) -> None:
    """winograd_separable.tile_transform by the 1-D transform e (a tile's sides: the tables' widths' roots), with
    this thread's scratch. into_planes: from an image into planes, which are set; else from planes, added into
    an image (zeroed by the caller for a set) with bias and floor; bias None: a zero bias, no floor."""
    span = max(1, GROUP_NUMBERS // width) * width
    scratch = _SCRATCH.__dict__.setdefault("tiles", {})
    kept = scratch.get(src.dtype)
    if kept is None or kept.size < 3 * 36 * span:
        kept = scratch[src.dtype] = np.empty(3 * 36 * span, src.dtype)
    if bias is None:  # a zero bias, kept with the scratch: no allocation per block
        bias = scratch.get((src.dtype, width))
        if bias is None:
            bias = scratch[(src.dtype, width)] = np.zeros(width, src.dtype)
        floor = src.dtype.type(-np.inf)
    tile_transform(src, dst, src_at, dst_at, src_image, dst_image, not into_planes, into_planes, e.kind, e.target,
                   e.source, e.coef, e.source2, e.coef2, bias, floor, kept[:3 * 36 * span].reshape(3, 36 * span),
                   width, lo, hi)


class Plan(NamedTuple):
    """One convolution's shapes as the parts take them."""

    at: Tables  # the batch's tables (the input planes v span the batch)
    block_at: Tables  # one block's tables (the scratch planes hold one block)
    sizes: tuple[int, ...]  # images, tiles per image, C, F, x and output image sizes (numbers), images per
    # block, rows between the batch's planes and between a block's planes, parts, planes (alpha^2)


@functools.lru_cache(maxsize=64)
def _plan(x_shape: tuple[int, ...], filters: int, pad_top: int, pad_left: int, out_h: int, out_w: int,
          threads: int, block_cells: int, m: int) -> Plan:
    """The tables and sizes of one convolution's shapes in F(m x m) tiles, on `threads` threads, in blocks of
    about block_cells plane rows (at least one image); cached: a training run meets two batch sizes per layer."""
    n, height, width, channels = x_shape
    tiles_h, tiles_w = tiles(out_h, out_w, m)
    per_image, planes = tiles_h * tiles_w, (m + 2) ** 2
    # at least one block a thread: a batch of few tiles (one per image, as a 3x3 output in F(4x4)) still splits
    block = min(-(-n // threads), max(1, block_cells // (planes * per_image)))
    parts = max(1, min(threads, -(-n // block)))
    at = table_set(n, height, width, channels, filters, pad_top, pad_left, out_h, out_w, m)
    block_at = table_set(block, height, width, channels, filters, pad_top, pad_left, out_h, out_w, m)
    return Plan(at, block_at, (n, per_image, channels, filters, height * width * channels, out_h * out_w * filters,
                               block, plane_rows(n * per_image), plane_rows(block * per_image), parts, planes))


def forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, activation: int, pad_top: int, pad_left: int,
            out_h: int, out_w: int, tile: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(activation(conv(x, kernel) + bias) as (N, out_h, out_w, F), the input planes, the kernel planes) for
    x (N, H, W, C) and a 3x3 kernel (3, 3, C, F) by F(tile x tile, 3x3); the planes are what backward needs (the
    input planes a fresh array each call: an op's planes stay valid until its backward, whatever runs in
    between)."""
    from dlcli.kernels import blas

    x = np.ascontiguousarray(x)
    n, channels, filters, dtype = x.shape[0], x.shape[3], kernel.shape[3], x.dtype
    plan = _plan(x.shape, filters, pad_top, pad_left, out_h, out_w, numba.get_num_threads(), BLOCK_CELLS, tile)
    s = plan.sizes
    v = np.empty((s[10], s[7], channels), dtype)
    u = (TRANSFORMS[tile].g2.astype(dtype) @ kernel.reshape(9, -1).astype(dtype, copy=False)).reshape(
        s[10], channels, filters)
    out = np.empty((n, out_h, out_w, filters), dtype)
    m, m_planes = _scratch("products", s[9], s[8], filters, dtype, s[10])
    into, outof, _, _ = _entries(tile, dtype)
    # relu is a floor of 0 in the kernel; tanh (rare on a convolution) one NumPy pass after it
    floor = dtype.type(0.0 if activation == RELU else -np.inf)
    with blas.one_thread(numpy=True):  # each part's products are small: one core's BLAS each
        in_parts(_forward_part, s[9], x.reshape(-1), v.reshape(-1), v, u, out.reshape(-1), m, m_planes,
                 np.ascontiguousarray(bias, dtype), floor, into, outof, _rows(tile, dtype), plan.at,
                 plan.block_at, s)
    if activation == TANH:
        np.tanh(out, out=out)
    return out, v, u


def backward(d_out: np.ndarray, out: np.ndarray, activation: int, v: np.ndarray, u: np.ndarray,
             x_shape: tuple[int, ...], pad_top: int, pad_left: int, need_x: bool, need_kernel: bool,
             tile: int = 2) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """(input gradient, kernel gradient, bias gradient) from d_out (N, out_h, out_w, F), the gradient of
    forward's output `out` (after its activation, whose gradient is taken here), and forward's planes (of the
    same tile); None for one not needed."""
    from dlcli.kernels import blas

    n, out_h, out_w, filters = d_out.shape
    channels, dtype = x_shape[3], d_out.dtype
    plan = _plan(tuple(x_shape), filters, pad_top, pad_left, out_h, out_w, numba.get_num_threads(), BLOCK_CELLS,
                 tile)
    s, parts, planes = plan.sizes, plan.sizes[9], plan.sizes[10]
    d, d_rows = _scratch("output gradients", parts, s[6] * out_h * out_w, filters, dtype, planes=1)
    dm, dm_planes = _scratch("product gradients", parts, s[8], filters, dtype, planes)
    dv, dv_planes = _scratch("input plane gradients", parts, s[8], channels, dtype, planes)
    blocks = -(-n // s[6])
    du, d_bias = np.empty((blocks, planes, channels, filters), dtype), np.empty((blocks, filters), dtype)  # summed
    d_x = np.empty(x_shape, dtype) if need_x else np.empty(0, dtype)
    _, _, outof_adjoint, into_adjoint = _entries(tile, dtype)
    u_t = np.ascontiguousarray(u.transpose(0, 2, 1))
    with blas.one_thread(numpy=True):
        in_parts(_backward_part, parts, np.ascontiguousarray(d_out).reshape(-1, filters),
                 np.ascontiguousarray(out, dtype).reshape(-1, filters), activation, v, u_t, d_x.reshape(-1), du,
                 d_bias, d, d_rows[:, 0], dm, dm_planes, dv, dv_planes, np.zeros(max(channels, filters), dtype),
                 dtype.type(-np.inf), need_x, need_kernel, outof_adjoint, into_adjoint, _rows(tile, dtype),
                 plan.block_at, s)
    d_kernel = None
    if need_kernel:
        d_kernel = (TRANSFORMS[tile].g2.T.astype(dtype) @ du.sum(axis=0).reshape(planes, -1)).reshape(
            3, 3, channels, filters)
    return d_x if need_x else None, d_kernel, d_bias.sum(axis=0)
