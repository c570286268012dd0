"""train.class_weight: each training example's weight from its class, as Keras' fit(class_weight=...) computes
it, for every classifier output of a model (Keras takes one output only) and per time step for sequence targets
(which Keras refuses: keras-team/keras#16674)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcli.errors import SpecError
from dlcli.graph import Model

CLASSIFIER_LOSSES = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy")


def class_weight_tables(config: Any, model: Model, targets: dict[str, np.ndarray],
                        schema: dict[str, Any]) -> dict[str, dict[int, float]]:
    """Per output, class id -> weight, from train.class_weight: "balanced" (every output), a table of classes
    (the model's one output), or a table of those (or "balanced") per output. Class names are looked up in the
    schema's class lists; a class the table leaves out weighs 1."""
    if config == "balanced":
        per_output: dict[str, Any] = {name: "balanced" for name in model.outputs}
    elif all(isinstance(value, (int, float)) for value in config.values()):
        if len(model.outputs) != 1:
            raise SpecError(f"train.class_weight: the model has {len(model.outputs)} outputs "
                            f"({', '.join(model.outputs)}); give a table per output, e.g. class_weight = "
                            f"{{ {next(iter(model.outputs))} = {{ \"0\" = 1.0, \"1\" = 5.0 }} }}")
        per_output = {next(iter(model.outputs)): config}
    else:
        unknown = [name for name in config if name not in model.outputs]
        if unknown or any(isinstance(value, (int, float)) for value in config.values()):
            raise SpecError(f"train.class_weight: give a table of classes (class = weight), or one per output "
                            f"(output = table or \"balanced\"), not a mix; the outputs are "
                            f"{', '.join(model.outputs)}" + (f" (no output {unknown[0]!r})" if unknown else ""))
        per_output = dict(config)
    tables = {}
    for output, table in per_output.items():
        loss = model.outputs[output].loss.type
        if loss not in CLASSIFIER_LOSSES:
            raise SpecError(f"train.class_weight: output {output!r} has the loss {loss}, which has no classes; "
                            f"weigh its examples with data.sample_weight instead")
        labels = class_labels(targets[output], model.shapes[output], loss)
        classes = (schema.get("classes") or {}).get(output)
        tables[output] = _balanced(labels) if table == "balanced" else _parsed(table, output, classes,
                                                                               _class_count(model, output, loss))
    return tables


def class_labels(targets: np.ndarray, output_shape: tuple[int, ...], loss: str) -> np.ndarray:
    """Each example's class id (each step's, for sequence targets), from normalized targets: integer labels,
    one-hot rows (argmax) or 0/1 values (a single sigmoid unit, rounded), as Keras reads them."""
    if loss == "sparse_categorical_crossentropy":
        return np.asarray(targets).astype(np.int64)
    if output_shape[-1] == 1:
        return np.round(np.asarray(targets, np.float64).reshape(len(targets), *output_shape[:-1])).astype(np.int64)
    return np.argmax(targets, axis=-1)


def example_weights(labels: np.ndarray, table: dict[int, float]) -> np.ndarray:
    """Each label's weight (float32, the labels' shape): the table's, 1 for a class it leaves out."""
    lookup = np.ones(max(int(labels.max(initial=0)), *table, 0) + 1, np.float64)
    for label, weight in table.items():
        lookup[label] = weight
    return lookup[labels].astype(np.float32)


def _balanced(labels: np.ndarray) -> dict[int, float]:
    """scikit-learn's "balanced": n / (classes present x count of the class), over every label (every step)."""
    present, counts = np.unique(labels, return_counts=True)
    return {int(label): float(labels.size / (len(present) * count)) for label, count in zip(present, counts)}


def _class_count(model: Model, output: str, loss: str) -> int:
    width = model.shapes[output][-1]
    return 2 if loss == "binary_crossentropy" and width == 1 else width


def _parsed(table: dict[str, float], output: str, classes: list[str] | None, count: int) -> dict[int, float]:
    """Class id -> weight from a table keyed by class ids ("0") or, for labels given as names, class names."""
    parsed = {}
    for key, weight in table.items():
        if classes is not None and key in classes:
            parsed[classes.index(key)] = float(weight)
        elif key.strip().lstrip("-").isdigit() and 0 <= int(key) < count:
            parsed[int(key)] = float(weight)
        else:
            known = (f"its class names ({', '.join(classes)}) or ids" if classes is not None else "class ids")
            raise SpecError(f"train.class_weight: {key!r} is not a class of output {output!r}; it takes "
                            f"{known} 0 to {count - 1}")
    return parsed
