"""CTC decoding on hand-made cases: repeats, blanks, input lengths, and beam search beating the best path."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.decoding import ctc_beam_search_decode, ctc_decode, ctc_greedy_decode


def one_hot_steps(classes: list[int], width: int, sharpness: float = 0.9) -> np.ndarray:
    """(time, width) probabilities: `sharpness` on each step's class, the rest spread evenly."""
    probs = np.full((len(classes), width), (1 - sharpness) / (width - 1))
    probs[np.arange(len(classes)), classes] = sharpness
    return probs


B = 3  # the blank, last of 4 classes


def test_greedy_merges_repeats_keeps_those_split_by_a_blank_and_pads_with_minus_one() -> None:
    y_pred = np.stack([one_hot_steps([1, 1, B, 1, 2, 2], 4),
                       one_hot_steps([B, B, B, B, B, B], 4),   # all blank: an empty sequence
                       one_hot_steps([0, B, 0, 0, B, 2], 4)])
    np.testing.assert_array_equal(ctc_greedy_decode(y_pred), [[1, 1, 2], [-1, -1, -1], [0, 0, 2]])


def test_all_blank_batch_decodes_to_empty_rows() -> None:
    decoded = ctc_greedy_decode(np.stack([one_hot_steps([B] * 4, 4)] * 2))
    assert decoded.shape == (2, 0) and decoded.dtype == np.int64
    assert ctc_beam_search_decode(np.stack([one_hot_steps([B] * 4, 4)] * 2)).shape == (2, 0)


def test_decoding_stops_at_each_input_length() -> None:
    y_pred = np.stack([one_hot_steps([0, 1, 2, 0, 1], 4)] * 3)
    lengths = np.array([5, 2, 0])
    expected = [[0, 1, 2, 0, 1], [0, 1, -1, -1, -1], [-1] * 5]
    np.testing.assert_array_equal(ctc_greedy_decode(y_pred, lengths), expected)
    np.testing.assert_array_equal(ctc_beam_search_decode(y_pred, 4, lengths), expected)


def test_blank_may_be_any_class() -> None:
    y_pred = one_hot_steps([2, 0, 2, 3, 3, 0], 4)[None]
    np.testing.assert_array_equal(ctc_greedy_decode(y_pred, blank=0), [[2, 2, 3]])
    np.testing.assert_array_equal(ctc_beam_search_decode(y_pred, 3, blank=0), [[2, 2, 3]])


def test_beam_search_finds_a_labelling_more_probable_than_the_best_path() -> None:
    # two steps, each p(a) = 0.4, p(blank) = 0.6: the best path is blank blank (0.36, labelling ""), but
    # "a" has the paths a a, a blank and blank a: 0.16 + 0.24 + 0.24 = 0.64
    y_pred = np.array([[[0.4, 0.6], [0.4, 0.6]]])
    np.testing.assert_array_equal(ctc_greedy_decode(y_pred), np.zeros((1, 0)))
    np.testing.assert_array_equal(ctc_beam_search_decode(y_pred, beam_width=2), [[0]])
    np.testing.assert_array_equal(ctc_decode(y_pred, beam_width=2), [[0]])
    np.testing.assert_array_equal(ctc_beam_search_decode(np.log(y_pred) + 5.0, 2, from_logits=True), [[0]])


def test_beam_search_keeps_repeats_apart_only_across_a_blank() -> None:
    # 1 blank 1 is "1 1"; "1 1" through steps 1 1 is "1": beam search must not merge the two
    y_pred = np.stack([one_hot_steps([1, B, 1], 4, 0.97), one_hot_steps([1, 1, B], 4, 0.97)])
    np.testing.assert_array_equal(ctc_beam_search_decode(y_pred, 4), [[1, 1], [1, -1]])


def test_greedy_and_beam_search_agree_on_confident_predictions() -> None:
    rng = np.random.default_rng(0)
    paths = rng.integers(0, 4, size=(50, 12))
    y_pred = np.stack([one_hot_steps(list(p), 4, 0.99) for p in paths])
    np.testing.assert_array_equal(ctc_beam_search_decode(y_pred, 8), ctc_greedy_decode(y_pred))


def test_beam_width_must_be_positive_and_blank_a_class() -> None:
    with pytest.raises(ValueError, match="beam_width"):
        ctc_beam_search_decode(np.ones((1, 2, 3)) / 3, beam_width=0)
    with pytest.raises(ValueError, match="blank 3"):
        ctc_greedy_decode(np.ones((1, 2, 3)) / 3, blank=3)


def test_greedy_decoding_of_masked_scores_ignores_the_padded_steps_wherever_they_are() -> None:
    from dlcli.tensor.mask import valid_steps_first

    # the padded steps hold confident labels (what an output gives there is arbitrary): only the mask drops them
    y_pred = np.stack([one_hot_steps([2, 2, 0, B, 1], 4), one_hot_steps([0, 1, 2, 0, 0], 4)])
    mask = np.array([[False, False, True, True, True], [True, True, True, False, False]])
    np.testing.assert_array_equal(ctc_greedy_decode(y_pred), [[2, 0, 1, -1], [0, 1, 2, 0]])
    moved, lengths = valid_steps_first(y_pred, mask)
    np.testing.assert_array_equal(ctc_decode(moved, 1, lengths), [[0, 1, -1], [0, 1, 2]])
    beams = ctc_beam_search_decode(moved, beam_width=4, input_lengths=lengths)
    np.testing.assert_array_equal(beams, [[0, 1, -1], [0, 1, 2]])
