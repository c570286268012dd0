"""Elementwise ops: gradients (with broadcasting and reuse) and values."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
from dlcli.ops.elementwise import unbroadcast
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(1)


def _u(*shape: int, low: float = -2.0, high: float = 2.0) -> np.ndarray:
    return rng.uniform(low, high, size=shape)


def _apart(*shape: int) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays whose entries never tie, so max/min have a derivative."""
    a = _u(*shape)
    return a, a + rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.2, 1.0, size=shape)


# name -> (function of tensors, inputs); broadcasting cases use shapes that stretch and add axes
CASES = {
    "add": (ops.add, [_u(3, 4), _u(4)]),
    "sub": (ops.sub, [_u(3, 1), _u(2, 3, 4)]),
    "mul": (ops.mul, [_u(3, 4), _u(3, 1)]),
    "div": (ops.div, [_u(2, 3), _u(3, low=0.5, high=2.0)]),
    "neg": (ops.neg, [_u(3, 4)]),
    "pow": (ops.pow, [_u(3, 4, low=0.5, high=2.0), _u(4, low=-1.5, high=2.5)]),
    "exp": (ops.exp, [_u(3, 4)]),
    "log": (ops.log, [_u(3, 4, low=0.2, high=3.0)]),
    "sqrt": (ops.sqrt, [_u(3, 4, low=0.2, high=3.0)]),
    "abs": (ops.abs, [_u(3, 4) + 0.05 * np.sign(_u(3, 4))]),
    "maximum": (ops.maximum, list(_apart(3, 4))),
    "minimum": (ops.minimum, list(_apart(3, 4))),
    "clip": (lambda a: ops.clip(a, -0.5, 0.7), [np.array([[-1.0, -0.3, 0.2], [0.69, 0.71, 1.5]])]),
    "where": (ops.where, [rng.random((3, 4)) > 0.5, _u(3, 4), _u(4)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_elementwise_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


def test_value_used_twice_accumulates_both_paths() -> None:
    x = _u(3, 4)
    check_op_gradients(lambda a: a * a + ops.exp(a) * a, [x])
    t = Tensor(x.copy(), requires_grad=True)
    (t * t + t).sum().backward()
    np.testing.assert_allclose(t.grad, 2 * x + 1)


def test_leaf_gradient_accumulates_across_backward_calls() -> None:
    t = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (t * 3.0).sum().backward()
    (t * t).sum().backward()
    np.testing.assert_allclose(t.grad, [3.0 + 2.0, 3.0 + 4.0])


def test_scalar_operands_keep_float32() -> None:
    t = Tensor(np.ones((2, 2), np.float32), requires_grad=True)
    out = (2.0 * t + 1) / 3 - t**2
    assert out.dtype == np.float32
    out.sum().backward()
    assert t.grad.dtype == np.float32


def test_reverse_operators_compute_the_right_side() -> None:
    t = Tensor(np.array([2.0, 4.0]))
    np.testing.assert_allclose((1.0 - t).data, [-1.0, -3.0])
    np.testing.assert_allclose((8.0 / t).data, [4.0, 2.0])
    np.testing.assert_allclose((2.0**t).data, [4.0, 16.0])


def test_unbroadcast_sums_added_and_stretched_axes() -> None:
    g = np.ones((2, 3, 4))
    assert unbroadcast(g, (3, 1)).tolist() == [[8.0]] * 3
    assert unbroadcast(g, (4,)).tolist() == [6.0] * 4
    assert unbroadcast(g, ()).item() == 24.0


def test_clip_passes_gradient_only_inside_bounds() -> None:
    t = Tensor(np.array([-2.0, 0.0, 2.0]), requires_grad=True)
    ops.clip(t, -1.0, 1.0).sum().backward()
    assert t.grad.tolist() == [0.0, 1.0, 0.0]
