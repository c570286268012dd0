"""conv2d_transpose: gradients in float64 for both paddings, Keras 3.15.1's output sizes and values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from dlcli.layers import create_layer
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients, check_param_gradients
from tests.layers import keras_values as keras
from tests.layers.keras_values import wave
from tests.layers.test_layers import build64

# name: (config, per-example input shape, expected per-example output shape)
CASES = {
    "conv2d_transpose_valid": ({"type": "conv2d_transpose", "filters": 2, "kernel_size": 3, "strides": 2},
                               (3, 2, 2), (7, 5, 2)),
    "conv2d_transpose_same_relu": ({"type": "conv2d_transpose", "filters": 3, "kernel_size": 3, "strides": 2,
                                    "padding": "same", "activation": "relu", "bias_initializer": "ones"},
                                   (2, 3, 2), (4, 6, 3)),
    "conv2d_transpose_same_sigmoid_even_kernel": ({"type": "conv2d_transpose", "filters": 2, "kernel_size": [4, 2],
                                                   "strides": [2, 1], "padding": "same", "activation": "sigmoid"},
                                                  (2, 3, 1), (4, 3, 2)),
    "conv2d_transpose_output_padding": ({"type": "conv2d_transpose", "filters": 1, "kernel_size": 3, "strides": 2,
                                         "output_padding": [1, 0], "use_bias": False}, (2, 2, 2), (6, 5, 1)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_conv2d_transpose_gradient_matches_finite_differences(name: str) -> None:
    config, in_shape, out_shape = CASES[name]
    layer, built = build64(config, in_shape)
    assert built == out_shape
    x = np.random.default_rng(4).normal(size=(2, *in_shape))
    check_op_gradients(lambda t: layer(t), [x])
    check_param_gradients(lambda: layer(Tensor(x)), list(layer.params.values()))
    assert layer(Tensor(x)).shape == (2, *out_shape)


@pytest.mark.parametrize("padding,kernel,strides,output_padding", [
    ("valid", 3, 2, None), ("valid", 4, 2, None), ("valid", 2, 3, None), ("same", 3, 2, None), ("same", 4, 2, None),
    ("same", 2, 3, None), ("same", 3, 2, 0), ("valid", 3, 2, 1)])
def test_conv2d_transpose_matches_keras(padding: str, kernel: int, strides: int, output_padding: int | None) -> None:
    config: dict[str, Any] = {"type": "conv2d_transpose", "filters": 2, "kernel_size": kernel, "strides": strides,
                              "padding": padding}
    if output_padding is not None:
        config["output_padding"] = output_padding
    layer = create_layer(config)
    layer.build((3, 3, 2), np.random.default_rng(0))
    assert layer.params["kernel"].shape == (kernel, kernel, 2, 2)  # Keras: (kh, kw, filters, channels)
    layer.params["kernel"].data[...] = wave(layer.params["kernel"].shape, 0.5, 0.3)
    layer.params["bias"].data[...] = [0.1, -0.2]
    suffix = "" if output_padding is None else f"_OP{output_padding}"
    expected = np.array(getattr(keras, f"CONVT_{padding.upper()}_K{kernel}_S{strides}{suffix}"))
    out = layer(Tensor(wave((1, 3, 3, 2)))).data
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_output_padding_must_stay_below_the_stride() -> None:
    with pytest.raises(ValidationError, match=r"output_padding \[2, 2\] must be less than strides \[2, 2\]"):
        create_layer({"type": "conv2d_transpose", "filters": 1, "kernel_size": 3, "strides": 2, "output_padding": 2})
