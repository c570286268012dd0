"""The spec's [data] -> train / validation / test splits keyed by the model's input and output names."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.data import (FILL_POLICIES, Examples, InputSlot, ReadRequest, TargetSlot, check_finite, check_input_dtype,
                        check_labels, check_lengths, fill_from_training, is_lazy, load_dataset, one_hot,
                        read_examples, refuse_keys_of_other_readers, single_name, split_folds, split_validation)
from dlcli.errors import DataError
from dlcli.graph import Model
from dlcli.losses import SPARSE_LOSSES
from dlcli.spec.models import DataSpec, RunSpec
from dlcli.train.class_weights import CLASSIFIER_LOSSES, class_labels, class_weight_tables, example_weights
from dlcli.train.ctc_targets import ctc_labels
from dlcli.train.loop import Split


@dataclass
class Splits:
    """The data of a run, each split checked against the model's shapes."""

    train: Split
    validation: Split | None
    test: Split | None
    # what predict and eval need to read new data the way training read it (JSON-able; saved in every
    # checkpoint as metadata["data"]):
    #   "columns": [name, ...]  the CSV feature columns the model's input takes, in order (matched by name)
    #   "classes": {output: [name, ...]}  class names, sorted, for outputs trained on string labels
    #   "missing": {"policy", "rows_dropped", "cells_filled", "fill": {column: number}}  (data from files only)
    schema: dict[str, Any] = field(default_factory=dict)
    # train.class_weight as applied: output -> {class id: weight} ("balanced" computed from the training split)
    class_weights: dict[str, dict[int, float]] = field(default_factory=dict)


def load_splits(spec: RunSpec, model: Model, rng: np.random.Generator, need_train: bool = True) -> Splits:
    """Read the data the spec names, hold out validation after a seeded shuffle, and check every array; then
    weigh the training examples by train.class_weight.

    Each file is checked as it is read, before any shuffle, so problems name the file's line or row; missing CSV
    cells are filled after the validation part is held out, from the training part alone.
    """
    data = spec.data
    schema: dict[str, Any] = {}
    splits = _time_ranges(data, model, schema) if data.timeseries is not None else _read_splits(data, model, rng,
                                                                                                   schema)
    if spec.train.class_weight is not None:
        # the training examples only, as Keras' fit applies class_weight: validation keeps its sample weights
        splits.class_weights = class_weight_tables(spec.train.class_weight, model, splits.train.targets, schema)
        splits.train.weights = {name: example_weights(class_labels(splits.train.targets[name], model.shapes[name],
                                                                   model.outputs[name].loss.type), table)
                                for name, table in splits.class_weights.items()}
    return splits


def _read_splits(data: DataSpec, model: Model, rng: np.random.Generator, schema: dict[str, Any]) -> Splits:
    """The splits of a registry dataset or the user's files, validation held out after a seeded shuffle."""
    if data.dataset is not None:
        train, test = _registry_splits(data, model)
        validation = None
    else:
        assert data.train is not None
        schema["missing"] = {"policy": data.missing, "rows_dropped": 0, "cells_filled": 0}
        train, test, validation = _read_key(data, "train", model, schema, learn=True), None, None
    _same_lengths(train, "train", split_source(data, "train"))  # before a split, which would name its own keys
    if data.folds is not None:  # the run of one fold (a K-fold driver's check without one: the first)
        kept, held = split_folds(_merged(train), data.folds, data.fold or 1, rng, str(data.train or data.dataset))
        train, validation = _unmerge(kept), _unmerge(held)
    elif data.validation is None and data.validation_split > 0:
        kept, held = split_validation(_merged(train), data.validation_split, rng, str(data.train or data.dataset))
        train, validation = _unmerge(kept), _unmerge(held)
    if data.dataset is None:
        _fill_training_part(schema, data, model, train, validation)
        validation = _read_key(data, "validation", model, schema) if data.validation is not None else validation
        test = _read_key(data, "test", model, schema) if data.test is not None else None
    splits = Splits(train, validation, test, schema)
    for name, split in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
        if split is not None:
            check_split(split, model, name, data.one_hot, split_source(data, name))
    return splits


def _time_ranges(data: DataSpec, model: Model, schema: dict[str, Any]) -> Splits:
    """Windows over the training table's consecutive ranges of rows, in time order (no shuffle crosses them);
    a validation or test file, when given instead of a range, is windowed whole."""
    from dlcli.data.readers.timeseries import TimeseriesReader

    assert data.train is not None
    try:
        ranges = TimeseriesReader().read_ranges(data.train, read_request(model, data, schema, learn=True))
    except DataError as err:
        raise DataError(f"data.train: {err}") from None
    train, validation, test = (_split_of(part) if part is not None else None
                               for part in (ranges["train"], ranges["validation"], ranges["test"]))
    assert train is not None
    if data.validation is not None:
        validation = _read_key(data, "validation", model, schema)
    if data.test is not None:
        test = _read_key(data, "test", model, schema)
    splits = Splits(train, validation, test, schema)
    for name, split in (("train", train), ("validation", validation), ("test", test)):
        if split is not None:
            check_split(split, model, name, data.one_hot, split_source(data, name))
    return splits


