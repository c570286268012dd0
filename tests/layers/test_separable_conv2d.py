"""separable_conv2d and depthwise_conv2d: gradients in float64, Keras' two kernels, Keras 3.15.1's values."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.errors import SpecError
from dlcli.layers import create_layer
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients, check_param_gradients
from tests.layers import keras_values as keras
from tests.layers.keras_values import wave
from tests.layers.test_layers import build64

# name: (config, per-example input shape, expected per-example output shape)
CASES = {
    "separable_conv2d": ({"type": "separable_conv2d", "filters": 3, "kernel_size": 3, "bias_initializer": "ones"},
                         (5, 4, 2), (3, 2, 3)),
    "separable_conv2d_same_multiplier_relu": ({"type": "separable_conv2d", "filters": 2, "kernel_size": [3, 2],
                                               "padding": "same", "depth_multiplier": 2, "activation": "relu",
                                               "bias_initializer": "ones"}, (4, 3, 2), (4, 3, 2)),
    "separable_conv2d_strided_softmax": ({"type": "separable_conv2d", "filters": 3, "kernel_size": 2, "strides": 2,
                                          "activation": "softmax"}, (5, 5, 3), (2, 2, 3)),
    "depthwise_conv2d": ({"type": "depthwise_conv2d", "kernel_size": 3, "depth_multiplier": 2}, (4, 5, 2),
                         (2, 3, 4)),
    "depthwise_conv2d_same_strided_tanh": ({"type": "depthwise_conv2d", "kernel_size": 3, "strides": 2,
                                            "padding": "same", "activation": "tanh", "use_bias": False},
                                           (5, 4, 3), (3, 2, 3)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name: str) -> None:
    config, in_shape, out_shape = CASES[name]
    layer, built = build64(config, in_shape)
    assert built == out_shape
    x = np.random.default_rng(5).normal(size=(2, *in_shape))
    check_op_gradients(lambda t: layer(t), [x])
    check_param_gradients(lambda: layer(Tensor(x)), list(layer.params.values()))


@pytest.mark.parametrize("name,filters,options,bias", [
    ("SEPARABLE_SAME", 3, {"padding": "same", "depth_multiplier": 2}, [0.1, 0.0, -0.1]),
    ("SEPARABLE_VALID_S2", 2, {"strides": 2}, [0.1, -0.1])])
def test_separable_conv2d_matches_keras(name: str, filters: int, options: dict, bias: list[float]) -> None:
    layer = create_layer({"type": "separable_conv2d", "filters": filters, "kernel_size": 3, **options})
    layer.build((5, 4, 2), np.random.default_rng(0))
    multiplier = options.get("depth_multiplier", 1)
    assert [(k, t.shape) for k, t in layer.params.items()] == [
        ("depthwise_kernel", (3, 3, 2, multiplier)), ("pointwise_kernel", (1, 1, 2 * multiplier, filters)),
        ("bias", (filters,))]
    layer.params["depthwise_kernel"].data[...] = wave((3, 3, 2, multiplier), 0.5, 0.1)
    layer.params["pointwise_kernel"].data[...] = wave((1, 1, 2 * multiplier, filters), 0.5, 0.2)
    layer.params["bias"].data[...] = bias
    np.testing.assert_allclose(layer(Tensor(wave((1, 5, 4, 2), 1.0, 0.5))).data, getattr(keras, name), rtol=1e-5,
                               atol=1e-6)


def test_depthwise_conv2d_matches_keras() -> None:
    layer = create_layer({"type": "depthwise_conv2d", "kernel_size": 3, "depth_multiplier": 2, "padding": "same"})
    layer.build((5, 4, 2), np.random.default_rng(0))
    layer.params["kernel"].data[...] = wave((3, 3, 2, 2), 0.5, 0.1)
    layer.params["bias"].data[...] = wave((4,), 0.1, 0.4)
    np.testing.assert_allclose(layer(Tensor(wave((1, 5, 4, 2), 1.0, 0.5))).data, keras.DEPTHWISE_SAME, rtol=1e-5,
                               atol=1e-6)


def test_separable_conv2d_has_far_fewer_weights_than_conv2d() -> None:
    separable = create_layer({"type": "separable_conv2d", "filters": 128, "kernel_size": 3})
    separable.build((32, 32, 64), np.random.default_rng(0))
    assert separable.parameter_counts() == (3 * 3 * 64 + 64 * 128 + 128, 0)  # Keras: 8,896 against conv2d's 73,856
    with pytest.raises(SpecError, match="a 3x3 kernel .* does not fit inputs of 2x2"):
        create_layer({"type": "depthwise_conv2d", "kernel_size": 3}).build((2, 2, 1), np.random.default_rng(0))
