"""Confusion matrices of a model's classification outputs, with per-class precision and recall (dlcli eval
--confusion-matrix)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dlcli.errors import SpecError
from dlcli.graph import Model
from dlcli.train.datasets import CLASSIFIER_LOSSES


@dataclass
class Confusion:
    """One output's confusion matrix: rows are the true classes, columns the predicted ones."""

    output: str
    classes: list[str]
    matrix: np.ndarray  # (classes, classes) counts

    @property
    def support(self) -> np.ndarray:
        """Examples (or steps) of each true class."""
        return self.matrix.sum(axis=1)

    @property
    def precision(self) -> np.ndarray:
        """Of the examples predicted as each class, the fraction that are: 0 where none were predicted (Keras'
        Precision divides with divide_no_nan)."""
        return _ratio(np.diag(self.matrix), self.matrix.sum(axis=0))

    @property
    def recall(self) -> np.ndarray:
        """Of each class's examples, the fraction predicted as it: 0 for a class with no examples."""
        return _ratio(np.diag(self.matrix), self.support)

    def record(self) -> dict[str, Any]:
        """JSON-able: classes, the matrix, and precision, recall and support per class."""
        return {"output": self.output, "classes": self.classes, "matrix": self.matrix.tolist(),
                "precision": self.precision.tolist(), "recall": self.recall.tolist(),
                "support": self.support.tolist()}


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    return np.divide(top, bottom, out=np.zeros(len(top)), where=bottom > 0)


def confusion_matrices(model: Model, targets: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                       masks: dict[str, np.ndarray | None], class_names: dict[str, list[str]]) -> list[Confusion]:
    """A Confusion for every classification output (binary, categorical or sparse categorical crossentropy),
    per example or, for outputs with a time axis, per step its mask keeps. Class names come from the
    checkpoint's data schema (outputs trained on string labels), else they are the class ids."""
    found = []
    for name, values in outputs.items():
        loss = model.outputs[name].loss
        if loss.type not in CLASSIFIER_LOSSES:
            continue
        count = values.shape[-1] if values.shape[-1] > 1 else 2
        if values.shape[-1] == 1:  # one sigmoid (or logit) per example: class 1 above 0.5 (logit 0)
            predicted = (values[..., 0] > (0.0 if loss.from_logits else 0.5)).astype(np.int64)
        else:
            predicted = values.argmax(axis=-1)
        target = np.asarray(targets[name])
        if loss.type == "categorical_crossentropy":
            true = target.argmax(axis=-1)
        elif loss.type == "binary_crossentropy":
            true = (target.reshape(predicted.shape) > 0.5).astype(np.int64)
        else:
            true = target.reshape(predicted.shape).astype(np.int64)
        mask = masks.get(name)
        keep = np.ones(predicted.shape, bool) if mask is None else np.asarray(mask, bool).reshape(predicted.shape)
        pairs = true[keep] * count + predicted[keep]
        matrix = np.bincount(pairs, minlength=count * count).reshape(count, count)
        names = class_names.get(name) or [str(k) for k in range(count)]
        found.append(Confusion(name, list(names), matrix))
    if not found:
        losses = ", ".join(f"{name} ({model.outputs[name].loss.type})" for name in outputs)
        raise SpecError(f"--confusion-matrix needs a classification output (loss binary_crossentropy, "
                        f"categorical_crossentropy or sparse_categorical_crossentropy); this model has {losses}")
    return found
