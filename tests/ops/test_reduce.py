"""Reductions: gradients over every axis choice, with and without keepdims."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dlcli import ops
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(4)
_x = rng.permutation(24).reshape(2, 3, 4) / 7.0  # distinct values: max has a unique winner

CASES = {
    "sum": (lambda a: ops.sum(a), [_x]),
    "sum_axis1": (lambda a: ops.sum(a, axis=1), [_x]),
    "sum_axes_keepdims": (lambda a: ops.sum(a, axis=(0, 2), keepdims=True), [_x]),
    "mean": (lambda a: ops.mean(a), [_x]),
    "mean_axis_neg1": (lambda a: ops.mean(a, axis=-1), [_x]),
    "mean_keepdims": (lambda a: ops.mean(a, axis=0, keepdims=True), [_x]),
    "max": (lambda a: ops.max(a), [_x]),
    "max_axis1": (lambda a: ops.max(a, axis=1), [_x]),
    "max_keepdims": (lambda a: ops.max(a, axis=-1, keepdims=True), [_x]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_reduce_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


def test_max_splits_gradient_between_ties() -> None:
    from dlcli.tensor import Tensor

    t = Tensor(np.array([1.0, 3.0, 3.0]), requires_grad=True)
    ops.max(t).backward()
    assert t.grad.tolist() == [0.0, 0.5, 0.5]


def test_reductions_match_numpy_values() -> None:
    from dlcli.tensor import Tensor

    t = Tensor(_x)
    np.testing.assert_allclose(ops.sum(t, axis=(0, 2)).data, _x.sum(axis=(0, 2)))
    np.testing.assert_allclose(ops.mean(t, axis=1, keepdims=True).data, _x.mean(axis=1, keepdims=True))
    np.testing.assert_allclose(ops.max(t, axis=0).data, _x.max(axis=0))


def test_the_mean_of_nothing_is_nan_without_a_warning() -> None:
    """An MPI rank with an empty shard takes the mean loss of no example; NumPy's "Mean of empty slice" warning
    reached the user's terminal (a RuntimeWarning, which np.errstate does not silence)."""
    empty = Tensor(np.zeros((0, 3), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole, per_column, kept = ops.mean(empty), ops.mean(empty, axis=0), ops.mean(empty, axis=0, keepdims=True)
    assert whole.shape == () and np.isnan(whole.data) and whole.dtype == np.float32
    assert per_column.shape == (3,) and np.isnan(per_column.data).all()
    assert kept.shape == (1, 3) and np.isnan(kept.data).all()
    assert ops.mean(empty, axis=-1).shape == (0,)
