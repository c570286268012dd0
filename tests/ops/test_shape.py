"""Shape ops: reshape, transpose, concatenate, slicing, split, gather and take_rows."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
from dlcli.tensor import SparseRows, Tensor
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(5)
_x = rng.normal(size=(2, 3, 4))
_table = rng.normal(size=(6, 3))
_ids = np.array([[0, 5, 2, 2], [2, 4, 4, 2]])  # repeats, and rows 1 and 3 never looked up

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
    "take_rows": (lambda t, ids: ops.take_rows(t, ids), [_table, _ids]),
    # the table used twice sparsely and once densely: sparse + sparse and sparse + dense in the tape
    "take_rows_used_three_times": (lambda t, ids: ops.take_rows(t, ids) * ops.take_rows(t, ids[:, ::-1]) + t.sum(),
                                   [_table, _ids]),
    # a table made by an op: its sparse gradient is densified before the op's backward
    "take_rows_of_a_computed_table": (lambda t, ids: ops.take_rows(ops.tanh(t), ids), [_table, _ids]),
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


def test_take_rows_gradient_is_the_summed_distinct_rows() -> None:
    table = Tensor(np.zeros((6, 2), np.float32), requires_grad=True)
    d_out = np.arange(16, dtype=np.float32).reshape(2, 4, 2)
    ops.take_rows(table, _ids).backward(d_out)
    grad = table.grad
    assert isinstance(grad, SparseRows) and grad.is_coalesced and grad.dtype == np.float32
    assert grad.indices.tolist() == [0, 2, 4, 5]
    expected = np.zeros((6, 2), np.float32)
    np.add.at(expected, _ids.reshape(-1), d_out.reshape(-1, 2))
    np.testing.assert_array_equal(grad.values, expected[[0, 2, 4, 5]])


def test_take_rows_with_int32_ids_returns_the_rows() -> None:
    out = ops.take_rows(Tensor(_table), _ids.astype(np.int32))
    np.testing.assert_array_equal(out.data, _table[_ids])
