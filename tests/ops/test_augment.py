"""Augmentation ops: per-image flips and affine resampling, their gradients and exact cases."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from dlcli import ops
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

_images = np.random.default_rng(8).normal(size=(3, 7, 5, 2))  # odd height and width: no symmetry hides a bug
# a turn, a zoom and a shift per image, so some output pixels read from outside the input
_angle, _zoom = np.array([0.6, -1.1, 2.5]), np.array([1.3, 0.8, 1.0])
_matrices = np.stack([np.stack([_zoom * np.cos(_angle), -_zoom * np.sin(_angle), [0.7, 2.2, -1.4]], axis=1),
                      np.stack([_zoom * np.sin(_angle), _zoom * np.cos(_angle), [1.9, -0.3, 3.1]], axis=1)], axis=1)
_horizontal, _vertical = np.array([True, False, True]), np.array([True, True, False])


def _resample(interpolation: str, fill_mode: str) -> Callable[[Tensor], Tensor]:
    return lambda a: ops.affine_resample(a, _matrices, interpolation, fill_mode, fill_value=0.5)


CASES = {
    "affine_resample_bilinear_constant": (_resample("bilinear", "constant"), [_images]),
    "affine_resample_bilinear_reflect": (_resample("bilinear", "reflect"), [_images]),
    "affine_resample_bilinear_nearest": (_resample("bilinear", "nearest"), [_images]),
    "affine_resample_bilinear_wrap": (_resample("bilinear", "wrap"), [_images]),
    "affine_resample_nearest_constant": (_resample("nearest", "constant"), [_images]),
    "affine_resample_nearest_reflect": (_resample("nearest", "reflect"), [_images]),
    "flip_images": (lambda a: ops.flip_images(a, _horizontal, _vertical), [_images]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_augment_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


def test_flip_images_reverses_the_chosen_axes_of_the_chosen_images() -> None:
    out = ops.flip_images(Tensor(_images), _horizontal, _vertical).data
    np.testing.assert_array_equal(out[0], _images[0, ::-1, ::-1])
    np.testing.assert_array_equal(out[1], _images[1, ::-1])
    np.testing.assert_array_equal(out[2], _images[2, :, ::-1])


def test_flip_images_leaves_its_input_alone() -> None:
    images = _images.copy()
    ops.flip_images(Tensor(images), np.ones(3, bool), np.ones(3, bool))
    np.testing.assert_array_equal(images, _images)


def test_identity_matrix_returns_the_images_in_every_mode() -> None:
    identity = np.tile(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (3, 1, 1))
    images = _images.astype(np.float32)
    for interpolation in ("nearest", "bilinear"):
        for fill_mode in ("constant", "reflect", "nearest", "wrap"):
            out = ops.affine_resample(Tensor(images), identity, interpolation, fill_mode)
            assert out.dtype == np.float32
            np.testing.assert_array_equal(out.data, images)


def test_half_pixel_shift_blends_neighbours_and_the_fill_value() -> None:
    image = np.arange(1.0, 4.0).reshape(1, 1, 3, 1)  # one row: 1 2 3
    half_left = np.array([[[1.0, 0.0, -0.5], [0.0, 1.0, 0.0]]])  # output x reads input x - 0.5
    expected = {"constant": [9 * 0.5 + 1 * 0.5, 1.5, 2.5], "reflect": [1.0, 1.5, 2.5],  # reflect: (a | a b c)
                "nearest": [1.0, 1.5, 2.5], "wrap": [2.0, 1.5, 2.5]}  # wrap: (c | a b c)
    for fill_mode, row in expected.items():
        out = ops.affine_resample(Tensor(image), half_left, "bilinear", fill_mode, fill_value=9.0).data
        np.testing.assert_allclose(out.reshape(-1), row, err_msg=fill_mode)


def test_affine_resample_rejects_mismatched_matrices_and_unknown_modes() -> None:
    with pytest.raises(ValueError, match="matrices"):
        ops.affine_resample(Tensor(_images), _matrices[:2])
    with pytest.raises(ValueError, match="fill_mode"):
        ops.affine_resample(Tensor(_images), _matrices, fill_mode="mirror")
