"""Pooling layers: Keras' output shapes, gradients, spec round trips and shape errors naming the layer."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from dlcli.errors import SpecError
from dlcli.layers import create_layer
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients


def _config(kind: str, **keys: object) -> dict:
    return {"type": kind, **keys}


# name -> (config, per-example input shape, Keras' per-example output shape, worked out by hand from its rules:
# "valid": (size - pool) // stride + 1; "same": ceil(size / stride); global: the channels, or 1s with keepdims)
CASES = {
    "max_pooling2d": (_config("max_pooling2d"), (7, 5, 3), (3, 2, 3)),
    "max_pooling2d_same": (_config("max_pooling2d", padding="same"), (7, 5, 3), (4, 3, 3)),
    "max_pooling2d_same_stride3": (_config("max_pooling2d", strides=3, padding="same"), (7, 5, 2), (3, 2, 2)),
    "max_pooling2d_pool3_stride2": (_config("max_pooling2d", pool_size=3, strides=2), (7, 5, 2), (3, 2, 2)),
    "max_pooling2d_rectangular_stride1": (_config("max_pooling2d", pool_size=[3, 2], strides=[1, 2]), (5, 5, 2),
                                          (3, 2, 2)),
    "max_pooling1d": (_config("max_pooling1d"), (7, 3), (3, 3)),
    "max_pooling1d_same_stride3": (_config("max_pooling1d", strides=3, padding="same"), (7, 3), (3, 3)),
    "max_pooling1d_pool3_stride1_same": (_config("max_pooling1d", pool_size=3, strides=1, padding="same"), (5, 2),
                                         (5, 2)),
    "average_pooling2d": (_config("average_pooling2d"), (7, 5, 3), (3, 2, 3)),
    "average_pooling2d_same_pool3_stride2": (_config("average_pooling2d", pool_size=3, strides=2, padding="same"),
                                             (7, 5, 2), (4, 3, 2)),
    "average_pooling2d_rectangular": (_config("average_pooling2d", pool_size=[2, 3], strides=[2, 1]), (7, 5, 2),
                                      (3, 3, 2)),
    "average_pooling1d": (_config("average_pooling1d", pool_size=3), (7, 3), (2, 3)),
    "average_pooling1d_same_stride2": (_config("average_pooling1d", pool_size=3, strides=2, padding="same"),
                                       (7, 3), (4, 3)),
    "global_average_pooling2d": (_config("global_average_pooling2d"), (7, 5, 3), (3,)),
    "global_average_pooling2d_keepdims": (_config("global_average_pooling2d", keepdims=True), (7, 5, 3),
                                          (1, 1, 3)),
    "global_average_pooling1d": (_config("global_average_pooling1d"), (7, 3), (3,)),
    "global_average_pooling1d_keepdims": (_config("global_average_pooling1d", keepdims=True), (7, 3), (1, 3)),
    "global_max_pooling2d": (_config("global_max_pooling2d"), (7, 5, 3), (3,)),
    "global_max_pooling2d_keepdims": (_config("global_max_pooling2d", keepdims=True), (4, 5, 2), (1, 1, 2)),
    "global_max_pooling1d": (_config("global_max_pooling1d"), (7, 3), (3,)),
    "global_max_pooling1d_keepdims": (_config("global_max_pooling1d", keepdims=True), (7, 3), (1, 3)),
}


def distinct(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    """Values 1/n apart in random order: every max has one winner, so the gradient exists."""
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape) / n


@pytest.mark.parametrize("name", sorted(CASES))
def test_pooling_layer_shape_and_gradient(name: str) -> None:
    config, in_shape, out_shape = CASES[name]
    layer = create_layer(config)
    assert layer.build(in_shape, np.random.default_rng(0)) == out_shape
    assert layer.parameter_counts() == (0, 0)  # Keras: no weights
    x = distinct((2, *in_shape))
    check_op_gradients(lambda t: layer(t, training=True), [x])
    assert layer(Tensor(x)).shape == (2, *out_shape)


@pytest.mark.parametrize("name", sorted(CASES))
def test_pooling_spec_round_trips_through_model_dump(name: str) -> None:
    layer = create_layer(CASES[name][0])
    assert create_layer(layer.spec.model_dump()).spec == layer.spec


def test_pooling_shapes_of_the_benchmark_convnet_match_keras() -> None:
    # Conv2D(32, 3) -> MaxPooling2D(2) -> Conv2D(64, 3) -> MaxPooling2D(2) on 28x28 MNIST, from model.summary()
    pool = create_layer({"type": "max_pooling2d"})
    assert pool.build((26, 26, 32), np.random.default_rng(0)) == (13, 13, 32)
    assert pool.build((11, 11, 64), np.random.default_rng(0)) == (5, 5, 64)


def test_pooling_layers_compute_max_and_mean() -> None:
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    layers = {kind: create_layer({"type": kind}) for kind in ("max_pooling2d", "average_pooling2d",
                                                              "global_max_pooling2d", "global_average_pooling2d")}
    for layer in layers.values():
        layer.build((4, 4, 1), np.random.default_rng(0))
    assert layers["max_pooling2d"](Tensor(x)).data.reshape(-1).tolist() == [5, 7, 13, 15]
    assert layers["average_pooling2d"](Tensor(x)).data.reshape(-1).tolist() == [2.5, 4.5, 10.5, 12.5]
    assert layers["global_max_pooling2d"](Tensor(x)).data.tolist() == [[15.0]]
    assert layers["global_average_pooling2d"](Tensor(x)).data.tolist() == [[7.5]]


@pytest.mark.parametrize("kind, in_shape, expected", [
    ("max_pooling2d", (784,), "expected rank 4 (batch, height, width, channels), found rank 2 (batch, 784)"),
    ("average_pooling2d", (28, 28), "expected rank 4 (batch, height, width, channels), found rank 3 (batch, 28, 28)"),
    ("max_pooling1d", (28, 28, 1), "expected rank 3 (batch, steps, channels), found rank 4 (batch, 28, 28, 1)"),
    ("average_pooling1d", (10,), "expected rank 3 (batch, steps, channels), found rank 2 (batch, 10)"),
    ("global_max_pooling2d", (10, 3), "expected rank 4 (batch, height, width, channels), found rank 3"),
    ("global_average_pooling1d", (10,), "expected rank 3 (batch, steps, channels), found rank 2 (batch, 10)"),
])
def test_wrong_input_rank_is_a_spec_error_naming_the_layer(kind: str, in_shape: tuple[int, ...],
                                                           expected: str) -> None:
    layer = create_layer({"type": kind})
    layer.key = "model.layers[2]"
    with pytest.raises(SpecError) as info:
        layer.connect([in_shape], np.random.default_rng(0))
    message = str(info.value)
    assert message.startswith("model.layers[2]: ") and expected in message and "add a reshape layer" in message


def test_valid_pool_larger_than_the_input_is_a_spec_error() -> None:
    layer = create_layer({"type": "max_pooling2d", "pool_size": [3, 3]})
    layer.key = "model.layers[4]"
    with pytest.raises(SpecError, match=r'model.layers\[4\]: pool_size 3 is larger than the input\'s width \(2\)'
                                        r'.*padding = "same"'):
        layer.build((5, 2, 8), np.random.default_rng(0))
    assert create_layer({"type": "max_pooling2d", "pool_size": 3, "padding": "same"}).build(
        (5, 2, 8), np.random.default_rng(0)) == (2, 1, 8)


def test_pooling_specs_reject_bad_values() -> None:
    for bad in ({"pool_size": 0}, {"strides": [2, 0]}, {"padding": "causal"}, {"pool_size": [2, 2, 2]}):
        with pytest.raises(ValidationError):
            create_layer({"type": "max_pooling2d", **bad})
    with pytest.raises(ValidationError):
        create_layer({"type": "max_pooling1d", "pool_size": [2, 2]})
