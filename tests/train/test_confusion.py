"""Confusion matrices by hand: argmax and thresholds, one-hot and sparse targets, masked steps, class names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.errors import SpecError
from dlcli.graph import build_model
from dlcli.spec.load import validate_spec
from dlcli.train.confusion import confusion_matrices


def model(loss: Any, units: int = 3, activation: str = "softmax") -> Any:
    doc = {"name": "m", "data": {"train": "x.npz"},
           "model": {"input": {"shape": [2]}, "layers": [{"type": "dense", "units": units, "activation": activation}]},
           "train": {"loss": loss}}
    return build_model(validate_spec(doc, Path("m.toml")).model, np.random.default_rng(0),
                       validate_spec(doc, Path("m.toml")))


def test_sparse_targets_give_the_hand_counted_matrix_precision_and_recall() -> None:
    m = model("sparse_categorical_crossentropy")
    scores = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    (found,) = confusion_matrices(m, {"dense": np.array([0, 1, 2, 1, 2])}, {"dense": scores}, {"dense": None},
                                  {"dense": ["cat", "dog", "fox"]})
    # true 0 -> 0; true 1 -> 1 and 0; true 2 -> 2 and 1
    assert found.matrix.tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1]] and found.classes == ["cat", "dog", "fox"]
    assert found.precision.tolist() == pytest.approx([1 / 2, 1 / 2, 1.0])
    assert found.recall.tolist() == pytest.approx([1.0, 1 / 2, 1 / 2])
    assert found.support.tolist() == [1, 2, 2]


def test_one_hot_targets_and_a_class_never_predicted_has_precision_0() -> None:
    m = model("categorical_crossentropy")
    scores = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])
    targets = np.eye(3)[[0, 2, 1]]
    (found,) = confusion_matrices(m, {"dense": targets}, {"dense": scores}, {"dense": None}, {})
    assert found.matrix.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0]] and found.classes == ["0", "1", "2"]
    assert found.precision.tolist() == pytest.approx([0.5, 1.0, 0.0])  # nothing predicted as 2: 0, as Keras says


def test_one_sigmoid_is_class_1_above_one_half_or_above_logit_0() -> None:
    probabilities = model("binary_crossentropy", units=1, activation="sigmoid")
    (found,) = confusion_matrices(probabilities, {"dense": np.array([[1.0], [0.0], [1.0]])},
                                  {"dense": np.array([[0.7], [0.6], [0.2]])}, {"dense": None}, {})
    assert found.matrix.tolist() == [[0, 1], [1, 1]]
    logits = model({"type": "binary_crossentropy", "from_logits": True}, units=1, activation="linear")
    (found,) = confusion_matrices(logits, {"dense": np.array([[1.0], [0.0], [1.0]])},
                                  {"dense": np.array([[0.1], [-0.2], [-3.0]])}, {"dense": None}, {})
    assert found.matrix.tolist() == [[1, 0], [1, 1]]


def test_per_step_outputs_count_only_the_steps_the_mask_keeps() -> None:
    m = model("sparse_categorical_crossentropy", units=2)
    scores = np.array([[[0.9, 0.1], [0.2, 0.8], [0.9, 0.1]], [[0.3, 0.7], [0.6, 0.4], [0.1, 0.9]]])
    targets = np.array([[0, 1, 1], [1, 1, 0]])
    mask = np.array([[True, True, False], [True, True, False]])  # the last step of each row is padding
    (found,) = confusion_matrices(m, {"dense": targets}, {"dense": scores}, {"dense": mask}, {})
    assert found.matrix.tolist() == [[1, 0], [1, 2]] and int(found.support.sum()) == 4


def test_a_model_without_a_classification_output_is_refused() -> None:
    m = model("mse", units=1, activation="linear")
    with pytest.raises(SpecError, match=r"needs a classification output .*; this model has dense \(mse\)$"):
        confusion_matrices(m, {"dense": np.zeros((2, 1))}, {"dense": np.zeros((2, 1))}, {"dense": None}, {})
