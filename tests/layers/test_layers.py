"""Layers: build shapes, parameter counts, gradients (float64) and Keras behaviour of each type."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from dlcli import activations, registry
from dlcli.errors import SpecError
from dlcli.layers import Layer, create_layer
from dlcli.tensor import Tensor, no_grad
from tests.gradcheck import check_op_gradients, check_param_gradients


def build64(config: dict, in_shape: tuple[int, ...], seed: int = 0) -> tuple[Layer, tuple[int, ...]]:
    """A layer built for per-example `in_shape`, its weights cast to float64 for gradient checks."""
    layer = create_layer(config)
    out_shape = layer.build(in_shape, np.random.default_rng(seed))
    for param in layer.params.values():
        param.data = param.data.astype(np.float64)
    return layer, out_shape


# every layer type: (config, per-example input shape, expected per-example output shape, training flag)
CASES = {
    "dense": ({"type": "dense", "units": 3}, (4,), (3,), False),
    "dense_relu": ({"type": "dense", "units": 3, "activation": "relu", "bias_initializer": "ones"}, (4,), (3,),
                   False),
    "dense_softmax": ({"type": "dense", "units": 3, "activation": "softmax"}, (4,), (3,), False),
    "dense_sigmoid_sequence": ({"type": "dense", "units": 2, "activation": "sigmoid"}, (3, 4), (3, 2), False),
    "dense_no_bias_tanh": ({"type": "dense", "units": 2, "activation": "tanh", "use_bias": False}, (4,), (2,),
                           False),
    "activation": ({"type": "activation", "activation": "tanh"}, (5,), (5,), False),
    "dropout": ({"type": "dropout", "rate": 0.3}, (6,), (6,), True),
    "flatten": ({"type": "flatten"}, (2, 3), (6,), False),
    "reshape": ({"type": "reshape", "target_shape": [3, -1]}, (6,), (3, 2), False),
    "rescaling": ({"type": "rescaling", "scale": 0.5, "offset": -1.0}, (4,), (4,), False),
    "permute": ({"type": "permute", "dims": [2, 3, 1]}, (2, 3, 4), (3, 4, 2), False),
    "normalization": ({"type": "normalization", "mean": [1.0, 2.0], "variance": [4.0, 0.25]}, (2,), (2,), False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_gradient_matches_finite_differences(name: str) -> None:
    config, in_shape, out_shape, training = CASES[name]
    layer, built_shape = build64(config, in_shape)
    assert built_shape == out_shape
    x = np.random.default_rng(1).normal(size=(3, *in_shape))
    if "rate" in config:  # the same dropout mask in every pass
        def call(t: Tensor) -> Tensor:
            layer.rng = np.random.default_rng(7)
            return layer(t, training=training)
    else:
        def call(t: Tensor) -> Tensor:
            return layer(t, training=training)
    check_op_gradients(call, [x])
    if layer.params:
        check_param_gradients(lambda: call(Tensor(x)), list(layer.params.values()))
    assert call(Tensor(x)).shape == (3, *out_shape)


def test_every_registered_layer_has_a_case() -> None:
    from tests.cases import covers, layer_cases

    cases = layer_cases()
    missing = [name for name in registry.layers.names() if not covers(name, cases)]
    assert not missing, f"layers without a gradient case in tests/layers: {missing}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_spec_round_trips_through_model_dump(name: str) -> None:
    config = CASES[name][0]
    layer = create_layer(config)
    again = create_layer(layer.spec.model_dump())
    assert again.spec == layer.spec


def test_dense_weights_are_named_and_counted_as_keras() -> None:
    layer = create_layer({"type": "dense", "units": 512, "name": "dense_1"})
    layer.build((784,), np.random.default_rng(0))
    assert list(layer.weights()) == ["dense_1/kernel", "dense_1/bias"]
    assert layer.params["kernel"].shape == (784, 512)
    assert layer.parameter_counts() == (784 * 512 + 512, 0)
    assert not layer.params["bias"].data.any()


def test_dense_rejects_zero_units_and_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        create_layer({"type": "dense", "units": 0})
    with pytest.raises(ValidationError, match="unit"):
        create_layer({"type": "dense", "units": 3, "unit": 4})


def test_dense_softmax_output_keeps_its_logits() -> None:
    layer = create_layer({"type": "dense", "units": 3, "activation": "softmax"})
    layer.build((2,), np.random.default_rng(0))
    x = np.ones((1, 2), np.float32)
    with no_grad():
        evaluated = layer(Tensor(x))
    for out in (layer(Tensor(x)), evaluated):  # in training, and in evaluation
        logits = activations.logits_of(out, "softmax")
        assert logits is not None and activations.logits_of(out, "sigmoid") is None
        np.testing.assert_allclose(logits.data, x @ layer.kernel.data + layer.bias.data, rtol=1e-6)


def test_dropout_is_identity_in_inference_and_seeded_in_training() -> None:
    layer = create_layer({"type": "dropout", "rate": 0.5})
    layer.build((10,), np.random.default_rng(0))
    x = Tensor(np.ones((4, 10), np.float32))
    assert layer(x, training=False) is x
    first = layer(x, training=True).data
    layer.build((10,), np.random.default_rng(0))
    np.testing.assert_array_equal(first, layer(x, training=True).data)


def test_permute_reorders_axes_and_rejects_non_permutations() -> None:
    layer = create_layer({"type": "permute", "dims": [2, 1, 3]})
    assert layer.build((7, 35, 64), np.random.default_rng(0)) == (35, 7, 64)
    x = np.arange(2 * 3 * 4 * 1, dtype=np.float32).reshape(2, 3, 4, 1)
    np.testing.assert_array_equal(layer(Tensor(x)).data, x.transpose(0, 2, 1, 3))
    with pytest.raises(ValidationError, match="must be a permutation of 1..3"):
        create_layer({"type": "permute", "dims": [0, 1, 2]})
    with pytest.raises(SpecError, match="dims \\[2, 1, 3\\] name 3 axes"):
        layer.build((4, 4), np.random.default_rng(0))


def test_rescaling_turns_uint8_pixels_into_float32() -> None:
    layer = create_layer({"type": "rescaling", "scale": 1 / 255})
    out = layer(Tensor(np.array([[0, 255]], np.uint8)))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, [[0.0, 1.0]])


def test_reshape_rejects_a_size_mismatch() -> None:
    layer = create_layer({"type": "reshape", "target_shape": [4, 2]})
    with pytest.raises(SpecError, match="cannot reshape"):
        layer.build((6,), np.random.default_rng(0))


def test_normalization_adapts_and_counts_like_keras() -> None:
    layer = create_layer({"type": "normalization"})
    layer.build((3,), np.random.default_rng(0))
    data = np.random.default_rng(2).normal(loc=[1.0, -2.0, 5.0], scale=[0.5, 2.0, 3.0], size=(1000, 3))
    layer.adapt(data.astype(np.float32))
    out = layer(Tensor(data.astype(np.float32))).data
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-4)
    assert layer.parameter_counts() == (0, 2 * 3 + 1)  # Keras: mean, variance and count, non-trainable
    assert set(layer.state_arrays()) == {"normalization/mean", "normalization/variance", "normalization/count"}


def test_normalization_over_images_normalizes_channels() -> None:
    layer = create_layer({"type": "normalization", "axis": -1})
    layer.build((4, 4, 2), np.random.default_rng(0))
    images = np.random.default_rng(3).normal(loc=[10.0, -3.0], size=(50, 4, 4, 2))
    layer.adapt(images)
    np.testing.assert_allclose(layer.state["mean"], images.reshape(-1, 2).mean(axis=0), rtol=1e-5)


@pytest.mark.parametrize("axis", [0, 4, 5, -5, -7])
def test_normalization_refuses_the_batch_axis_and_axes_out_of_range_naming_the_key(axis: int) -> None:
    # axis = 5 or -7 on rank-4 inputs used to wrap around (% rank) to a real axis, and 0 normalized per example
    layer = create_layer({"type": "normalization", "axis": axis})
    layer.key = "model.layers[0]"
    with pytest.raises(SpecError) as info:
        layer.build((4, 4, 2), np.random.default_rng(0))
    assert str(info.value) == (f"model.layers[0].axis: {axis} is not a feature axis of inputs of rank 4 "
                               "(batch, 4, 4, 2); give one of 1..3, or -1 for the last axis (0 is the batch axis)")


@pytest.mark.parametrize("axis,width", [(1, 4), (3, 2), (-1, 2), (-3, 4)])
def test_normalization_axis_counts_the_batch_axis_as_keras(axis: int, width: int) -> None:
    layer = create_layer({"type": "normalization", "axis": axis})
    layer.build((4, 4, 2), np.random.default_rng(0))
    assert layer.state["mean"].shape == (width,)


def test_normalization_adapts_batch_by_batch_to_the_whole_arrays_statistics() -> None:
    images = np.random.default_rng(4).normal(loc=[10.0, -3.0], scale=[2.0, 0.5], size=(101, 3, 3, 2))
    whole, streamed = (create_layer({"type": "normalization", "axis": -1}) for _ in range(2))
    for layer in (whole, streamed):
        layer.build((3, 3, 2), np.random.default_rng(0))
    whole.adapt(images)
    streamed.adapt(iter([images[:7], images[7:7], images[7:64], images[64:]]))  # uneven batches, one empty
    flat = images.reshape(-1, 2)
    for layer in (whole, streamed):
        np.testing.assert_allclose(layer.state["mean"], flat.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(layer.state["variance"], flat.var(axis=0), rtol=1e-6)
        assert int(layer.state["count"]) == 101 * 9
    np.testing.assert_array_equal(streamed.state["variance"], whole.state["variance"])


def test_unknown_layer_type_suggests_the_closest() -> None:
    from dlcli.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean dense"):
        create_layer({"type": "dens", "units": 3})


def test_dense_matches_pytorch_linear_with_the_kernel_transposed() -> None:
    # torch.nn.functional.linear(x, W.T, b) and its relu / softmax, torch 2.13.0 (PyTorch stores W as (out, in))
    x = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], np.float32)
    kernel = np.array([[0.1, -0.2], [0.3, 0.4], [-0.5, 0.6]], np.float32)
    bias = np.array([0.05, -0.1], np.float32)
    expected = {"linear": [[-1.2, 0.6], [0.65, -0.75]], "relu": [[0.0, 0.6], [0.65, 0.0]],
                "softmax": [[0.14185105, 0.85814887], [0.80218393, 0.19781613]]}
    for activation, values in expected.items():
        layer = create_layer({"type": "dense", "units": 2, "activation": activation})
        layer.build((3,), np.random.default_rng(0))
        layer.params["kernel"].data[...] = kernel
        layer.params["bias"].data[...] = bias
        np.testing.assert_allclose(layer(Tensor(x)).data, values, rtol=1e-6, atol=1e-7)
