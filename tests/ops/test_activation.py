"""Activation ops: gradients and numerically extreme inputs."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
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
