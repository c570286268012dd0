"""The fused 1-channel convolution backward against NumPy: im2col, the activation's gradient, two products."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.kernels import conv as kernels
from dlcli.kernels import conv_one_channel
from dlcli.kernels.parts import in_parts
from dlcli.ops.conv import geometry
from tests.kernels.test_conv import im2col_reference

# (batch, image, kernel, strides, dilation, padding): odd sizes, strides, dilation, both paddings, one image
CASES = [(1, (7, 5), (3, 2), (1, 1), (1, 1), "valid"), (3, (7, 6), (3, 3), (2, 2), (1, 1), "same"),
         (2, (9, 8), (3, 3), (1, 1), (2, 2), "same"), (5, (28, 28), (3, 3), (1, 1), (1, 1), "valid"),
         (9, (5, 4), (3, 3), (1, 1), (1, 1), "same")]
NO_ARGMAX, NO_POOL = np.empty((0, 0, 0, 0), np.int32), (1, 1, 1, 1, 0, 0)  # the plain conv: windows of one cell


@pytest.mark.parametrize("batch,shape,kernel,strides,dilation,padding", CASES)
@pytest.mark.parametrize("code", [kernels.LINEAR, kernels.RELU, kernels.TANH])
def test_backward_matches_numpy(batch, shape, kernel, strides, dilation, padding, code) -> None:
    rng = np.random.default_rng(3)
    g = geometry(*shape, kernel, strides, dilation, padding)
    x = rng.normal(size=(batch, *shape, 1)).astype(np.float32)
    features = 7
    out = rng.normal(size=(batch, g.out_h, g.out_w, features)).astype(np.float32)
    if code == kernels.TANH:
        out = np.tanh(out)
    d_out = rng.normal(size=out.shape).astype(np.float32)
    d = {kernels.LINEAR: d_out, kernels.RELU: d_out * (out > 0), kernels.TANH: d_out * (1 - out * out)}[code]
    cols = im2col_reference(x, g).astype(np.float64)
    expected_kernel = (cols.T @ d.reshape(-1, features)).reshape(*kernel, features)
    padded = kernels.padded(x, *g.args())
    # in_parts as the op calls it: with a batch of 9 and 2 threads, two ranges whose sums add up
    sums = in_parts(conv_one_channel.backward_images, batch, padded.reshape(padded.shape[:3]), d_out, out, NO_ARGMAX,
                    code, *kernel, *strides, *dilation, *NO_POOL, g.out_h, g.out_w,
                    totals=(kernel[0] * kernel[1] + 1) * features).sum(axis=0)
    taps = kernel[0] * kernel[1]
    np.testing.assert_allclose(sums[:taps * features].reshape(*kernel, features), expected_kernel, rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(sums[taps * features:], d.reshape(-1, features).sum(axis=0), rtol=1e-4, atol=1e-4)


def test_each_range_adds_only_its_own_images() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 6, 6)).astype(np.float32)
    d_out = rng.normal(size=(4, 4, 4, 3)).astype(np.float32)
    out = np.ones_like(d_out)
    whole, first, second = (np.zeros(30) for _ in range(3))
    conv_one_channel.backward_images(x, d_out, out, NO_ARGMAX, kernels.LINEAR, 3, 3, 1, 1, 1, 1, *NO_POOL, 4, 4,
                                     whole, 0, 4)
    conv_one_channel.backward_images(x, d_out, out, NO_ARGMAX, kernels.LINEAR, 3, 3, 1, 1, 1, 1, *NO_POOL, 4, 4,
                                     first, 0, 1)
    conv_one_channel.backward_images(x, d_out, out, NO_ARGMAX, kernels.LINEAR, 3, 3, 1, 1, 1, 1, *NO_POOL, 4, 4,
                                     second, 1, 4)
    np.testing.assert_allclose(first + second, whole, rtol=1e-6)
    assert not np.allclose(first, whole)


# (batch, image, kernel, conv strides, dilation, conv padding, pool, pool strides, pool padding): the convnet's
# first layer, odd sizes, clipped "same" windows, overlapping windows, 1-wide windows, one image
POOLED_CASES = [(4, (28, 28), (3, 3), (1, 1), (1, 1), "valid", (2, 2), (2, 2), "valid"),
                (1, (7, 5), (3, 2), (1, 1), (1, 1), "valid", (2, 2), (2, 2), "same"),
                (3, (9, 7), (3, 3), (2, 2), (1, 1), "same", (2, 2), (1, 1), "valid"),
                (2, (9, 8), (3, 3), (1, 1), (2, 2), "same", (2, 1), (3, 1), "same"),
                (9, (6, 6), (2, 2), (1, 1), (1, 1), "same", (1, 2), (1, 2), "valid")]


@pytest.mark.parametrize("batch,shape,kernel,strides,dilation,padding,pool,pool_strides,pool_padding", POOLED_CASES)
@pytest.mark.parametrize("code", [kernels.LINEAR, kernels.RELU, kernels.TANH])
def test_backward_through_a_max_pool_matches_numpy(batch, shape, kernel, strides, dilation, padding, pool,
                                                   pool_strides, pool_padding, code) -> None:
    from dlcli.kernels import pool as pool_kernels
    from dlcli.ops.pool import pool_output_size

    rng = np.random.default_rng(5)
    g = geometry(*shape, kernel, strides, dilation, padding)
    x = rng.normal(size=(batch, *shape, 1)).astype(np.float32)
    features = 9
    out = rng.normal(size=(batch, g.out_h, g.out_w, features)).astype(np.float32)
    out = {kernels.LINEAR: out, kernels.RELU: np.maximum(out, 0), kernels.TANH: np.tanh(out)}[code]
    pooled_h, pad_top = pool_output_size(g.out_h, pool[0], pool_strides[0], pool_padding)
    pooled_w, pad_left = pool_output_size(g.out_w, pool[1], pool_strides[1], pool_padding)
    pooled = np.empty((batch, pooled_h, pooled_w, features), np.float32)
    argmax = np.empty(pooled.shape, np.int32)
    pool_geometry = (*pool, *pool_strides, pad_top, pad_left)
    pool_kernels.max_pool2d_forward(out, pooled, argmax, *pool_geometry)
    d_pool = rng.normal(size=pooled.shape).astype(np.float32)
    # expected: the pool's gradient scattered onto the conv output (windows may share a winner), then the
    # activation's gradient and the products with im2col's columns, in float64
    d_out = np.zeros((batch, g.out_h * g.out_w, features))
    for n, i, j, f in np.ndindex(*pooled.shape):
        d_out[n, argmax[n, i, j, f], f] += d_pool[n, i, j, f]
    d_out = d_out.reshape(out.shape)
    d = {kernels.LINEAR: d_out, kernels.RELU: d_out * (out > 0), kernels.TANH: d_out * (1 - out * out)}[code]
    cols = im2col_reference(x, g).astype(np.float64)
    padded = kernels.padded(x, *g.args())
    sums = in_parts(conv_one_channel.backward_images, batch, padded.reshape(padded.shape[:3]), d_pool, pooled,
                    argmax, code, *kernel, *strides, *dilation, *pool_geometry, g.out_h, g.out_w,
                    totals=(kernel[0] * kernel[1] + 1) * features).sum(axis=0)
    taps = kernel[0] * kernel[1]
    np.testing.assert_allclose(sums[:taps * features].reshape(*kernel, features),
                               (cols.T @ d.reshape(-1, features)).reshape(*kernel, features), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sums[taps * features:], d.reshape(-1, features).sum(axis=0), rtol=1e-4, atol=1e-4)


def pooled_reference(conv: np.ndarray, pool: tuple[int, int], strides: tuple[int, int], padding: str
                     ) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Max pool of conv (N, H, W, F), the flat h * W + w of each window's first maximum, window by window, and the
    kernel's pool arguments (pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)."""
    from dlcli.ops.pool import pool_output_size

    (out_h, top), (out_w, left) = (pool_output_size(conv.shape[1 + a], pool[a], strides[a], padding) for a in (0, 1))
    out = np.empty((conv.shape[0], out_h, out_w, conv.shape[3]), conv.dtype)
    argmax = np.empty(out.shape, np.int32)
    for i, j in np.ndindex(out_h, out_w):
        rows = range(max(i * strides[0] - top, 0), min(i * strides[0] - top + pool[0], conv.shape[1]))
        cols = range(max(j * strides[1] - left, 0), min(j * strides[1] - left + pool[1], conv.shape[2]))
        cells = [(h, w) for h in rows for w in cols]  # row-major: argmax keeps the first of tied cells
        stacked = np.stack([conv[:, h, w] for h, w in cells])
        out[:, i, j] = stacked.max(axis=0)
        argmax[:, i, j] = np.array([h * conv.shape[2] + w for h, w in cells], np.int32)[stacked.argmax(axis=0)]
    return out, argmax, (*pool, *strides, top, left)