def _read_key(data: DataSpec, key: str, model: Model, schema: dict[str, Any], learn: bool = False) -> Split:
    """The file of data.<key>; its problems name the key too."""
    try:
        return read_split(getattr(data, key), data, model, schema, learn)
    except DataError as err:
        raise DataError(f"data.{key}: {err}") from None


def _fill_training_part(schema: dict[str, Any], data: DataSpec, model: Model, train: Split,
                        validation: Split | None) -> None:
    """Fill missing CSV cells of the training and held-out parts, with statistics of the training part alone."""
    if data.missing not in FILL_POLICIES or "columns" not in schema:
        return
    name = single_name(model.inputs, "input")
    parts = [split.inputs[name] for split in (train, validation) if split is not None]
    fill_from_training(schema["missing"], train.inputs[name], parts, schema["columns"], data.missing,
                       data.fill_value, f"data.train: {data.train}")


def _merged(split: Split) -> dict[str, np.ndarray]:
    """A split's arrays in one dict, so that one shuffle moves inputs, targets and weights together."""
    return {**{f"in:{k}": v for k, v in split.inputs.items()}, **{f"out:{k}": v for k, v in split.targets.items()},
            **{f"weight:{k}": v for k, v in split.weights.items()}}


def _unmerge(arrays: dict[str, np.ndarray]) -> Split:
    return Split({k[3:]: v for k, v in arrays.items() if k.startswith("in:")},
                 {k[4:]: v for k, v in arrays.items() if k.startswith("out:")},
                 {k[7:]: v for k, v in arrays.items() if k.startswith("weight:")})


def _registry_splits(data: DataSpec, model: Model) -> tuple[Split, Split]:
    assert data.dataset is not None
    refuse_keys_of_other_readers(None, data, f'data.dataset = "{data.dataset}" is a registry dataset')
    input_name, output_name = single_name(model.inputs, "input"), single_name(model.outputs, "output")
    loaded = load_dataset(data.dataset, data.options)
    return (Split({input_name: loaded.x_train}, {output_name: loaded.y_train}),
            Split({input_name: loaded.x_test}, {output_name: loaded.y_test}))


def evaluation_split(spec: RunSpec, model: Model, schema: dict[str, Any], path: Path,
                     data_path: Path | None = None) -> tuple[Split, str]:
    """(the examples a trained model is judged on, where they came from): `data_path`, or the spec's test split
    (data.test, or the registry dataset's), read as training read its data. `schema` is the checkpoint's
    metadata["data"] (empty for checkpoints written before it: the data is then read as it always was); `path`
    names the checkpoint in the error for a spec without test data."""
    schema = copy.deepcopy(schema)
    if data_path is not None:
        split = read_split(data_path, spec.data, model, schema, learn=not schema)
        check_split(split, model, "evaluation", spec.data.one_hot, str(data_path))
        return split, str(data_path)
    if spec.data.test is not None and schema:
        try:
            split = read_split(spec.data.test, spec.data, model, schema, learn=False)
        except DataError as err:
            raise DataError(f"data.test: {err}") from None
        check_split(split, model, "test", spec.data.one_hot, split_source(spec.data, "test"))
        return split, "test"
    test = load_splits(spec, model, np.random.default_rng(0)).test
    if test is None and spec.data.timeseries is not None:
        raise DataError(f"{path}: the spec has no test data: its time series keeps no test range "
                        f"(data.timeseries.test_split = 0) and it names no data.test; pass --data TABLE, or train "
                        f"with data.timeseries.test_split = 0.25, say")
    if test is None:
        raise DataError(f"{path}: the spec has no test data (data.test or a registry dataset); pass --data PATH")
    return test, "test"


def read_split(path: Path, data: DataSpec, model: Model, schema: dict[str, Any] | None = None,
               learn: bool = True) -> Split:
    """One split from a user file, by the reader registered for its kind (dlcli/data/readers/).

    `schema` is what training learned (CSV columns, class names, fills: see Splits.schema): this file is read
    the same way. With `learn` (the training file, or a checkpoint older than the schema) what it lacks is
    learned from this file and added to it; otherwise class names the schema does not list are an error.
    """
    return _split_of(read_examples(path, read_request(model, data, {} if schema is None else schema, learn)))


def _split_of(examples: Examples) -> Split:
    """What a reader read as a split; its sample weights (data.sample_weight) weigh every output."""
    weights = {} if examples.weights is None else {name: examples.weights for name in examples.targets}
    return Split(examples.inputs, examples.targets, weights)


def read_request(model: Model, data: DataSpec, schema: dict[str, Any], learn: bool = True,
                 targets: bool = True) -> ReadRequest:
    """What the readers need to know of `model` to read its data (its inputs, and its targets unless `targets`
    is false), with the [data] keys and the run's schema."""
    inputs = {name: InputSlot(spec.dtype, tuple(spec.shape)) for name, spec in model.inputs.items()}
    if not targets:
        return ReadRequest(inputs, None, data, schema, learn)
    slots = {}
    for name, output in model.outputs.items():
        loss, width = output.loss.type, model.shapes[name][-1]
        slots[name] = TargetSlot(loss, width, class_names=loss in CLASSIFIER_LOSSES,
                                 class_ids=data.one_hot or loss in SPARSE_LOSSES,
                                 binary=loss == "binary_crossentropy" and width == 1, label_lengths=loss == "ctc")
    return ReadRequest(inputs, slots, data, schema, learn)


