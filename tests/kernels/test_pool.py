"""Pooling kernels against plain NumPy versions of themselves, for odd sizes, strides and both paddings."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.kernels import pool as kernels
from dlcli.ops.pool import pool_output_size

# (per-example shape, pool, strides, padding)
GEOMETRIES = [((7, 5, 3), (2, 2), (2, 2), "valid"), ((7, 5, 3), (3, 2), (2, 3), "same"),
              ((6, 6, 4), (3, 3), (1, 1), "valid"), ((5, 7, 2), (2, 3), (3, 3), "same"),
              ((1, 9, 16), (1, 3), (1, 2), "same"), ((4, 4, 33), (2, 2), (2, 2), "same")]


def windows(shape: tuple[int, ...], pool: tuple[int, int], strides: tuple[int, int], padding: str):
    """(i, j, rows, cols) for every output cell: the input cells of its window, clipped to the image."""
    (out_h, top), (out_w, left) = (pool_output_size(shape[a], pool[a], strides[a], padding) for a in range(2))
    for i in range(out_h):
        for j in range(out_w):
            h0, w0 = i * strides[0] - top, j * strides[1] - left
            yield i, j, slice(max(h0, 0), min(h0 + pool[0], shape[0])), slice(max(w0, 0), min(w0 + pool[1], shape[1]))


def geometry_args(shape, pool, strides, padding) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The output's per-example shape and the kernels' trailing arguments."""
    (out_h, top), (out_w, left) = (pool_output_size(shape[a], pool[a], strides[a], padding) for a in range(2))
    return (out_h, out_w, shape[2]), (*pool, *strides, top, left)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("shape,pool,strides,padding", GEOMETRIES)
def test_max_pool_kernels_match_numpy(shape, pool, strides, padding, ties: bool) -> None:
    rng = np.random.default_rng(0)
    # with ties (values 0..2), the argmax must be the first tied cell in row-major order, as np.argmax's
    x = (rng.integers(0, 3, size=(2, *shape)) if ties else rng.normal(size=(2, *shape))).astype(np.float32)
    out_shape, args = geometry_args(shape, pool, strides, padding)
    out, argmax = np.empty((2, *out_shape), np.float32), np.empty((2, *out_shape), np.int32)
    kernels.max_pool2d_forward(x, out, argmax, *args)
    d_out = rng.normal(size=out.shape).astype(np.float32)
    expected_out, expected_d_x = np.empty_like(out), np.zeros_like(x)
    for i, j, rows, cols in windows(shape, pool, strides, padding):
        window = x[:, rows, cols].reshape(2, -1, shape[2])
        expected_out[:, i, j] = window.max(axis=1)
        flat = np.arange(shape[0] * shape[1]).reshape(shape[:2])[rows, cols].reshape(-1)
        winner = flat[window.argmax(axis=1)]  # (batch, channels): flat index h * W + w
        np.testing.assert_array_equal(argmax[:, i, j], winner)
        for n, c in np.ndindex(2, shape[2]):
            expected_d_x[n, winner[n, c] // shape[1], winner[n, c] % shape[1], c] += d_out[n, i, j, c]
    np.testing.assert_array_equal(out, expected_out)
    d_x = np.full(x.shape, np.nan, np.float32)  # the kernel writes every cell, whatever d_x held
    kernels.max_pool2d_backward(d_out, argmax, d_x, *args)
    np.testing.assert_allclose(d_x, expected_d_x, rtol=1e-6)


@pytest.mark.parametrize("pool", [2, 3])  # the 2 x 2 fast path and the general one
def test_max_pool_kernel_picks_the_first_of_tied_cells(pool: int) -> None:
    x = np.zeros((1, pool, pool, 1), np.float32)
    out, argmax = np.empty((1, 1, 1, 1), np.float32), np.empty((1, 1, 1, 1), np.int32)
    kernels.max_pool2d_forward(x, out, argmax, pool, pool, pool, pool, 0, 0)
    assert argmax.item() == 0  # PyTorch's choice too


@pytest.mark.parametrize("shape,pool,strides,padding", GEOMETRIES)
def test_average_pool_kernels_match_numpy(shape, pool, strides, padding) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, *shape)).astype(np.float32)
    out_shape, args = geometry_args(shape, pool, strides, padding)
    out = np.empty((2, *out_shape), np.float32)
    kernels.average_pool2d_forward(x, out, *args)
    d_out = rng.normal(size=out.shape).astype(np.float32)
    expected_out, expected_d_x = np.empty_like(out), np.zeros_like(x)
    for i, j, rows, cols in windows(shape, pool, strides, padding):
        expected_out[:, i, j] = x[:, rows, cols].mean(axis=(1, 2))
        cells = (rows.stop - rows.start) * (cols.stop - cols.start)
        expected_d_x[:, rows, cols] += d_out[:, i, j][:, None, None] / cells
    np.testing.assert_allclose(out, expected_out, rtol=1e-5, atol=1e-6)
    d_x = np.zeros_like(x)
    kernels.average_pool2d_backward(d_out, d_x, *args)
    np.testing.assert_allclose(d_x, expected_d_x, rtol=1e-5, atol=1e-6)