def assert_same_argmax_but_near_ties(argmax: np.ndarray, expected: np.ndarray, conv: np.ndarray) -> None:
    """The argmax is the reference's, but where the two cells' values are within float32 rounding (the
    kernel's sums round differently from the float64 reference's)."""
    flat = conv.reshape(conv.shape[0], -1, conv.shape[3])
    n, _, _, f = np.nonzero(argmax != expected)
    picked = flat[n, argmax[argmax != expected], f]
    wanted = flat[n, expected[argmax != expected], f]
    np.testing.assert_allclose(picked, wanted, rtol=0, atol=5e-7 * np.abs(conv).max())
    assert (argmax == expected).mean() > 0.999


# (batch, image, padding, pool, strides, pool padding): the convnet's 26x26 conv output, odd 27x27 and 25x25
# ones (the pool's floor drops a row and a column), one image, "same" convs, "same" pooling of an odd size
# (a clipped last window), 1-cell windows, strided windows of 2 x 1
FORWARD_CASES = [(3, (28, 28), "valid", (2, 2), (2, 2), "valid"), (2, (29, 29), "valid", (2, 2), (2, 2), "valid"),
                 (1, (27, 27), "valid", (2, 2), (2, 2), "valid"), (2, (28, 28), "same", (2, 2), (2, 2), "valid"),
                 (2, (27, 27), "same", (2, 2), (2, 2), "same"), (2, (7, 7), "same", (2, 2), (2, 2), "same"),
                 (2, (9, 9), "valid", (1, 1), (1, 1), "valid"), (5, (9, 8), "same", (2, 1), (3, 1), "same")]


