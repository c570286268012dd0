"""The Winograd F(m x m, 3x3) convolutions (m = 2, 3, 4) against a float64 im2col one, and their backward passes
as that one's adjoint."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from dlcli.kernels import blas, conv, winograd, winograd_matrices, winograd_separable
from dlcli.ops.conv import geometry, winograd_fits

# (batch, height, width, channels, filters, padding): odd and even sizes, one image, both paddings, outputs
# smaller than one tile and not a multiple of any tile
SHAPES = [(1, 5, 5, 1, 1, "valid"), (2, 7, 6, 3, 4, "valid"), (3, 8, 9, 5, 2, "same"), (1, 4, 3, 2, 3, "same"),
          (2, 13, 13, 32, 64, "valid"), (1, 11, 10, 17, 8, "same"), (3, 5, 5, 64, 16, "valid")]
# float32 tolerance relative to the largest value, per output tile side: F(2x2)'s transforms multiply by 1 and
# 1/2 only (a few units in the last place); F(3x3)'s (points 0, 1, -1, 1/2) and F(4x4)'s (0, 1, -1, 2, -2: up
# to 8 and 1/24) lose more. Measured on these shapes: up to 1e-6, 4e-6 and 7e-6 of the largest value
TOLERANCE = {2: 2e-6, 3: 6e-6, 4: 1.2e-5}
TILES = sorted(TOLERANCE)


def direct(x: np.ndarray, kernel: np.ndarray, g) -> tuple[np.ndarray, np.ndarray]:
    """(conv(x, kernel), the patches) by im2col and one product, in x's dtype."""
    cols = np.empty((x.shape[0] * g.out_h * g.out_w, 9 * x.shape[3]), x.dtype)
    conv.im2col(x, cols, *g.args())
    return (cols @ kernel.reshape(-1, kernel.shape[3])).reshape(x.shape[0], g.out_h, g.out_w, -1), cols


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("block_tiles", [winograd.BLOCK_CELLS, 1])
@pytest.mark.parametrize("n,h,w,c,f,padding", SHAPES)
def test_winograd_matches_a_float64_direct_convolution(n, h, w, c, f, padding, block_tiles, tile,
                                                       monkeypatch) -> None:
    """Whole batches, and one image per block (block_tiles 1: several blocks, each with its own tables)."""
    monkeypatch.setattr(winograd, "BLOCK_CELLS", block_tiles)
    rng = np.random.default_rng(0)
    x64, k64, b64 = rng.normal(size=(n, h, w, c)), rng.normal(size=(3, 3, c, f)), rng.normal(size=f)
    g = geometry(h, w, (3, 3), (1, 1), (1, 1), padding)
    expected, cols = direct(x64, k64, g)
    d = rng.normal(size=expected.shape)
    expected_dk = (cols.T @ d.reshape(-1, f)).reshape(k64.shape)
    expected_dx = np.empty_like(x64)
    conv.col2im(d.reshape(-1, f) @ k64.reshape(-1, f).T, expected_dx, *g.args())
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, TOLERANCE[tile])):
        x, k, b = x64.astype(dtype), k64.astype(dtype), b64.astype(dtype)
        out, v, u = winograd.forward(x, k, b, conv.LINEAR, g.pad_top, g.pad_left, g.out_h, g.out_w, tile)
        assert out.dtype == dtype
        np.testing.assert_allclose(out, expected + b64, atol=rtol * np.abs(expected).max())
        dx, dk, db = winograd.backward(d.astype(dtype), out, conv.LINEAR, v, u, x.shape, g.pad_top, g.pad_left,
                                       True, True, tile)
        np.testing.assert_allclose(dx, expected_dx, atol=rtol * np.abs(expected_dx).max())
        np.testing.assert_allclose(dk, expected_dk, atol=rtol * np.abs(expected_dk).max())
        np.testing.assert_allclose(db, d.reshape(-1, f).sum(axis=0), atol=rtol * np.abs(d).sum(axis=(0, 1, 2)).max())


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("code,fn", [(conv.RELU, lambda z: np.maximum(z, 0)), (conv.TANH, np.tanh)])
def test_winograd_applies_the_fused_activation_and_is_deterministic(code: int, fn, tile: int) -> None:
    rng = np.random.default_rng(1)
    x, k, b = (rng.normal(size=s).astype(np.float32) for s in ((4, 9, 9, 16), (3, 3, 16, 8), (8,)))
    g = geometry(9, 9, (3, 3), (1, 1), (1, 1), "same")
    first = winograd.forward(x, k, b, code, 1, 1, 9, 9, tile)[0]
    again = winograd.forward(x, k, b, code, 1, 1, 9, 9, tile)[0]
    np.testing.assert_array_equal(first, again)
    z = direct(x.astype(np.float64), k.astype(np.float64), g)[0] + b
    # both activations change by at most as much as their input: the error stays the pre-activation's
    np.testing.assert_allclose(first, fn(z), atol=TOLERANCE[tile] * np.abs(z).max())