def test_pool_kernels_run_in_float64_for_gradient_checks() -> None:
    x = np.random.default_rng(2).normal(size=(1, 4, 4, 3))
    out = np.empty((1, 2, 2, 3))
    kernels.average_pool2d_forward(x, out, 2, 2, 2, 2, 0, 0)
    np.testing.assert_allclose(out, x.reshape(1, 2, 2, 2, 2, 3).mean(axis=(2, 4)), rtol=1e-14)


@pytest.mark.parametrize("pool,strides", [(2, 2), (2, 1)])  # disjoint windows, then overlapping ones
def test_max_pool_backward_overwrites_whatever_d_x_held(pool: int, strides: int) -> None:
    rng = np.random.default_rng(5)
    out_size = (6 - pool) // strides + 1
    d_out = rng.normal(size=(2, out_size, out_size, 4)).astype(np.float32)
    argmax = rng.integers(0, 36, size=d_out.shape).astype(np.int32)
    args = (pool, pool, strides, strides, 0, 0)
    clean, dirty = np.zeros((2, 6, 6, 4), np.float32), np.full((2, 6, 6, 4), np.nan, np.float32)
    kernels.max_pool2d_backward(d_out, argmax, clean, *args)
    kernels.max_pool2d_backward(d_out, argmax, dirty, *args)
    np.testing.assert_array_equal(clean, dirty)


@pytest.mark.parametrize("batch", [1, 9])  # one image; images split over threads
@pytest.mark.parametrize("shape,pool,strides,padding", [((13, 13, 5), (2, 2), (2, 2), "valid"),
                                                        ((7, 9, 3), (2, 3), (3, 3), "same"),
                                                        ((26, 26, 32), (2, 2), (2, 2), "valid")])
def test_disjoint_windows_backward_matches_the_scatter(batch, shape, pool, strides, padding) -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(batch, *shape)).astype(np.float32)
    out_shape, args = geometry_args(shape, pool, strides, padding)
    out, argmax = np.empty((batch, *out_shape), np.float32), np.empty((batch, *out_shape), np.int32)
    kernels.max_pool2d_forward(x, out, argmax, *args)
    d_out = rng.normal(size=out.shape).astype(np.float32)
    expected = np.zeros((batch, shape[0] * shape[1], shape[2]), np.float32)
    np.add.at(expected, (np.arange(batch)[:, None, None, None], argmax, np.arange(shape[2])), d_out)
    d_x = np.full(x.shape, np.nan, np.float32)
    kernels.max_pool2d_backward(d_out, argmax, d_x, *args)
    np.testing.assert_array_equal(d_x.reshape(expected.shape), expected)
