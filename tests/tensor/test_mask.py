"""Step masks: which values a mask covers, each entry's share of a masked loss, and each row's valid steps first."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.tensor.mask import mask_covers, step_weights, valid_step_order, valid_steps_first

MASK = np.array([[True, True, False, False], [False, True, True, True], [True, False, True, False]])


def test_a_mask_covers_values_whose_first_two_axes_are_its_own() -> None:
    assert mask_covers(MASK, (3, 4)) and mask_covers(MASK, (3, 4, 2, 5))
    assert not mask_covers(MASK, (3, 5, 2)) and not mask_covers(MASK, (3,)) and not mask_covers(None, (3, 4))


def test_step_weights_share_one_over_the_valid_entries_and_ignore_masks_that_do_not_fit() -> None:
    weights = step_weights(MASK, MASK.shape + (2,))
    assert weights.shape == MASK.shape + (1,)
    np.testing.assert_allclose(weights[..., 0], MASK / (MASK.sum() * 2))
    assert np.broadcast_to(weights, MASK.shape + (2,)).sum() == pytest.approx(1.0)
    assert step_weights(None, (3, 4)) is None
    assert step_weights(MASK, (3, 5, 2)) is None  # not (batch, time) of these values
    assert not step_weights(np.zeros_like(MASK), MASK.shape).any()  # no valid step: a zero loss, not a NaN


def test_valid_steps_first_moves_left_padding_behind_the_data_and_counts_the_steps() -> None:
    scores = np.arange(2 * 4).reshape(2, 4, 1).astype(np.float32)
    mask = np.array([[False, True, True, True], [True, True, False, False]])
    moved, steps = valid_steps_first(scores, mask)
    np.testing.assert_array_equal(moved[..., 0], [[1, 2, 3, 0], [4, 5, 6, 7]])
    np.testing.assert_array_equal(steps, [3, 2])
    same, none = valid_steps_first(scores, None)
    assert same is scores and none is None


def test_a_mask_already_valid_first_needs_no_reordering() -> None:
    order, steps = valid_step_order(np.array([[True, True, False], [True, False, False]]))
    assert order is None and steps.tolist() == [2, 1]
    order, steps = valid_step_order(MASK)
    assert order.tolist()[1] == [1, 2, 3, 0] and steps.tolist() == [2, 3, 2]
