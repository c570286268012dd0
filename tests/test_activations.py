"""The activation table: each row's op (gradients, extreme inputs, PyTorch's values), its kernel code, the one
fusion rule, and the logits link the crossentropies read."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import activations, ops, registry
from dlcli.activations import Linear, Relu, Sigmoid, Softmax, Tanh
from dlcli.ops.conv import geometry
from dlcli.tensor import Tensor, no_grad
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(2)
_x = rng.uniform(-3, 3, size=(4, 5))
_x[np.abs(_x) < 1e-2] = 0.5  # relu has no derivative at 0: keep samples off the kink

CASES = {
    "relu": (ops.relu, [_x]),
    "sigmoid": (ops.sigmoid, [_x]),
    "tanh": (ops.tanh, [_x]),
    "softmax": (ops.softmax, [_x]),
    "log_softmax": (ops.log_softmax, [_x]),
    "softmax_axis0": (lambda a: ops.softmax(a, axis=0), [_x]),
    "log_softmax_axis0": (lambda a: ops.log_softmax(a, axis=0), [_x]),
    "linear": (lambda a: activations.apply("linear", a) * 1.0, [_x]),
    "gelu": (lambda a: activations.apply("gelu", a), [_x * 2]),
    "gelu_approximate": (lambda a: activations.apply("gelu_approximate", a), [_x * 2]),
    "silu": (lambda a: activations.apply("silu", a), [_x * 2]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_activation_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


def test_softmax_and_sigmoid_stay_finite_for_huge_logits() -> None:
    x = np.array([[1000.0, -1000.0, 0.0], [-100.0, 100.0, 100.0]], np.float32)
    from dlcli.tensor import Tensor

    s = ops.softmax(Tensor(x)).data
    assert np.isfinite(s).all()
    np.testing.assert_allclose(s, [[1, 0, 0], [0, 0.5, 0.5]], atol=1e-7)
    ls = ops.log_softmax(Tensor(x)).data
    np.testing.assert_allclose(ls[0], [0.0, -2000.0, -1000.0])
    sig = ops.sigmoid(Tensor(np.array([-1000.0, 1000.0], np.float32))).data
    assert sig.tolist() == [0.0, 1.0]


def test_activation_values_match_pytorch() -> None:
    # torch.relu/sigmoid/tanh/softmax/log_softmax of x = [[-1.5, 0.25, 2.0]], recorded with torch 2.13.0
    from dlcli.tensor import Tensor

    x = Tensor(np.array([[-1.5, 0.25, 2.0]], np.float32))
    np.testing.assert_allclose(ops.sigmoid(x).data, [[0.18242553, 0.56217653, 0.88079703]], rtol=1e-6)
    np.testing.assert_allclose(ops.tanh(x).data, [[-0.90514827, 0.24491866, 0.96402758]], rtol=1e-6)
    np.testing.assert_allclose(ops.softmax(x).data, [[0.02508148, 0.14433394, 0.83058453]], rtol=1e-6)
    np.testing.assert_allclose(ops.log_softmax(x).data, [[-3.68562555, -1.93562555, -0.18562558]], rtol=1e-6)


def test_gelu_and_silu_match_keras() -> None:
    # keras.activations.gelu(x, approximate=False / True) and silu(x) of linspace(-4, 4, 9), Keras 3.15.1 (torch)
    x = Tensor(np.linspace(-4, 4, 9).astype(np.float32))
    keras_values = {
        "gelu": [-0.0001265, -0.0040502, -0.0455003, -0.1586553, 0.0, 0.8413447, 1.9544997, 2.9959497, 3.9998736],
        "gelu_approximate": [-7.02e-05, -0.0036374, -0.0454023, -0.158808, 0.0, 0.841192, 1.9545977, 2.9963627,
                             3.9999299],
        "silu": [-0.0719448, -0.1422776, -0.2384058, -0.2689414, 0.0, 0.7310586, 1.7615941, 2.8577225, 3.928055],
    }
    for name, values in keras_values.items():
        # Keras' float32 1 + erf(x / sqrt(2)) cancels for x << 0 (-1.265e-4 at -4, -4.0502e-3 at -3); dlcli's
        # erfc form gives the true -1.2668e-4 and -4.0497e-3: hence the absolute tolerance
        np.testing.assert_allclose(activations.apply(name, x).data, values, rtol=1e-5, atol=6e-7)
    assert registry.activations.get("swish") is registry.activations.get("silu")


def test_every_registered_activation_has_a_gradient_case() -> None:
    missing = [name for name in registry.activations.names() if name not in CASES]
    assert not missing, f"activations without a gradient case: {missing}"


def test_the_table_codes_are_the_kernels_codes() -> None:
    from dlcli.kernels import conv, recurrent

    assert (Linear.code, Relu.code, Tanh.code, Sigmoid.code) == (recurrent.LINEAR, recurrent.RELU, recurrent.TANH,
                                                                   recurrent.SIGMOID)
    assert (Linear.code, Relu.code, Tanh.code) == (conv.LINEAR, conv.RELU, conv.TANH)
    assert registry.activations.get("softmax").code is None and registry.activations.get("log_softmax").code is None


def test_one_fusion_rule_keeps_the_activations_a_crossentropy_reads_back_separate() -> None:
    assert activations.fusable_names() == ["linear", "relu", "tanh"]
    assert activations.fusion("relu") == (Relu, None) and activations.fusion("linear") == (Linear, None)
    assert activations.fusion("sigmoid") == (Linear, Sigmoid) and activations.fusion("softmax") == (Linear, Softmax)
    assert activations.fusion("log_softmax") == (Linear, registry.activations.get("log_softmax"))


@pytest.mark.parametrize("name", ["linear", "relu", "tanh"])
def test_fused_affine_and_conv_equal_the_separate_activation(name: str) -> None:
    x, w, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 5)), rng.normal(size=5)
    np.testing.assert_allclose(ops.affine(Tensor(x), Tensor(w), Tensor(b), name).data,
                               activations.apply(name, Tensor(x @ w + b)).data, rtol=1e-12)
    images, kernel = rng.normal(size=(2, 5, 4, 2)), rng.normal(size=(3, 2, 2, 3))
    g = geometry(5, 4, (3, 2), (1, 1), (1, 1), "valid")
    linear = ops.conv2d(Tensor(images), Tensor(kernel), Tensor(b[:3]), g)
    np.testing.assert_allclose(ops.conv2d(Tensor(images), Tensor(kernel), Tensor(b[:3]), g, name).data,
                               activations.apply(name, linear).data, rtol=1e-12)


def test_softmax_and_sigmoid_outputs_name_their_logits_even_without_a_tape() -> None:
    z = Tensor(_x)
    assert activations.logits_of(ops.softmax(z), "softmax") is z
    assert activations.logits_of(ops.sigmoid(z), "sigmoid") is z
    with no_grad():  # evaluation: nothing is recorded, but the loss must still work from the logits
        out = ops.softmax(Tensor(_x, requires_grad=True))
        assert out.op is not None and not out.requires_grad and activations.logits_of(out, "softmax") is not None
    assert activations.logits_of(ops.softmax(z), "sigmoid") is None
    assert activations.logits_of(ops.softmax(z, axis=0), "softmax") is None  # not over the class axis
    assert activations.logits_of(ops.relu(z), "softmax") is None and activations.logits_of(z, "softmax") is None
    with no_grad():
        assert ops.relu(Tensor(_x, requires_grad=True)).op is None  # other ops keep nothing without a tape