def test_cook_toom_gives_lavin_and_grays_f4x4_matrices() -> None:
    """F(4x4, 3x3) on the points 0, 1, -1, 2, -2: B^T, G and A^T of Lavin and Gray (2015), equation 8."""
    bt, g, at = winograd_matrices.cook_toom((0.0, 1.0, -1.0, 2.0, -2.0), 4)
    np.testing.assert_allclose(bt, [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                                    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(g, [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(at, [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                                    [0, 1, -1, 8, -8, 1]], atol=1e-12)


@pytest.mark.parametrize("tile", TILES)
def test_each_tiles_transforms_compute_a_1d_correlation(tile: int) -> None:
    """A^T [(G g) * (B^T d)] is the valid correlation of a 3-tap g over tile + 2 inputs d, for every tile, and
    the pairs winograd_separable runs are A^T's and B^T's nonzeros (and their transposes'), each once."""
    t = winograd_matrices.TRANSFORMS[tile]
    rng = np.random.default_rng(7)
    d, g = rng.normal(size=tile + 2), rng.normal(size=3)
    y = np.array([d[i:i + 3] @ g for i in range(tile)])
    np.testing.assert_allclose(t.at @ ((t.g @ g) * (t.bt @ d)), y, atol=1e-12)
    for matrix in (t.bt, t.at, t.at.T, t.bt.T):
        e, rebuilt = winograd_matrices.pairs(matrix), np.zeros_like(matrix)
        np.add.at(rebuilt, (e.target, e.source), e.coef)
        np.add.at(rebuilt, (e.target, e.source2), e.coef2)
        np.testing.assert_array_equal(rebuilt, matrix)
        assert np.all((e.source2 != e.source) | (e.coef2 == 0))  # a nonzero paired with itself adds nothing


# a target of runs is only ever set (zeroed, no bias or floor): the kernel has no sum for it, so no other case
_TRANSFORM_CASES = [(planes, zeroed, floor) for planes in ("none", "source", "target")
                    for zeroed, floor in ((False, -np.inf), (True, -np.inf), (True, 0.1), (False, 0.1))
                    if planes != "target" or (zeroed and floor == -np.inf)]


@pytest.mark.parametrize("group", [1, 2, 3])
@pytest.mark.parametrize("planes,zeroed,floor", _TRANSFORM_CASES)
def test_tile_transform_is_x_d_x_transposed_with_its_edges(zeroed: bool, floor: float, planes: str,
                                                           group: int) -> None:
    """winograd_separable's kernel against NumPy: Y = X D X^T per tile and image, D's cells at -1 read as zero,
    Y's cells at -1 not written, the others set to max(dst + Y + bias, floor) (a set where dst is zeroed), in
    groups of 1, 2 and 3 of the 3 images' 2 tiles (the last group short), with source or target cells laid
    out as planes (a group's vectors of a cell one run, read and written where they are; a target of runs is
    only ever set) or scattered."""
    rng = np.random.default_rng(8)
    width, images, tiles, side_in, side_out = 3, 3, 2, 4, 3
    x_matrix = rng.normal(size=(side_out, side_in))
    x_matrix[1, 2] = 0.0  # a zero: a row of 3 nonzeros, the odd one paired with itself
    e = winograd_matrices.pairs(x_matrix)
    src_image, dst_image = 60, 60
    src_at = rng.choice(np.arange(0, 57, 3), size=(tiles, side_in * side_in))
    dst_at = (np.arange(tiles * side_out * side_out) * width).reshape(tiles, -1)
    if planes == "source":  # cell q of tile n * tiles + t at (q * rows + n * tiles + t) * width
        src_image, src_at = tiles * width, (np.arange(side_in**2)[None, :] * 7 + np.arange(tiles)[:, None]) * width
    elif planes == "target":
        dst_image, dst_at = tiles * width, (np.arange(side_out**2)[None, :] * 7 + np.arange(tiles)[:, None]) * width
    if planes != "source":  # planes have no cell outside
        src_at[0, 5] = -1
    if planes != "target":
        dst_at[1, 4] = -1
    src = rng.normal(size=images * src_image + src_at.max() + width)
    bias = rng.normal(size=width) if floor > -np.inf else np.zeros(width)
    dst = rng.normal(size=images * dst_image + dst_at.max() + width)
    if zeroed:
        dst[:] = 0.0
    expected = dst.copy()
    for n in range(images):
        for t in range(tiles):
            d = np.array([np.zeros(width) if a < 0 else src[n * src_image + a:n * src_image + a + width]
                          for a in src_at[t]]).reshape(side_in, side_in, width)
            y = np.einsum("ik,klc,jl->ijc", x_matrix, d, x_matrix).reshape(-1, width)
            for q, a in enumerate(dst_at[t]):
                if a >= 0:
                    at = slice(n * dst_image + a, n * dst_image + a + width)
                    expected[at] = np.maximum(expected[at] + y[q] + bias, floor)
    scratch = np.full((3, 36 * group * width), np.nan)  # nothing of it is read before it is written
    winograd_separable.tile_transform(src, dst, src_at, dst_at, src_image, dst_image, planes == "source",
                                      planes == "target", e.kind, e.target, e.source, e.coef, e.source2, e.coef2,
                                      bias, floor, scratch, width, 0, images)
    np.testing.assert_allclose(dst, expected, rtol=1e-12, atol=1e-12)


def test_backward_needs_only_what_is_asked() -> None:
    rng = np.random.default_rng(2)
    x, k = rng.normal(size=(1, 6, 6, 2)), rng.normal(size=(3, 3, 2, 2))
    out, v, u = winograd.forward(x, k, np.zeros(2), conv.LINEAR, 0, 0, 4, 4)
    assert winograd.backward(np.ones_like(out), out, conv.LINEAR, v, u, x.shape, 0, 0, False, True)[0] is None
    assert winograd.backward(np.ones_like(out), out, conv.LINEAR, v, u, x.shape, 0, 0, True, False)[1] is None


def test_tile_map_sets_adds_and_skips_as_its_entries_say() -> None:
    """The one transform kernel, against the same loop in NumPy: SET overwrites whatever dst held, a source at
    -1 reads zeros, a target at -1 is never written, the last entry adds the bias and applies the floor, and
    image n's vectors are n image sizes further on."""
    rng = np.random.default_rng(3)
    width, images, src_image, dst_image = 5, 3, 12, 15
    src = rng.normal(size=40).astype(np.float32)
    src_at, dst_at = np.array([[0, 5], [-1, 7]]), np.array([[0, 5], [10, -1]])
    t = winograd_matrices.entries(np.array([[1.0, -1.0], [0.0, 1.0]]), last=winograd_matrices.ADD_BIAS_FLOOR)
    bias = rng.normal(size=width).astype(np.float32)
    dst = np.full(50, np.nan, np.float32)
    winograd.tile_map(src, dst, src_at, dst_at, src_image, dst_image, t.kind, t.source, t.target,
                      t.coef.astype(np.float32), bias, np.float32(0.0), width, 0, images)
    expected = np.full(50, np.nan, np.float32)
    for n in range(images):
        for tile in range(2):
            read = [np.zeros(width) if a < 0 else src[n * src_image + a:n * src_image + a + width]
                    for a in src_at[tile]]
            rows = [np.maximum(read[0] - read[1] + bias, 0), read[1]]  # target 0: two entries; 1: one (SET)
            for a, row in zip(dst_at[tile], rows):
                if a >= 0:
                    expected[n * dst_image + a:n * dst_image + a + width] = row
    np.testing.assert_allclose(dst, expected, rtol=1e-6)
    assert list(t.kind) == [winograd_matrices.SET, winograd_matrices.ADD_BIAS_FLOOR, winograd_matrices.SET]


def test_the_tables_cover_one_image_whatever_the_batch() -> None:
    """Tables per image, not per batch: a large batch of large images keeps a few hundred bytes per tile."""
    small, large = winograd.table_set(1, 13, 13, 32, 64, 0, 0, 11, 11), winograd.table_set(64, 13, 13, 32, 64, 0,
                                                                                                0, 11, 11)
    assert small.cells.shape == large.cells.shape == (36, 16)
    np.testing.assert_array_equal(small.cells, large.cells)
    assert large.cells[35, 15] == -1 and large.cells[0, 0] == 0  # the last tile's last cell is past the edge
    f4 = winograd.table_set(64, 13, 13, 32, 64, 0, 0, 11, 11, 4)  # F(4x4): 3x3 tiles of 6x6 cells, 4x4 outputs
    assert f4.cells.shape == f4.in_planes.shape == (9, 36) and f4.outputs.shape == (9, 16)
    assert f4.cells[4, 0] == (4 * 13 + 4) * 32 and f4.cells[8, 35] == -1 and f4.outputs[8, 15] == -1


@pytest.mark.parametrize("kernel,strides,dilation,channels,size,tile", [
    ((3, 3), (1, 1), (1, 1), 32, 13, 4), ((3, 3), (1, 1), (1, 1), 64, 5, 3), ((3, 3), (1, 1), (1, 1), 16, 8, 3),
    ((3, 3), (1, 1), (1, 1), 16, 10, 4), ((3, 3), (1, 1), (1, 1), 64, 4, None), ((3, 3), (1, 1), (1, 1), 1, 28, None),
    ((3, 3), (1, 1), (1, 1), 15, 13, None), ((3, 3), (2, 2), (1, 1), 32, 13, None),
    ((3, 3), (1, 1), (2, 2), 32, 13, None), ((5, 5), (1, 1), (1, 1), 32, 13, None)])
def test_the_shape_rule_takes_the_tile_with_fewest_multiplications(kernel, strides, dilation, channels, size,
                                                                   tile) -> None:
    """The MNIST convnet's 13x13x32 -> 64 layer by F(4x4), its 5x5x64 -> 128 by F(3x3) (one tile, 3x3 output),
    a 6x6 output by F(3x3) (four tiles, no padding: 2.78 multiplications against F(4x4)'s 4), 8x8 by F(4x4);
    im2col for a 2x2 output, few channels, strides, dilation, other kernels."""
    assert winograd_fits(geometry(size, size, kernel, strides, dilation, "valid"), channels) == tile


def test_the_ctc_specs_same_padded_conv_takes_f4x4() -> None:
    """14x70 'same' (the CTC spec's second conv): 2.64 multiplications per output by F(4x4), 3.06 by F(3x3)."""
    assert winograd_fits(geometry(14, 70, (3, 3), (1, 1), (1, 1), "same"), 32) == 4


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("code", [conv.RELU, conv.TANH])
@pytest.mark.parametrize("n,h,w,c,f,padding", [(1, 6, 5, 3, 4, "same"), (5, 13, 13, 32, 64, "valid")])
def test_the_backward_applies_the_activations_gradient_and_sums_the_bias_in_float32(n, h, w, c, f, padding,
                                                                                    code, tile) -> None:
    """The activation's gradient (from the output) and the bias sum run in the blocks: against NumPy
    from the same float32 output, in float64."""
    rng = np.random.default_rng(4)
    x, k, b = (rng.normal(size=s).astype(np.float32) for s in ((n, h, w, c), (3, 3, c, f), (f,)))
    g = geometry(h, w, (3, 3), (1, 1), (1, 1), padding)
    out, v, u = winograd.forward(x, k, b, code, g.pad_top, g.pad_left, g.out_h, g.out_w, tile)
    d_out = rng.normal(size=out.shape).astype(np.float32)
    o = out.astype(np.float64)
    d = d_out * (o > 0) if code == conv.RELU else d_out * (1 - o * o)
    assert (o == 0).any() if code == conv.RELU else True  # the mask matters
    _, cols = direct(x.astype(np.float64), k.astype(np.float64), g)
    expected_dk = (cols.T @ d.reshape(-1, f)).reshape(k.shape)
    expected_dx = np.empty(x.shape)
    conv.col2im(d.reshape(-1, f) @ k.astype(np.float64).reshape(-1, f).T, expected_dx, *g.args())
    dx, dk, db = winograd.backward(d_out, out, code, v, u, x.shape, g.pad_top, g.pad_left, True, True, tile)
    assert dx.dtype == dk.dtype == db.dtype == np.float32
    tolerance = TOLERANCE[tile]
    np.testing.assert_allclose(dx, expected_dx, atol=tolerance * np.abs(expected_dx).max())
    np.testing.assert_allclose(dk, expected_dk, atol=tolerance * np.abs(expected_dk).max())
    np.testing.assert_allclose(db, d.reshape(-1, f).sum(axis=0), atol=2e-6 * np.abs(d).sum(axis=(0, 1, 2)).max())


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("block_tiles", [winograd.BLOCK_CELLS, 1])
def test_parts_on_two_threads_give_what_one_thread_gives(block_tiles, tile, monkeypatch) -> None:
    """Blocks split over two threads, each with its scratch row and its partial kernel and bias sums."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one Numba thread: nothing to split")
    monkeypatch.setattr(winograd, "BLOCK_CELLS", block_tiles)
    rng = np.random.default_rng(5)
    x, k, b = (rng.normal(size=s) for s in ((7, 9, 8, 5), (3, 3, 5, 6), (6,)))
    d_out = rng.normal(size=(7, 9, 8, 6))
    results = []
    for threads in (1, 2):
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            out, v, u = winograd.forward(x, k, b, conv.RELU, 1, 1, 9, 8, tile)
            results.append((out, *winograd.backward(d_out, out, conv.RELU, v, u, x.shape, 1, 1, True, True, tile)))
        finally:
            numba.set_num_threads(previous)
    for one, two in zip(*results):
        np.testing.assert_allclose(two, one, rtol=1e-12, atol=1e-12)


def test_planes_stay_valid_while_another_convolution_of_the_same_shape_runs() -> None:
    """Two layers of one shape: both forwards, then both backwards (and a forward without a backward, as in
    evaluation, between them) give each layer its own gradients."""
    rng = np.random.default_rng(6)
    xs, ks = rng.normal(size=(2, 3, 7, 7, 4)).astype(np.float32), rng.normal(size=(2, 3, 3, 4, 5)).astype(np.float32)
    b, d_out = np.zeros(5, np.float32), rng.normal(size=(3, 5, 5, 5)).astype(np.float32)

    def step(i: int, forward: tuple) -> tuple:
        return winograd.backward(d_out, forward[0], conv.RELU, forward[1], forward[2], xs[i].shape, 0, 0, True, True)

    alone = [step(i, winograd.forward(xs[i], ks[i], b, conv.RELU, 0, 0, 5, 5)) for i in (0, 1)]
    first, second = (winograd.forward(xs[i], ks[i], b, conv.RELU, 0, 0, 5, 5) for i in (0, 1))
    winograd.forward(xs[1] * 2, ks[0], b, conv.RELU, 0, 0, 5, 5)  # an evaluation step in between
    for expected, got in zip(alone, (step(0, first), step(1, second))):
        for a, c in zip(expected, got):
            np.testing.assert_array_equal(a, c)


def test_numpys_blas_runs_on_one_thread_while_the_parts_multiply_and_is_restored() -> None:
    """Each part's products are small GEMMs on one core: NumPy's OpenBLAS must be found, held to one thread
    inside blas.one_thread(numpy=True) (the parts would otherwise each start its threads), and restored."""
    controls = blas._NUMPY_CONTROLS
    assert controls is not None, "NumPy's OpenBLAS was not found: the parts' GEMMs would run multithreaded"
    get, _ = controls
    before = get()
    with blas.one_thread(numpy=True):
        assert get() == 1
    assert get() == before


@pytest.mark.parametrize("tile", [3, 4])
def test_a_read_only_input_gives_what_a_writable_one_gives(tile: int) -> None:
    """A read-only batch (a memory-mapped file's) is a source array of another Numba type than the kernel's own
    scratch, which the transform's first pass reads through the same variable: both must type and agree."""
    rng = np.random.default_rng(4)
    x, k = rng.normal(size=(2, 9, 9, 16)).astype(np.float32), rng.normal(size=(3, 3, 16, 4)).astype(np.float32)
    expected = winograd.forward(x, k, np.zeros(4, np.float32), conv.RELU, 0, 0, 7, 7, tile)[0]
    x.flags.writeable = False
    np.testing.assert_array_equal(winograd.forward(x, k, np.zeros(4, np.float32), conv.RELU, 0, 0, 7, 7, tile)[0],
                                  expected)
