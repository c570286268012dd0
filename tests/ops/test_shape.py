"""Shape ops: reshape, transpose, concatenate, slicing, split and gather."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(5)
_x = rng.normal(size=(2, 3, 4))

CASES = {
    "reshape": (lambda a: ops.reshape(a, (6, -1)), [_x]),
    "transpose": (lambda a: ops.transpose(a, (2, 0, 1)), [_x]),
    "transpose_reversed": (lambda a: ops.transpose(a), [_x]),
    "concatenate": (lambda a, b: ops.concatenate([a, b, a], axis=1), [_x, rng.normal(size=(2, 2, 4))]),
    "getitem": (lambda a: a[:, 1:, ::2], [_x]),
    "getitem_fancy_repeats": (lambda a: a[np.array([0, 2, 2, 1])], [rng.normal(size=(3, 4))]),
    "getitem_boolean": (lambda a: a[np.array([True, False, True])], [rng.normal(size=(3, 4))]),
    "split": (lambda a: ops.split(a, [1, 3], axis=-1)[1] * ops.split(a, 2, axis=-1)[0], [_x]),
    "gather": (lambda a: ops.gather(a, np.array([[0, 2], [2, 2]]), axis=0), [rng.normal(size=(3, 4))]),
    "gather_axis2": (lambda a: ops.gather(a, np.array([3, 0, 3]), axis=2), [_x]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_shape_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


def test_split_returns_the_pieces_numpy_gives() -> None:
    parts = ops.split(Tensor(_x), [1, 3], axis=-1)
    for got, want in zip(parts, np.split(_x, [1, 3], axis=-1)):
        np.testing.assert_array_equal(got.data, want)
    with pytest.raises(ValueError, match="equal parts"):
        ops.split(Tensor(_x), 3, axis=-1)


def test_gather_repeated_rows_add_their_gradients() -> None:
    table = Tensor(np.zeros((3, 2)), requires_grad=True)
    ops.gather(table, np.array([1, 1, 2])).sum().backward()
    assert table.grad.tolist() == [[0, 0], [2, 2], [1, 1]]


def test_tensor_methods_bind_to_ops() -> None:
    t = Tensor(_x)
    assert t.reshape(6, 4).shape == (6, 4)
    assert t.reshape((4, 6)).shape == (4, 6)
    assert t.T.shape == (4, 3, 2)
    assert t.transpose(1, 0, 2).shape == (3, 2, 4)
