"""SparseRows: summing repeated rows, densifying, and adding to sparse and dense gradients."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.tensor import SparseRows
from dlcli.tensor import sparse


def _dense(rows: np.ndarray, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, values.dtype)
    np.add.at(out, rows, values)
    return out


@pytest.mark.parametrize("n_rows", [10, 100_000])  # a presence mask over the table, or np.unique's sort
def test_from_rows_sums_repeats_into_sorted_distinct_rows(n_rows: int) -> None:
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 10, size=(4, 5))
    values = rng.normal(size=(4, 5, 3)).astype(np.float32)
    grad = SparseRows.from_rows(rows, values, (n_rows, 3))
    assert (n_rows <= sparse._MASK_ROWS_PER_ID * rows.size) == (n_rows == 10)  # both paths are taken
    assert grad.is_coalesced and grad.indices.tolist() == sorted(set(rows.reshape(-1).tolist()))
    assert grad.values.dtype == np.float32 and grad.indices.dtype == np.int64
    np.testing.assert_allclose(grad.to_dense(), _dense(rows.reshape(-1), values.reshape(-1, 3), (n_rows, 3)),
                               rtol=1e-6)


def test_sparse_plus_sparse_concatenates_and_coalesces_to_the_sum() -> None:
    a = SparseRows(np.array([3, 1]), np.array([[1.0, 2.0], [3.0, 4.0]]), (5, 2))
    b = SparseRows(np.array([1]), np.array([[10.0, 20.0]]), (5, 2))
    total = a + b
    assert isinstance(total, SparseRows) and not total.is_coalesced and total.indices.tolist() == [3, 1, 1]
    summed = total.coalesced()
    assert summed.indices.tolist() == [1, 3]
    np.testing.assert_array_equal(summed.values, [[13.0, 24.0], [1.0, 2.0]])
    assert summed.coalesced() is summed


def test_sparse_plus_dense_is_a_new_dense_array_either_way() -> None:
    a = SparseRows(np.array([2, 2]), np.array([[1.0], [2.0]]), (3, 1))
    dense = np.ones((3, 1), np.float32)
    for total in (a + dense, dense + a):
        assert isinstance(total, np.ndarray) and total.dtype == np.float64
        assert total.reshape(-1).tolist() == [1.0, 1.0, 4.0]
    assert dense.reshape(-1).tolist() == [1.0, 1.0, 1.0]  # never written into


def test_add_to_a_strided_view_lands_in_the_view() -> None:
    base = np.zeros((3, 4))
    view = base[:, ::2]
    SparseRows(np.array([1]), np.array([[5.0, 6.0]]), (3, 2)).add_to(view)
    assert base[1].tolist() == [5.0, 0.0, 6.0, 0.0]


def test_mismatched_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        SparseRows(np.array([0, 1]), np.zeros((3, 2)), (4, 2))
    a = SparseRows(np.array([0]), np.zeros((1, 2)), (4, 2))
    with pytest.raises(ValueError, match="shapes"):
        a + SparseRows(np.array([0]), np.zeros((1, 3)), (4, 3))
    with pytest.raises(ValueError, match="cannot add"):
        a + np.zeros((4, 3))
