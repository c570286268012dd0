"""im2col and col2im against plain NumPy versions of themselves."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.kernels import conv as kernels
from dlcli.ops.conv import geometry


def im2col_reference(x: np.ndarray, g) -> np.ndarray:
    """Pad, then slice every kernel offset: a slow but obviously right im2col."""
    n, h, w, c = x.shape
    pad_bottom = max((g.out_h - 1) * g.stride_h + (g.kernel_h - 1) * g.dilation_h + 1 - h - g.pad_top, 0)
    pad_right = max((g.out_w - 1) * g.stride_w + (g.kernel_w - 1) * g.dilation_w + 1 - w - g.pad_left, 0)
    padded = np.pad(x, ((0, 0), (g.pad_top, pad_bottom), (g.pad_left, pad_right), (0, 0)))
    pieces = []
    for kh in range(g.kernel_h):
        for kw in range(g.kernel_w):
            top, left = kh * g.dilation_h, kw * g.dilation_w
            pieces.append(padded[:, top:top + g.stride_h * g.out_h:g.stride_h,
                                 left:left + g.stride_w * g.out_w:g.stride_w, :][:, :g.out_h, :g.out_w])
    return np.stack(pieces, axis=3).reshape(n * g.out_h * g.out_w, -1)


GEOMETRIES = [((7, 5, 3), (3, 2), (1, 1), (1, 1), "valid"), ((7, 6, 2), (3, 3), (2, 2), (1, 1), "same"),
              ((9, 8, 1), (3, 3), (1, 1), (2, 2), "same"), ((6, 6, 4), (2, 2), (2, 1), (1, 1), "same")]


@pytest.mark.parametrize("shape,kernel,strides,dilation,padding", GEOMETRIES)
def test_im2col_matches_numpy_and_col2im_is_its_adjoint(shape, kernel, strides, dilation, padding) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, *shape)).astype(np.float32)
    g = geometry(shape[0], shape[1], kernel, strides, dilation, padding)
    cols = np.empty((2 * g.out_h * g.out_w, kernel[0] * kernel[1] * shape[2]), np.float32)
    kernels.im2col(x, cols, *g.args())
    np.testing.assert_array_equal(cols, im2col_reference(x, g))
    # col2im is the transpose of im2col: <im2col(x), c> == <x, col2im(c)> for any c
    c = rng.normal(size=cols.shape).astype(np.float32)
    back = np.zeros_like(x)
    kernels.col2im(c, back, *g.args())
    assert float((cols.astype(np.float64) * c).sum()) == pytest.approx(float((x.astype(np.float64) * back).sum()),
                                                                      rel=1e-5)


# 1-channel inputs (a first layer on grey images): odd sizes, strides, dilation, both paddings, one image
BY_TAP = [(1, (7, 5, 1), (3, 2), (1, 1), (1, 1), "valid"), (3, (7, 6, 1), (3, 3), (2, 2), (1, 1), "same"),
          (2, (9, 8, 1), (3, 3), (1, 1), (2, 2), "same"), (1, (28, 28, 1), (3, 3), (1, 1), (1, 1), "valid"),
          (2, (5, 4, 1), (3, 3), (1, 1), (1, 1), "same")]


@pytest.mark.parametrize("batch,shape,kernel,strides,dilation,padding", BY_TAP)
def test_im2col_by_tap_is_the_transposed_im2col(batch, shape, kernel, strides, dilation, padding) -> None:
    x = np.random.default_rng(1).normal(size=(batch, *shape)).astype(np.float32)
    g = geometry(shape[0], shape[1], kernel, strides, dilation, padding)
    cols_t = np.full((kernel[0] * kernel[1], batch * g.out_h * g.out_w), np.nan, np.float32)
    kernels.im2col_by_tap(x, cols_t, *g.args())
    np.testing.assert_array_equal(cols_t.T, im2col_reference(x, g))


def test_col2im_overwrites_whatever_dx_held() -> None:
    g = geometry(5, 5, (3, 3), (1, 1), (1, 1), "same")
    cols = np.random.default_rng(1).normal(size=(2 * 25, 9 * 2)).astype(np.float32)
    clean, dirty = np.zeros((2, 5, 5, 2), np.float32), np.full((2, 5, 5, 2), np.nan, np.float32)
    kernels.col2im(cols, clean, *g.args())
    kernels.col2im(cols, dirty, *g.args())
    np.testing.assert_array_equal(clean, dirty)


@pytest.mark.parametrize("activation,code", [("linear", kernels.LINEAR), ("relu", kernels.RELU),
                                             ("tanh", kernels.TANH)])
def test_fused_bias_activation_and_its_gradient_match_numpy(activation: str, code: int) -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=(37, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    expected = {"linear": lambda v: v, "relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[activation](z + bias)
    out = z.copy()
    kernels.bias_activation(out, bias, code)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    d_out = rng.normal(size=out.shape).astype(np.float32)
    slope = {"linear": np.ones_like(out), "relu": (out > 0).astype(np.float32), "tanh": 1 - out * out}[activation]
    d, d_bias = np.empty_like(d_out), np.empty(5, np.float32)
    kernels.activation_grad_and_bias_sum(d_out, out, d, d_bias, code)
    np.testing.assert_allclose(d, d_out * slope, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d_bias, (d_out * slope).sum(axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,kernel,strides,dilation,padding", GEOMETRIES)
def test_kernels_split_over_threads_match_numpy(shape, kernel, strides, dilation, padding) -> None:
    # 17 images and 600 rows: enough for in_parts to give every thread a block of its own
    rng = np.random.default_rng(3)
    x = rng.normal(size=(17, *shape)).astype(np.float32)
    g = geometry(shape[0], shape[1], kernel, strides, dilation, padding)
    cols = np.full((17 * g.out_h * g.out_w, kernel[0] * kernel[1] * shape[2]), np.nan, np.float32)
    kernels.im2col(x, cols, *g.args())
    np.testing.assert_array_equal(cols, im2col_reference(x, g))
    c = rng.normal(size=cols.shape).astype(np.float64)
    back = np.full(x.shape, np.nan)
    kernels.col2im(c, back, *g.args())
    expected = np.zeros(x.shape)
    for image in range(17):  # col2im of one image at a time is the adjoint on that image alone
        rows = slice(image * g.out_h * g.out_w, (image + 1) * g.out_h * g.out_w)
        kernels.col2im(c[rows], expected[image:image + 1], *g.args())
    np.testing.assert_array_equal(back, expected)
    out = rng.normal(size=(600, 7)).astype(np.float32)
    bias = rng.normal(size=7).astype(np.float32)
    expected_out = np.maximum(out + bias, 0)
    kernels.bias_activation(out, bias, kernels.RELU)
    np.testing.assert_allclose(out, expected_out, rtol=1e-6, atol=1e-6)