def check_split(split: Split, model: Model, name: str, to_one_hot: bool, source: str | None = None) -> None:
    """Shapes, lengths, finiteness and label ranges of one split against the model; targets are normalized. A
    problem's message starts with `source` (the key and file the split came from), when given."""
    try:
        _check_split(split, model, name, to_one_hot)
    except DataError as err:
        raise DataError(f"{source}: {err}" if source and not str(err).startswith(source) else str(err)) from None


def split_source(data: DataSpec, name: str) -> str:
    """Where a split of a run's data comes from, for messages: its key and file (or the registry dataset)."""
    path = getattr(data, name, None)
    if path is not None:
        return f"data.{name}: {path}"
    if data.dataset is not None:
        return f"data.dataset {data.dataset!r}"
    return f"data.train: {data.train}"  # validation held out of it


def _same_lengths(split: Split, name: str, source: str | None = None) -> None:
    """DataError (starting with `source`, when given) unless every array of the split has one entry per example."""
    try:
        check_lengths({f"{name} input {k}": v for k, v in split.inputs.items()} |
                      {f"{name} target {k}": v for k, v in split.targets.items()} |
                      {f"{name} sample weights {k}": v for k, v in split.weights.items()})
    except DataError as err:
        raise DataError(f"{source}: {err}" if source else str(err)) from None


def _check_split(split: Split, model: Model, name: str, to_one_hot: bool) -> None:
    _same_lengths(split, name)
    for input_name, array in split.inputs.items():
        expected = tuple(model.inputs[input_name].shape)
        if array.ndim == 1 and expected == (1,):
            array = split.inputs[input_name] = array[:, None]
        if array.shape[1:] != expected:
            raise DataError(f"{name} input {input_name!r}: each example has shape {list(array.shape[1:])}, but the "
                            f"model's input takes {list(expected)}; fix model.input(s) shape or reshape the data")
        if is_lazy(array):  # windows: their reader checked the table they are views of
            continue
        check_input_dtype(array, model.inputs[input_name].dtype, f"{name} input {input_name!r}")
        if array.dtype.kind == "f":
            check_finite(f"{name} input {input_name!r}", array)
    for output_name, target in split.targets.items():
        split.targets[output_name] = _normalized_target(target, model, output_name, name, to_one_hot)
    for output_name, weights in split.weights.items():
        _check_weights(weights, model.shapes[output_name], f"{name} sample weights of output {output_name!r}")


def _check_weights(weights: np.ndarray, shape: tuple[int, ...], label: str) -> None:
    """Sample weights are one per example, or one per step of a sequence output (batch, time)."""
    if weights.ndim == 1 or (weights.ndim == 2 and len(shape) >= 2 and weights.shape[1] == shape[0]):
        return
    per_step = f" or one per time step ({len(weights)}, {shape[0]})" if len(shape) >= 2 else ""
    raise DataError(f"{label}: expected one per example ({len(weights)},){per_step}, found shape "
                    f"{list(weights.shape)}")


def _normalized_target(target: np.ndarray, model: Model, output: str, split: str, to_one_hot: bool) -> np.ndarray:
    shape = model.shapes[output]
    loss = model.outputs[output].loss.type
    label = f"{split} target {output!r}"
    classes = shape[-1]
    if loss == "ctc":
        return ctc_labels(target, label, shape, model.outputs[output].loss.blank)
    if to_one_hot or loss in SPARSE_LOSSES:
        labels = target[..., 0] if target.ndim == len(shape) + 1 and target.shape[-1] == 1 and shape[-1] > 1 else target
        if labels.dtype.kind == "f":
            if not np.all(labels == np.round(labels)):
                raise DataError(f"{label}: {loss} needs integer class labels, found fractional values")
        check_labels(label, labels, classes)
        labels = labels.astype(np.int64)
        if labels.shape[1:] != shape[:-1]:
            key = next((node.key for node in model.nodes if node.name == output), output)
            raise DataError(f"{label}: labels have shape {list(labels.shape[1:])} per example, but the output "
                            f"(made by {key}) has shape {list(shape)}, which needs labels of shape "
                            f"{list(shape[:-1])}; fix the data or the model")
        return one_hot(labels, classes) if to_one_hot else labels
    if target.ndim == 1 and shape == (1,):
        target = target[:, None]
    if target.shape[1:] != shape:
        hint = " (integer labels? use sparse_categorical_crossentropy or data.one_hot = true)" \
            if target.ndim == 1 and classes > 1 else ""
        raise DataError(f"{label}: each target has shape {list(target.shape[1:])}, but the output {output!r} "
                        f"gives {list(shape)}{hint}")
    target = target.astype(np.float32, copy=False)
    check_finite(label, target)
    return target
