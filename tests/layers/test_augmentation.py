"""Augmentation layers: gradients, identity in inference, seeding, and Keras' geometry in exact cases."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from dlcli.errors import SpecError
from dlcli.layers import Layer, create_layer
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

_IMAGE = (7, 5, 2)  # odd height and width, two channels

# every augmentation layer: (config, per-example input shape); gradients with a fixed transform per pass
CASES = {
    "random_flip": ({"type": "random_flip"}, _IMAGE),
    "random_flip_horizontal": ({"type": "random_flip", "mode": "horizontal"}, _IMAGE),
    "random_flip_vertical": ({"type": "random_flip", "mode": "vertical"}, _IMAGE),
    "random_translation_bilinear_constant": ({"type": "random_translation", "height_factor": 0.3,
                                              "width_factor": [-0.2, 0.4], "fill_mode": "constant",
                                              "fill_value": 0.5}, _IMAGE),
    "random_translation_nearest_reflect": ({"type": "random_translation", "height_factor": 0.3, "width_factor": 0.3,
                                            "interpolation": "nearest"}, _IMAGE),
    "random_zoom_bilinear_reflect": ({"type": "random_zoom", "height_factor": 0.4}, _IMAGE),
    "random_zoom_nearest_constant": ({"type": "random_zoom", "height_factor": [0.1, 0.5], "width_factor": [-0.4, -0.1],
                                      "interpolation": "nearest", "fill_mode": "constant"}, _IMAGE),
    "random_rotation_bilinear_reflect": ({"type": "random_rotation", "factor": 0.2}, _IMAGE),
    "random_rotation_bilinear_constant": ({"type": "random_rotation", "factor": [-0.3, 0.1], "fill_mode": "constant",
                                           "fill_value": -1.0}, _IMAGE),
    "random_rotation_nearest_wrap": ({"type": "random_rotation", "factor": 0.2, "interpolation": "nearest",
                                      "fill_mode": "wrap"}, _IMAGE),
    "random_rotation_bilinear_nearest": ({"type": "random_rotation", "factor": 0.2, "fill_mode": "nearest"}, _IMAGE),
}


def build(config: dict, in_shape: tuple[int, ...] = _IMAGE, seed: int = 0) -> Layer:
    """A layer from its config, built for per-example `in_shape` with a generator seeded by `seed`."""
    layer = create_layer(config)
    assert layer.build(in_shape, np.random.default_rng(seed)) == in_shape
    return layer


def images(count: int = 3, shape: tuple[int, ...] = _IMAGE, seed: int = 1) -> np.ndarray:
    """Random float32 images (count, *shape)."""
    return np.random.default_rng(seed).normal(size=(count, *shape)).astype(np.float32)


def augment(layer: Layer, x: np.ndarray, seed: int = 7) -> np.ndarray:
    """The layer in training on x, its generator reset to `seed` first."""
    layer.rng = np.random.default_rng(seed)
    return layer(Tensor(x), training=True).data


@pytest.mark.parametrize("name", sorted(CASES))
def test_augmentation_gradient_matches_finite_differences(name: str) -> None:
    config, in_shape = CASES[name]
    layer = build(config, in_shape)
    x = images(shape=in_shape).astype(np.float64)
    # seed 0 flips some of the three images and keeps others, in every flip mode
    assert not np.array_equal(augment(layer, x, seed=0), x), "seed 0 draws the identity: the case checks nothing"

    def call(t: Tensor) -> Tensor:
        layer.rng = np.random.default_rng(0)  # a fresh generator: the same transform in every pass
        return layer(t, training=True)

    check_op_gradients(call, [x])


@pytest.mark.parametrize("name", sorted(CASES))
def test_augmentation_is_identity_in_inference(name: str) -> None:
    layer = build(CASES[name][0])
    x = Tensor(images())
    assert layer(x, training=False) is x
    assert layer(x) is x


@pytest.mark.parametrize("name", sorted(CASES))
def test_augmentation_is_seeded_by_the_run_generator(name: str) -> None:
    config = CASES[name][0]
    x = Tensor(images(count=8))
    first = build(config, seed=3)(x, training=True).data
    again = build(config, seed=3)(x, training=True).data
    other = build(config, seed=4)(x, training=True).data
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == x.shape and first.dtype == np.float32


@pytest.mark.parametrize("name", sorted(CASES))
def test_augmentation_spec_round_trips_through_model_dump(name: str) -> None:
    layer = create_layer(CASES[name][0])
    assert create_layer(layer.spec.model_dump()).spec == layer.spec


def test_each_image_gets_its_own_transform() -> None:
    layer = build({"type": "random_rotation", "factor": 0.3})
    x = np.repeat(images(count=1), 4, axis=0)
    out = augment(layer, x)
    assert len({out[i].tobytes() for i in range(4)}) == 4


def test_uint8_pixels_come_out_as_float32() -> None:
    layer = build({"type": "random_zoom", "height_factor": 0.2}, (4, 4, 1))
    out = layer(Tensor(np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)), training=True)
    assert out.dtype == np.float32


def test_translation_by_one_pixel_shifts_and_fills() -> None:
    # width 5 * 0.2 = one pixel right; height 7 * (-1/7) = one pixel up
    layer = build({"type": "random_translation", "height_factor": [-1 / 7, -1 / 7], "width_factor": [0.2, 0.2],
                   "interpolation": "nearest", "fill_mode": "constant", "fill_value": 9.0})
    x = images()
    out = augment(layer, x)
    np.testing.assert_array_equal(out[:, :-1, 1:], x[:, 1:, :-1])
    assert (out[:, -1] == 9.0).all() and (out[:, :, 0] == 9.0).all()


def test_rotation_by_half_a_turn_flips_both_axes() -> None:
    x = images()
    for interpolation in ("nearest", "bilinear"):
        layer = build({"type": "random_rotation", "factor": [0.5, 0.5], "interpolation": interpolation,
                       "fill_mode": "constant"})
        np.testing.assert_allclose(augment(layer, x), x[:, ::-1, ::-1], atol=1e-6, err_msg=interpolation)


def test_positive_rotation_turns_counter_clockwise() -> None:
    # Keras: a positive factor turns the picture counter-clockwise, so a quarter turn brings the right edge
    # to the top (rows grow downwards)
    x = np.zeros((1, 5, 5, 1), np.float32)
    x[0, 2, 4] = 1.0  # middle of the right edge
    layer = build({"type": "random_rotation", "factor": [0.25, 0.25], "interpolation": "nearest"}, (5, 5, 1))
    out = augment(layer, x)
    assert out[0, 0, 2, 0] == 1.0 and out.sum() == 1.0


def test_zoom_zero_is_the_identity() -> None:
    x = images()
    layer = build({"type": "random_zoom", "height_factor": 0.0, "width_factor": 0.0})
    np.testing.assert_array_equal(augment(layer, x), x)


def test_positive_zoom_zooms_out_and_negative_zooms_in() -> None:
    x = np.ones((1, 9, 9, 1), np.float32)
    out_layer = build({"type": "random_zoom", "height_factor": [1.0, 1.0], "interpolation": "nearest",
                       "fill_mode": "constant"}, (9, 9, 1))
    zoomed_out = augment(out_layer, x)[0, :, :, 0]  # zoom 2: the picture shrinks to the middle half
    assert zoomed_out[2:7, 2:7].all() and zoomed_out.sum() == 25
    ramp = np.tile(np.arange(9, dtype=np.float32), (9, 1)).reshape(1, 9, 9, 1)
    in_layer = build({"type": "random_zoom", "height_factor": [-0.5, -0.5]}, (9, 9, 1))
    zoomed_in = augment(in_layer, ramp)[0, 4, :, 0]  # zoom 0.5: the middle half spreads over the row
    np.testing.assert_allclose(zoomed_in, 2 + np.arange(9) / 2)


def test_zoom_without_width_factor_keeps_the_aspect_ratio() -> None:
    layer = build({"type": "random_zoom", "height_factor": 0.5})
    layer.rng = np.random.default_rng(0)
    matrices = layer._matrices(6, 7, 5)
    np.testing.assert_array_equal(matrices[:, 0, 0], matrices[:, 1, 1])
    assert len(set(matrices[:, 0, 0])) == 6


def test_flip_horizontal_reverses_the_width_axis() -> None:
    x = images(count=16)
    out = augment(build({"type": "random_flip", "mode": "horizontal"}), x)
    flipped = np.array([np.array_equal(out[i], x[i, :, ::-1]) for i in range(16)])
    kept = np.array([np.array_equal(out[i], x[i]) for i in range(16)])
    assert (flipped ^ kept).all() and 0 < flipped.sum() < 16


def test_flip_both_ways_draws_every_combination() -> None:
    x = images(count=32)
    out = augment(build({"type": "random_flip"}), x)
    kinds = {next(k for k, view in enumerate([x[i], x[i, :, ::-1], x[i, ::-1], x[i, ::-1, ::-1]])
                  if np.array_equal(out[i], view)) for i in range(32)}
    assert kinds == {0, 1, 2, 3}


def test_augmentation_rejects_inputs_that_are_not_images() -> None:
    with pytest.raises(SpecError, match=r"rank 4 \(batch, height, width, channels\), found rank 2 \(batch, 784\)"):
        create_layer({"type": "random_rotation", "factor": 0.1}).connect([(784,)], np.random.default_rng(0))


def test_factor_outside_keras_range_and_unknown_modes_are_spec_errors() -> None:
    with pytest.raises(ValidationError, match=r"fraction in \[-1, 1\]") as info:
        create_layer({"type": "random_rotation", "factor": 1.5})
    assert info.value.error_count() == 1
    with pytest.raises(ValidationError, match=r"fraction in \[-1, 1\]"):
        create_layer({"type": "random_zoom", "height_factor": 0.1, "width_factor": [0.1, -3]})
    with pytest.raises(ValidationError, match="fill_mode"):
        create_layer({"type": "random_zoom", "height_factor": 0.1, "fill_mode": "mirror"})
    with pytest.raises(ValidationError, match="mode"):
        create_layer({"type": "random_flip", "mode": "diagonal"})
