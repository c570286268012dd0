"""up_sampling2d, zero_padding2d and cropping2d: gradients in float64, Keras' shapes, forms and values."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.errors import SpecError
from dlcli.layers import create_layer
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients
from tests.layers import keras_values as keras
from tests.layers.keras_values import wave
from tests.layers.test_layers import build64

CASES = {
    "up_sampling2d": ({"type": "up_sampling2d"}, (2, 3, 2), (4, 6, 2)),
    "up_sampling2d_bilinear": ({"type": "up_sampling2d", "size": [3, 2], "interpolation": "bilinear"}, (2, 2, 1),
                               (6, 4, 1)),
    "zero_padding2d": ({"type": "zero_padding2d", "padding": [[1, 0], [2, 1]]}, (2, 2, 2), (3, 5, 2)),
    "cropping2d": ({"type": "cropping2d", "cropping": [1, 2]}, (4, 5, 2), (2, 1, 2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name: str) -> None:
    config, in_shape, out_shape = CASES[name]
    layer, built = build64(config, in_shape)
    assert built == out_shape
    check_op_gradients(lambda t: layer(t), [np.random.default_rng(6).normal(size=(2, *in_shape))])


def test_bilinear_up_sampling_matches_keras() -> None:
    layer = create_layer({"type": "up_sampling2d", "size": [2, 3], "interpolation": "bilinear"})
    layer.build((2, 3, 2), np.random.default_rng(0))
    np.testing.assert_allclose(layer(Tensor(wave((1, 2, 3, 2)))).data, keras.UPSAMPLE_BILINEAR, rtol=1e-5, atol=1e-6)


def test_padding_and_cropping_take_keras_three_forms() -> None:
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    for padding, expected in ((1, ((1, 1), (1, 1))), ([2, 0], ((2, 2), (0, 0))), ([[0, 1], [2, 3]], ((0, 1), (2, 3)))):
        layer = create_layer({"type": "zero_padding2d", "padding": padding})
        assert layer.spec.padding == expected
    layer = create_layer({"type": "zero_padding2d", "padding": [[0, 1], [2, 0]]})
    layer.build((3, 4, 1), np.random.default_rng(0))
    np.testing.assert_array_equal(layer(Tensor(x)).data[0, :, :, 0], np.pad(x[0, :, :, 0], ((0, 1), (2, 0))))
    crop = create_layer({"type": "cropping2d", "cropping": [[1, 0], [1, 2]]})
    assert crop.build((3, 4, 1), np.random.default_rng(0)) == (2, 1, 1)
    np.testing.assert_array_equal(crop(Tensor(x)).data[0, :, :, 0], [[5], [9]])
    with pytest.raises(SpecError, match="leaves nothing of inputs of 3x4"):
        create_layer({"type": "cropping2d", "cropping": [2, 0]}).build((3, 4, 1), np.random.default_rng(0))
