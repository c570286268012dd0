"""Seeded validation splits and shuffles, mini-batches, one-hot labels and the array checks."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.data.batches import (batch_slices, check_finite, check_labels, check_lengths, one_hot, shuffled_order,
                                split_validation)
from dlcli.errors import DataError


def _arrays(n: int = 100) -> dict[str, np.ndarray]:
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return {"x": x, "y": np.arange(n) % 7}


def test_split_validation_holds_out_the_last_fraction_of_a_seeded_shuffle() -> None:
    arrays = _arrays()
    train, validation = split_validation(arrays, 0.2, np.random.default_rng(42))
    assert len(train["x"]) == 80 and len(validation["x"]) == 20 and len(train["y"]) == 80
    order = np.random.default_rng(42).permutation(100)
    np.testing.assert_array_equal(validation["x"][:, 0] / 3, order[80:])
    np.testing.assert_array_equal(train["y"], order[:80] % 7)  # rows stay paired with their targets
    assert set(train["x"][:, 0] / 3) | set(validation["x"][:, 0] / 3) == set(range(100))


def test_split_validation_is_deterministic_under_a_seed() -> None:
    arrays = _arrays()
    first = split_validation(arrays, 0.25, np.random.default_rng(7))
    again = split_validation(arrays, 0.25, np.random.default_rng(7))
    other = split_validation(arrays, 0.25, np.random.default_rng(8))
    np.testing.assert_array_equal(first[1]["x"], again[1]["x"])
    assert not np.array_equal(first[1]["x"], other[1]["x"])


def test_split_validation_floors_the_split_point_like_keras() -> None:
    train, validation = split_validation(_arrays(10), 0.25, np.random.default_rng(0))
    assert len(train["x"]) == 7 and len(validation["x"]) == 3  # floor(10 * 0.75) = 7


def test_zero_validation_split_keeps_everything_for_training() -> None:
    arrays = _arrays(10)
    train, validation = split_validation(arrays, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(train["x"], arrays["x"])
    assert validation["x"].shape == (0, 3) and validation["y"].shape == (0,)


def test_validation_split_leaving_no_training_example_is_a_data_error() -> None:
    with pytest.raises(DataError, match="0.9 of 5 examples leaves no example for training"):
        split_validation(_arrays(5), 0.9, np.random.default_rng(0))
    _, validation = split_validation(_arrays(5), 0.01, np.random.default_rng(0))
    assert len(validation["x"]) == 1  # floor(4.95) = 4 for training, so validation still gets one


def test_shuffled_order_is_a_seeded_permutation() -> None:
    order = shuffled_order(50, np.random.default_rng(3))
    assert sorted(order.tolist()) == list(range(50)) and order.tolist() != list(range(50))
    np.testing.assert_array_equal(order, shuffled_order(50, np.random.default_rng(3)))


def test_batch_slices_cover_every_index_once_with_a_smaller_last_batch() -> None:
    order = shuffled_order(100, np.random.default_rng(0))
    batches = batch_slices(order, 32)
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    np.testing.assert_array_equal(np.concatenate(batches), order)
    assert [len(b) for b in batch_slices(np.arange(64), 32)] == [32, 32]
    assert batch_slices(np.arange(0), 32) == []
    with pytest.raises(ValueError):
        batch_slices(order, 0)


def test_one_hot_rows_are_float32_unit_vectors() -> None:
    encoded = one_hot(np.array([2, 0, 1, 2]), 3)
    np.testing.assert_array_equal(encoded, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert encoded.dtype == np.float32
    assert one_hot(np.array([[1], [0]], dtype=np.uint8), 2).shape == (2, 1, 2)
    with pytest.raises(DataError, match="found 3 at position 1"):
        one_hot(np.array([0, 3]), 3)


def test_check_lengths_returns_the_count_or_names_the_arrays_that_differ() -> None:
    assert check_lengths({"x": np.zeros((4, 2)), "y": np.zeros(4)}) == 4
    with pytest.raises(DataError) as info:
        check_lengths({"x_train": np.zeros((60000, 2)), "y_train": np.zeros(59999)})
    assert "x_train has 60,000" in str(info.value) and "y_train has 59,999" in str(info.value)
    with pytest.raises(DataError, match="'s' is a scalar"):
        check_lengths({"s": np.float32(1.0)})


def test_check_finite_names_the_array_and_the_first_bad_index() -> None:
    x = np.ones((4, 3), dtype=np.float32)
    check_finite("x", x)
    x[2, 1], x[3, 0] = np.inf, np.nan
    with pytest.raises(DataError) as info:
        check_finite("x_train", x)
    message = str(info.value)
    assert "'x_train'" in message and "2 non-finite values" in message and "inf at index (2, 1)" in message
    check_finite("labels", np.array([1, 2, 3]))  # integers cannot be non-finite
    check_finite("big", np.full(4, 3e38, dtype=np.float32))  # the sum overflows, the entries are fine
    with pytest.raises(DataError, match="nan at index 1"):
        check_finite("v", np.array([0.0, np.nan]))


def test_check_labels_names_the_value_out_of_range() -> None:
    check_labels("y", np.array([0, 1, 2]), 3)
    with pytest.raises(DataError) as info:
        check_labels("y_train", np.array([0, 1, -1, 5]), 3)
    message = str(info.value)
    assert "'y_train'" in message and "[0, 3)" in message and "found -1 at position 2" in message
    assert "2 labels out of range" in message
    check_labels("y", np.array([0.0, 2.0]), 3)  # integral floats are labels too
    with pytest.raises(DataError, match="integer class indices; found 0.5"):
        check_labels("y", np.array([0.0, 0.5]), 3)
    with pytest.raises(DataError, match="dtype <U1"):
        check_labels("y", np.array(["a"]), 3)
