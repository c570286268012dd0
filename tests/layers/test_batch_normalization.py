"""BatchNormalization: gradients, Keras' weights and counts, moving statistics, training vs inference."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.errors import SpecError
from dlcli.layers import Layer, create_layer
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients, check_param_gradients


def build64(config: dict, in_shape: tuple[int, ...]) -> Layer:
    """The layer built for per-example `in_shape`, its weights cast to float64 for gradient checks."""
    layer = create_layer(config)
    assert layer.build(in_shape, np.random.default_rng(0)) == in_shape
    for param in layer.params.values():
        param.data = param.data.astype(np.float64) + np.random.default_rng(1).normal(0, 0.5, param.shape)
    return layer


# name -> (config, per-example input shape, training)
CASES = {
    "batch_normalization": ({"type": "batch_normalization"}, (4, 5, 3), True),
    "batch_normalization_inference": ({"type": "batch_normalization"}, (4, 5, 3), False),
    "batch_normalization_dense": ({"type": "batch_normalization", "momentum": 0.9}, (6,), True),
    "batch_normalization_axis1": ({"type": "batch_normalization", "axis": 1}, (2, 4, 5), True),
    "batch_normalization_axis1_inference": ({"type": "batch_normalization", "axis": 1}, (2, 4, 5), False),
    "batch_normalization_no_center_no_scale": ({"type": "batch_normalization", "center": False, "scale": False},
                                               (5, 3), True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_normalization_gradients(name: str) -> None:
    config, in_shape, training = CASES[name]
    layer = build64(config, in_shape)
    if not training:  # moving statistics other than 0 and 1, so inference has something to get wrong
        layer.state["moving_mean"][...] = np.linspace(-1, 1, layer.state["moving_mean"].size)
        layer.state["moving_variance"][...] = np.linspace(0.5, 2, layer.state["moving_variance"].size)
    x = np.random.default_rng(2).normal(1.0, 2.0, size=(3, *in_shape))
    check_op_gradients(lambda t: layer(t, training=training), [x])
    if layer.params:
        check_param_gradients(lambda: layer(Tensor(x), training=training), list(layer.params.values()))
    assert layer(Tensor(x), training=training).shape == x.shape


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_normalization_spec_round_trips_through_model_dump(name: str) -> None:
    layer = create_layer(CASES[name][0])
    assert create_layer(layer.spec.model_dump()).spec == layer.spec


def test_weights_state_and_counts_follow_keras() -> None:
    layer = create_layer({"type": "batch_normalization", "name": "bn"})
    layer.build((11, 11, 64), np.random.default_rng(0))
    assert list(layer.weights()) == ["bn/gamma", "bn/beta"]
    assert list(layer.state_arrays()) == ["bn/moving_mean", "bn/moving_variance"]
    assert layer.parameter_counts() == (2 * 64, 2 * 64)  # Keras' summary: 256 params, 128 non-trainable
    assert (layer.params["gamma"].data == 1).all() and not layer.params["beta"].data.any()
    assert not layer.state["moving_mean"].any() and (layer.state["moving_variance"] == 1).all()
    assert all(a.dtype == np.float32 for a in layer.state.values())
    assert all(p.data.dtype == np.float32 for p in layer.params.values())
    plain = create_layer({"type": "batch_normalization", "center": False})
    plain.build((10,), np.random.default_rng(0))
    assert plain.parameter_counts() == (10, 20) and list(plain.weights()) == ["batch_normalization/gamma"]


def test_training_normalizes_by_the_batch_and_updates_moving_statistics_with_momentum() -> None:
    layer = create_layer({"type": "batch_normalization", "momentum": 0.9, "epsilon": 0.01})
    layer.build((3, 2), np.random.default_rng(0))
    moving_mean, moving_variance = layer.state["moving_mean"], layer.state["moving_variance"]
    rng = np.random.default_rng(3)
    batches = [rng.normal(4.0, 3.0, size=(5, 3, 2)).astype(np.float32) for _ in range(2)]
    expected_mean, expected_variance = np.zeros(2), np.ones(2)
    for x in batches:
        out = layer(Tensor(x), training=True).data
        mean, variance = x.mean(axis=(0, 1)), x.var(axis=(0, 1))  # the biased variance, as Keras 3 keeps
        np.testing.assert_allclose(out, (x - mean) / np.sqrt(variance + 0.01), rtol=1e-4, atol=1e-5)
        expected_mean = expected_mean * 0.9 + mean * 0.1  # Keras: moving * momentum + batch * (1 - momentum)
        expected_variance = expected_variance * 0.9 + variance * 0.1
        np.testing.assert_allclose(layer.state["moving_mean"], expected_mean, rtol=1e-5)
        np.testing.assert_allclose(layer.state["moving_variance"], expected_variance, rtol=1e-5)
    # updated in place: a checkpoint restore writes into these same arrays
    assert layer.state["moving_mean"] is moving_mean and layer.state["moving_variance"] is moving_variance


def test_a_batch_of_no_example_leaves_the_moving_statistics_alone() -> None:
    """An MPI rank's empty shard of a short last batch: its mean and variance are NaN and must not be folded in."""
    layer = create_layer({"type": "batch_normalization"})
    layer.build((3,), np.random.default_rng(0))
    out = layer(Tensor(np.zeros((0, 3), np.float32)), training=True)
    assert out.shape == (0, 3)
    np.testing.assert_array_equal(layer.state["moving_mean"], np.zeros(3))
    np.testing.assert_array_equal(layer.state["moving_variance"], np.ones(3))


