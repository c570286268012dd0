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
