"""Metrics: hand-computed values, streaming over batches, and Keras' choice of accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import registry
from dlcli.losses import CTCSpec
from dlcli.metrics import accuracy_kind, create_metric


def _stream(name: str | dict, batches: list[tuple[np.ndarray, np.ndarray]], **kwargs: object) -> float:
    metric = create_metric(name, **kwargs)
    for y_pred, y_true in batches:
        metric.update(np.asarray(y_pred, np.float32), np.asarray(y_true))
    return metric.result()


_EYE4 = np.eye(4)  # one-hot rows: per-step class scores of CTC outputs

# every registered metric: (config, batches, expected); batches of unequal size test the weighting
CASES = {
    "accuracy": ("accuracy", [([[0.1, 0.9], [0.8, 0.2]], [1, 1]), ([[0.3, 0.7]], [1])], 2 / 3),
    "binary_accuracy": ("binary_accuracy", [([[0.6], [0.4], [0.5]], [[1], [1], [0]])], 2 / 3),
    "categorical_accuracy": ("categorical_accuracy",
                             [([[0.1, 0.9]], [[0, 1]]), ([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], [[0, 1]] * 3)],
                             0.5),
    "sparse_categorical_accuracy": ("sparse_categorical_accuracy",
                                    [([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]], [[1], [2]]), ([[0.0, 0.0, 1.0]], [2])],
                                    2 / 3),
    "top_k_categorical_accuracy": ({"type": "top_k_categorical_accuracy", "k": 2},
                                   [([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]], [[0, 1, 0], [0, 0, 1]])], 0.5),
    "sparse_top_k_categorical_accuracy": ({"type": "sparse_top_k_categorical_accuracy", "k": 1},
                                          [([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]], [0, 1])], 0.5),
    "mean_absolute_error": ("mean_absolute_error", [([[1.0, 2.0]], [[2.0, 2.0]]), ([[0.0, 0.0]], [[1.0, 3.0]])],
                            (0.5 + 2.0) / 2),
    "mean_squared_error": ("mean_squared_error", [([[1.0, 2.0]], [[2.0, 2.0]]), ([[0.0, 0.0]], [[1.0, 3.0]])],
                           (0.5 + 5.0) / 2),
    # tp = 2 (0.9, 0.6), fp = 1 (0.7), fn = 1 (0.2)
    "precision": ("precision", [([0.9, 0.6, 0.7], [1, 1, 0]), ([0.2, 0.1], [1, 0])], 2 / 3),
    "recall": ("recall", [([0.9, 0.6, 0.7], [1, 1, 0]), ([0.2, 0.1], [1, 0])], 2 / 3),
    # ranks: of the 4 (positive, negative) pairs, 3 are ordered right: sklearn and Keras both give 0.75
    "auc": ("auc", [([0.1, 0.4], [0, 0]), ([0.35, 0.8], [1, 1])], 0.75),
    # CTC outputs, blank 3: best paths 0 0 _ 1 -> [0, 1] (exact), 2 _ 2 2 -> [2, 2] against [2, 1, 2] (1 edit
    # of 3), and all blank -> [] against [1] (1 edit of 1)
    "sequence_accuracy": ("sequence_accuracy", [(_EYE4[[[0, 0, 3, 1], [2, 3, 2, 2]]], [[0, 1, -1], [2, 1, 2]]),
                                                (_EYE4[[[3, 3, 3, 3]]], [[1]])], 1 / 3),
    "edit_distance": ("edit_distance", [(_EYE4[[[0, 0, 3, 1], [2, 3, 2, 2]]], [[0, 1, -1], [2, 1, 2]]),
                                        (_EYE4[[[3, 3, 3, 3]]], [[1]])], (0 + 1 / 3 + 1) / 3),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_metric_matches_hand_computation(name: str) -> None:
    config, batches, expected = CASES[name]
    assert _stream(config, batches) == pytest.approx(expected, rel=1e-9)


def test_every_registered_metric_has_a_case() -> None:
    assert set(registry.metrics.names()) <= set(CASES)


def test_accuracy_is_chosen_from_loss_then_shape() -> None:
    assert accuracy_kind("binary_crossentropy", (3,)) == "binary_accuracy"
    assert accuracy_kind("sparse_categorical_crossentropy", (10,)) == "sparse_categorical_accuracy"
    assert accuracy_kind("categorical_crossentropy", (10,)) == "categorical_accuracy"
    assert accuracy_kind("mean_squared_error", (1,)) == "binary_accuracy"
    assert accuracy_kind(None, (10,), ()) == "sparse_categorical_accuracy"
    assert accuracy_kind(None, (10,), (10,)) == "categorical_accuracy"
    metric = create_metric("accuracy", loss="sparse_categorical_crossentropy", output_shape=(10,))
    assert metric.name == "accuracy" and type(metric).__name__ == "SparseCategoricalAccuracy"


def test_auc_thresholds_quantize_as_keras() -> None:
    # both scores fall between the same two of the 200 thresholds: Keras sees a tie (0.5), sklearn 1.0
    assert _stream("auc", [([0.101, 0.102], [0, 1])]) == pytest.approx(0.5)
    assert _stream("auc", [([0.0, 1.0], [0, 1])]) == pytest.approx(1.0)
    assert _stream("auc", [([1.0, 0.0], [0, 1])]) == pytest.approx(0.0)


def test_metrics_handle_empty_and_one_class_inputs() -> None:
    assert create_metric("precision").result() == 0.0
    assert _stream("recall", [([0.9, 0.8], [0, 0])]) == 0.0
    assert _stream("auc", [([0.3, 0.6], [1, 1])]) == 0.0  # no negatives: Keras' divide_no_nan gives 0


def test_reset_starts_over() -> None:
    metric = create_metric("binary_accuracy")
    metric.update(np.array([[0.9]]), np.array([[0.0]]))
    metric.reset()
    metric.update(np.array([[0.9]]), np.array([[1.0]]))
    assert metric.result() == 1.0


@pytest.mark.parametrize("name", sorted(CASES))
def test_metric_state_round_trip_continues_the_stream(name: str) -> None:
    import json

    config, batches, expected = CASES[name]
    first = create_metric(config)
    first.update(np.asarray(batches[0][0], np.float32), np.asarray(batches[0][1]))
    saved = json.loads(json.dumps(first.state()))  # checkpoints keep it as JSON
    second = create_metric(config)
    second.load_state(saved)
    for y_pred, y_true in batches[1:]:
        second.update(np.asarray(y_pred, np.float32), np.asarray(y_true))
    assert second.result() == pytest.approx(expected, rel=1e-9)


def _result(config: str | dict, y_pred: np.ndarray, y_true: np.ndarray, **kwargs: object) -> float:
    metric = create_metric(config, **kwargs)
    metric.update(y_pred.astype(np.float32), y_true)
    return metric.result()


def test_sequence_metrics_take_the_blank_of_the_ctc_loss() -> None:
    y_pred = _EYE4[[[1, 0, 1, 2, 2]]]  # blank 0: [1, 1, 2]; blank 3 (the default): [1, 0, 1, 2]
    target = np.array([[1, 1, 2]])
    assert _result("sequence_accuracy", y_pred, target) == 0.0
    assert _result("sequence_accuracy", y_pred, target, loss=CTCSpec(blank=0)) == 1.0
    assert _result("edit_distance", y_pred, target, loss=CTCSpec(blank=0)) == 0.0
    assert _result("edit_distance", y_pred, target, loss=CTCSpec()) == pytest.approx(1 / 3)
    # a blank the metric sets itself wins over the loss's
    assert _result({"type": "sequence_accuracy", "blank": 3}, y_pred, target, loss=CTCSpec(blank=0)) == 0.0
    assert create_metric("edit_distance", loss=CTCSpec(blank=0)).name == "edit_distance"


def test_edit_distance_over_an_empty_target_counts_each_predicted_label() -> None:
    # TF's normalize=True would give inf here (and NaN for two empty sequences)
    y_pred = _EYE4[[[0, 3, 1, 3], [3, 3, 3, 3]]]
    assert _result("edit_distance", y_pred, np.array([[-1, -1], [-1, -1]])) == pytest.approx((2 + 0) / 2)
    assert _result("sequence_accuracy", y_pred, np.array([[-1, -1], [-1, -1]])) == pytest.approx(0.5)


def test_sequence_accuracy_needs_the_whole_sequence_not_a_prefix() -> None:
    y_pred = _EYE4[[[0, 3, 1, 3], [0, 3, 1, 2]]]  # [0, 1] and [0, 1, 2]
    assert _result("sequence_accuracy", y_pred, np.array([[0, 1, 2], [0, 1, -1]])) == 0.0


def test_accuracy_of_a_ctc_output_is_sequence_accuracy() -> None:
    metric = create_metric("accuracy", loss=CTCSpec(blank=0))
    assert type(metric).__name__ == "SequenceAccuracy" and metric.name == "accuracy" and metric.spec.blank == 0


def test_sequence_metrics_decode_only_the_steps_the_output_mask_keeps() -> None:
    steps = np.eye(4, dtype=np.float32)  # step scores that decode to the class they name; 3 is the blank
    y_pred = np.stack([steps[[1, 1, 0, 2, 2]], steps[[0, 3, 0, 2, 1]]])  # padded steps hold labels too
    mask = np.array([[False, False, True, True, True], [True, True, True, False, False]])
    y_true = np.array([[0, 2, -1], [0, 0, -1]])
    accuracy, distance = create_metric("sequence_accuracy"), create_metric("edit_distance")
    for metric in (accuracy, distance):
        metric.update(y_pred, y_true, mask)
    assert accuracy.result() == 1.0 and distance.result() == 0.0
    unmasked, unmasked_distance = create_metric("sequence_accuracy"), create_metric("edit_distance")
    unmasked.update(y_pred, y_true)
    unmasked_distance.update(y_pred, y_true)
    # without the mask: [1, 0, 2] (one edit of 2) and [0, 0, 2, 1] (two of 2)
    assert unmasked.result() == 0.0 and unmasked_distance.result() == pytest.approx((1 / 2 + 2 / 2) / 2)


_STEP_MASK = np.array([[True, True, False], [False, True, True]])


@pytest.mark.parametrize("config, y_pred, y_true, expected", [
    # per-step classes: valid steps hit, miss, hit, hit; both padded steps miss
    ("sparse_categorical_accuracy", np.eye(3)[[[0, 1, 2], [0, 2, 1]]], [[0, 0, 0], [1, 2, 1]], 3 / 4),
    ("accuracy", np.eye(3)[[[0, 1, 2], [0, 2, 1]]], [[0, 0, 0], [1, 2, 1]], 3 / 4),
    ("categorical_accuracy", np.eye(3)[[[0, 1, 2], [0, 2, 1]]], np.eye(3)[[[0, 0, 0], [1, 2, 1]]], 3 / 4),
    # one sigmoid per step: valid steps 0.9/1 hit, 0.2/1 miss, 0.7/1 hit, 0.1/0 hit; padded steps miss
    ("binary_accuracy", [[[0.9], [0.2], [0.3]], [[0.6], [0.7], [0.1]]], [[[1], [1], [1]], [[0], [1], [0]]], 3 / 4),
    ("mse", [[[1.0], [2.0], [9.0]], [[9.0], [0.0], [1.0]]], [[[0.0], [0.0], [0.0]], [[0.0], [0.0], [0.0]]],
     (1 + 4 + 0 + 1) / 4),
    # valid: tp (0.9), fn (0.2), tp (0.7), tn (0.1); padded: fp (0.3 vs 0 at 0.25), fp (0.6)
    ({"type": "precision", "thresholds": 0.25}, [[[0.9], [0.2], [0.3]], [[0.6], [0.7], [0.1]]],
     [[[1], [1], [0]], [[0], [1], [0]]], 1.0),
    # the same valid steps; padded: fn (0.1 vs 1), tp (0.6)
    ({"type": "recall", "thresholds": 0.25}, [[[0.9], [0.2], [0.1]], [[0.6], [0.7], [0.1]]],
     [[[1], [1], [1]], [[1], [1], [0]]], 2 / 3),
    # valid scores: positives 0.9, 0.2, 0.7 and the negative 0.1 rank perfectly; the padded negatives do not
    ("auc", [[[0.9], [0.2], [0.95]], [[0.99], [0.7], [0.1]]], [[[1], [1], [0]], [[0], [1], [0]]], 1.0),
])
def test_metrics_leave_out_the_padded_steps_of_a_masked_output(config: str | dict, y_pred: list, y_true: list,
                                                               expected: float) -> None:
    metric = create_metric(config)
    metric.update(np.asarray(y_pred, np.float32), np.asarray(y_true), _STEP_MASK)
    assert metric.result() == pytest.approx(expected, abs=1e-6)
    unmasked = create_metric(config)
    unmasked.update(np.asarray(y_pred, np.float32), np.asarray(y_true))
    assert unmasked.result() != pytest.approx(expected, abs=1e-3)