def test_inference_uses_the_moving_statistics_and_leaves_them_alone() -> None:
    layer = create_layer({"type": "batch_normalization"})
    layer.build((4, 4, 3), np.random.default_rng(0))
    x = np.random.default_rng(4).normal(2.0, 5.0, size=(8, 4, 4, 3)).astype(np.float32)
    layer(Tensor(x), training=True)
    layer.params["gamma"].data[...] = [1.5, -0.5, 2.0]
    layer.params["beta"].data[...] = [0.1, 0.2, -0.3]
    moving_mean, moving_variance = layer.state["moving_mean"].copy(), layer.state["moving_variance"].copy()
    inference = layer(Tensor(x)).data
    expected = (x - moving_mean) / np.sqrt(moving_variance + 1e-3) * [1.5, -0.5, 2.0] + [0.1, 0.2, -0.3]
    np.testing.assert_allclose(inference, expected, rtol=1e-5, atol=1e-5)
    assert inference.dtype == np.float32
    np.testing.assert_array_equal(layer(Tensor(x)).data, inference)  # a second inference call: same output
    np.testing.assert_array_equal(layer.state["moving_mean"], moving_mean)
    np.testing.assert_array_equal(layer.state["moving_variance"], moving_variance)
    # after one training step from (0, 1) with momentum 0.99 the moving statistics are still far from the batch's
    batch = (x - x.mean(axis=(0, 1, 2))) / np.sqrt(x.var(axis=(0, 1, 2)) + 1e-3) * [1.5, -0.5, 2.0] \
        + [0.1, 0.2, -0.3]
    assert np.abs(inference - batch).max() > 1.0


def test_pytorch_running_variance_differs_from_keras_moving_variance() -> None:
    # PyTorch's running_var averages the unbiased batch variance; Keras' and ours the biased one
    x = np.array([[1.0], [2.0], [4.0], [7.0]], np.float32)
    layer = create_layer({"type": "batch_normalization", "momentum": 0.0})  # the moving values become the batch's
    layer.build((1,), np.random.default_rng(0))
    layer(Tensor(x), training=True)
    assert layer.state["moving_variance"].item() == pytest.approx(x.var())  # 5.25; PyTorch would keep 7.0
    assert layer.state["moving_mean"].item() == pytest.approx(3.5)


@pytest.mark.parametrize("axis", [0, 3, -4])
def test_axis_outside_the_channel_axes_is_a_spec_error_naming_the_layer(axis: int) -> None:
    layer = create_layer({"type": "batch_normalization", "axis": axis})
    layer.key = "model.layers[1]"
    with pytest.raises(SpecError) as info:
        layer.build((5, 4), np.random.default_rng(0))
    assert str(info.value) == (f"model.layers[1].axis: {axis} is not a channel axis of inputs of rank 3 "
                               "(batch, 5, 4); give one of 1..2, or -1 for the last axis (0 is the batch axis)")


def test_batch_normalization_rejects_bad_momentum_and_epsilon() -> None:
    from pydantic import ValidationError

    for bad in ({"momentum": 1.5}, {"epsilon": 0.0}, {"gamma_initializer": "onez"}):
        with pytest.raises(ValidationError):
            create_layer({"type": "batch_normalization", **bad})
