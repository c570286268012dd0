"""The affine resampling kernels against plain NumPy loops, for every fill mode and both interpolations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlcli.kernels import augment as kernels
from dlcli.ops.augment import FILL_MODES

MODES = [(fill_mode, interpolation) for fill_mode in FILL_MODES for interpolation in ("nearest", "bilinear")]


def _reference_index(i: int, size: int, fill_mode: str) -> int | None:
    """Where index i reads from, by the fill mode's picture in Keras' docs; None for the fill value."""
    if 0 <= i < size:
        return i
    if fill_mode == "constant":  # (k k k k | a b c d | k k k k)
        return None
    if fill_mode == "nearest":  # (a a a a | a b c d | d d d d)
        return min(max(i, 0), size - 1)
    if fill_mode == "wrap":  # (a b c d | a b c d | a b c d)
        return i % size
    while not 0 <= i < size:  # reflect, one mirror at a time: (d c b a | a b c d | d c b a)
        i = -i - 1 if i < 0 else 2 * size - 1 - i
    return i


def _reference_taps(matrix: np.ndarray, x: int, y: int, interpolation: str) -> list[tuple[int, int, float]]:
    """(row, column, weight) of the input pixels output pixel (x, y) reads, before the fill mode."""
    sx, sy = matrix @ np.array([x, y, 1.0])
    if interpolation == "nearest":
        return [(math.floor(sy + 0.5), math.floor(sx + 0.5), 1.0)]
    x0, y0 = math.floor(sx), math.floor(sy)
    fx, fy = sx - x0, sy - y0
    return [(y0, x0, (1 - fy) * (1 - fx)), (y0, x0 + 1, (1 - fy) * fx),
            (y0 + 1, x0, fy * (1 - fx)), (y0 + 1, x0 + 1, fy * fx)]


def reference_resample(images: np.ndarray, matrices: np.ndarray, fill_mode: str, interpolation: str,
                       fill_value: float) -> np.ndarray:
    """affine_resample, one pixel and one tap at a time."""
    n_images, height, width, _ = images.shape
    out = np.zeros_like(images)
    for n, y, x in np.ndindex(n_images, height, width):
        for row, col, weight in _reference_taps(matrices[n], x, y, interpolation):
            r, c = _reference_index(row, height, fill_mode), _reference_index(col, width, fill_mode)
            out[n, y, x] += weight * (fill_value if r is None or c is None else images[n, r, c])
    return out


def reference_adjoint(d_out: np.ndarray, matrices: np.ndarray, fill_mode: str, interpolation: str) -> np.ndarray:
    """affine_resample_adjoint, one pixel and one tap at a time."""
    n_images, height, width, _ = d_out.shape
    d_images = np.zeros_like(d_out)
    for n, y, x in np.ndindex(n_images, height, width):
        for row, col, weight in _reference_taps(matrices[n], x, y, interpolation):
            r, c = _reference_index(row, height, fill_mode), _reference_index(col, width, fill_mode)
            if r is not None and c is not None:
                d_images[n, r, c] += weight * d_out[n, y, x]
    return d_images


def _matrices(count: int, seed: int) -> np.ndarray:
    """Rotations, zooms and shifts large enough to send many points outside a small image, plus a pure
    integer shift (every bilinear weight 0 or 1) as the last one."""
    rng = np.random.default_rng(seed)
    angle, scale = rng.uniform(-np.pi, np.pi, count), rng.uniform(0.5, 1.6, count)
    shift = rng.uniform(-4, 4, (count, 2))
    matrices = np.stack([np.stack([scale * np.cos(angle), -scale * np.sin(angle), shift[:, 0]], axis=1),
                         np.stack([scale * np.sin(angle), scale * np.cos(angle), shift[:, 1]], axis=1)], axis=1)
    matrices[-1] = [[1.0, 0.0, -2.0], [0.0, 1.0, 3.0]]
    return matrices


def test_fill_mode_codes_are_the_op_names_positions() -> None:
    codes = {"constant": kernels.CONSTANT, "reflect": kernels.REFLECT, "nearest": kernels.NEAREST, "wrap": kernels.WRAP}
    assert [FILL_MODES.index(name) for name in codes] == list(codes.values())


@pytest.mark.parametrize(("fill_mode", "interpolation"), MODES)
def test_affine_resample_matches_numpy(fill_mode: str, interpolation: str) -> None:
    images = np.random.default_rng(0).normal(size=(4, 7, 5, 2))
    matrices = _matrices(4, seed=1)
    expected = reference_resample(images, matrices, fill_mode, interpolation, fill_value=0.75)
    out = np.full_like(images, np.nan)  # the kernel must write every element
    kernels.affine_resample(images, matrices, FILL_MODES.index(fill_mode), interpolation == "bilinear", 0.75, out)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    out32 = np.empty(images.shape, np.float32)
    kernels.affine_resample(images.astype(np.float32), matrices, FILL_MODES.index(fill_mode),
                            interpolation == "bilinear", 0.75, out32)
    np.testing.assert_allclose(out32, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("fill_mode", "interpolation"), MODES)
def test_affine_resample_adjoint_matches_numpy(fill_mode: str, interpolation: str) -> None:
    d_out = np.random.default_rng(2).normal(size=(4, 7, 5, 2))
    matrices = _matrices(4, seed=3)
    d_images = np.zeros_like(d_out)
    kernels.affine_resample_adjoint(d_out, matrices, FILL_MODES.index(fill_mode), interpolation == "bilinear",
                                    d_images)
    np.testing.assert_allclose(d_images, reference_adjoint(d_out, matrices, fill_mode, interpolation),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("fill_mode", "interpolation"), MODES)
def test_adjoint_is_the_transpose_of_the_resampling(fill_mode: str, interpolation: str) -> None:
    # <A x, y> == <x, A^T y> for the linear part (fill value 0)
    rng = np.random.default_rng(4)
    images, d_out = rng.normal(size=(3, 6, 9, 3)), rng.normal(size=(3, 6, 9, 3))
    matrices = _matrices(3, seed=5)
    code, bilinear = FILL_MODES.index(fill_mode), interpolation == "bilinear"
    out, d_images = np.empty_like(images), np.zeros_like(images)
    kernels.affine_resample(images, matrices, code, bilinear, 0.0, out)
    kernels.affine_resample_adjoint(d_out, matrices, code, bilinear, d_images)
    assert np.isclose((out * d_out).sum(), (images * d_images).sum(), rtol=1e-12)


def test_adjoint_adds_to_what_d_images_holds() -> None:
    d_out = np.ones((1, 3, 3, 1))
    identity = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    d_images = np.full_like(d_out, 2.0)
    kernels.affine_resample_adjoint(d_out, identity, kernels.CONSTANT, True, d_images)
    np.testing.assert_array_equal(d_images, 3.0)