@pytest.mark.parametrize("batch,shape,padding,pool,strides,pool_padding", FORWARD_CASES)
@pytest.mark.parametrize("code", [kernels.LINEAR, kernels.RELU])
def test_forward_pooled_matches_numpy(batch, shape, padding, pool, strides, pool_padding, code) -> None:
    rng = np.random.default_rng(6)
    g = geometry(*shape, (3, 3), (1, 1), (1, 1), padding)
    x = rng.random((batch, *shape, 1), dtype=np.float32)
    kernel = rng.normal(0, 0.3, (3, 3, 1, 32)).astype(np.float32)
    bias = rng.normal(0, 0.1, 32).astype(np.float32)
    conv = (im2col_reference(x, g).astype(np.float64) @ kernel.reshape(9, -1) + bias).astype(np.float32)
    conv = conv.reshape(batch, g.out_h, g.out_w, -1)
    if code == kernels.RELU:
        conv = np.maximum(conv, 0)
    expected, expected_argmax, pool_args = pooled_reference(conv, pool, strides, pool_padding)
    padded = kernels.padded(x, *g.args())
    out, argmax = np.empty(expected.shape, np.float32), np.empty(expected.shape, np.int32)
    conv_one_channel.forward_pooled(padded.reshape(padded.shape[:3]), kernel, bias, code, 1, 1, 1, 1, pool_args,
                                    g.out_h, g.out_w, out, argmax)
    # float32 sums against float64 ones rounded once: a float32 rounding or two of the largest value
    np.testing.assert_allclose(out, expected, rtol=0, atol=5e-7 * np.abs(expected).max())
    assert_same_argmax_but_near_ties(argmax, expected_argmax, conv)


def test_forward_pooled_takes_strides_and_dilation() -> None:
    rng = np.random.default_rng(7)
    for strides, dilation in (((2, 2), (1, 1)), ((1, 1), (2, 2)), ((2, 1), (1, 1))):
        g = geometry(11, 10, (3, 3), strides, dilation, "same")
        x = rng.random((2, 11, 10, 1), dtype=np.float32)
        kernel, bias = rng.normal(0, 0.3, (3, 3, 1, 5)).astype(np.float32), np.zeros(5, np.float32)
        conv = (im2col_reference(x, g).astype(np.float64) @ kernel.reshape(9, -1)).astype(np.float32)
        conv = conv.reshape(2, g.out_h, g.out_w, -1)
        expected, expected_argmax, pool_args = pooled_reference(conv, (2, 2), (2, 2), "valid")
        padded = kernels.padded(x, *g.args())
        out, argmax = np.empty(expected.shape, np.float32), np.empty(expected.shape, np.int32)
        conv_one_channel.forward_pooled(padded.reshape(padded.shape[:3]), kernel, bias, kernels.LINEAR, *strides,
                                        *dilation, pool_args, g.out_h, g.out_w, out, argmax)
        np.testing.assert_allclose(out, expected, rtol=0, atol=5e-7 * np.abs(expected).max())
        assert_same_argmax_but_near_ties(argmax, expected_argmax, conv)
