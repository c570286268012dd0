"""The spec's [data] -> train / validation / test splits keyed by the model's input and output names."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable
from pathlib import Path

import numpy as np

from dlcli.data import (
    CsvRecipe, check_examples, check_finite, check_input_dtype, check_labels, check_lengths, check_target_dtype,
    fill_missing, fill_values, load_dataset, one_hot, read_csv_examples, read_npy, read_npz, refuse_nonfinite,
    split_validation,
)
from dlcli.data.labels import check_class_count, check_class_ids, class_ids, class_list
from dlcli.errors import DataError, SpecError
from dlcli.graph import Model
from dlcli.ops.loss import packed_labels
from dlcli.spec.models import DataSpec, RunSpec
from dlcli.train.loop import Split

SPARSE_LOSSES = ("sparse_categorical_crossentropy",)
CLASSIFIER_LOSSES = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy")
FILL_POLICIES = ("fill_mean", "fill_value")
_NONFINITE_FIX = ("remove or fix those rows (data.missing handles missing CSV cells; in arrays, NaN and "
                  "infinity are always errors)")


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


def load_splits(spec: RunSpec, model: Model, rng: np.random.Generator, need_train: bool = True) -> Splits:
    """Read the data the spec names, hold out validation after a seeded shuffle, and check every array.

    Each file is checked as it is read, before any shuffle, so problems name the file's line or row; missing CSV
    cells are filled after the validation part is held out, from the training part alone.
    """
    data = spec.data
    schema: dict[str, Any] = {}
    if data.dataset is not None:
        train, test = _registry_splits(data, model)
        validation = None
    else:
        assert data.train is not None
        schema["missing"] = {"policy": data.missing, "rows_dropped": 0, "cells_filled": 0}
        train, test, validation = _read_key(data, "train", model, schema, learn=True), None, None
    if data.validation is None and data.validation_split > 0:
        merged = {**{f"in:{k}": v for k, v in train.inputs.items()}, **{f"out:{k}": v for k, v in train.targets.items()}}
        kept, held = split_validation(merged, data.validation_split, rng, str(data.train or data.dataset))
        train, validation = _unmerge(kept), _unmerge(held)
    if data.dataset is None:
        _fill_training_part(schema, data, model, train, validation)
        validation = _read_key(data, "validation", model, schema) if data.validation is not None else validation
        test = _read_key(data, "test", model, schema) if data.test is not None else None
    splits = Splits(train, validation, test, schema)
    for name, split in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
        if split is not None:
            check_split(split, model, name, data.one_hot)
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
    name = _only(model.inputs, "input")
    schema["missing"]["fill"] = fill_values(train.inputs[name], schema["columns"], data.missing, data.fill_value,
                                            f"data.train: {data.train}")
    for split in (train, validation):
        if split is not None:
            schema["missing"]["cells_filled"] += fill_missing(split.inputs[name], schema["columns"],
                                                              schema["missing"]["fill"])


def _unmerge(arrays: dict[str, np.ndarray]) -> Split:
    return Split({k[3:]: v for k, v in arrays.items() if k.startswith("in:")},
                 {k[4:]: v for k, v in arrays.items() if k.startswith("out:")})


def _only(names: dict, what: str) -> str:
    if len(names) != 1:
        raise SpecError(f"a registry dataset feeds one input and one output, but the model has {len(names)} "
                        f"{what}s; give train = \"file.npz\" with data.inputs and data.targets instead")
    return next(iter(names))


def _registry_splits(data: DataSpec, model: Model) -> tuple[Split, Split]:
    assert data.dataset is not None
    input_name, output_name = _only(model.inputs, "input"), _only(model.outputs, "output")
    loaded = load_dataset(data.dataset, data.options)
    return (Split({input_name: loaded.x_train}, {output_name: loaded.y_train}),
            Split({input_name: loaded.x_test}, {output_name: loaded.y_test}))


def data_suffix(path: Path) -> str:
    """".npz", ".csv", ".csv.gz", ".npy", ...: what kind of data file `path` names."""
    return "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix


def read_split(path: Path, data: DataSpec, model: Model, schema: dict[str, Any] | None = None,
               learn: bool = True) -> Split:
    """One split from a user file: .npz (arrays by name), .csv (feature and target columns) or .npy pairs.

    `schema` is what training learned (CSV columns, class names, fills: see Splits.schema): this file is read
    the same way. With `learn` (the training file, or a checkpoint older than the schema) what it lacks is
    learned from this file and added to it; otherwise class names the schema does not list are an error.
    """
    return _FileReader(data, model, {} if schema is None else schema, learn).split(path)


def _rows_of(label: str) -> Callable[[int], str]:
    """Row -> "LABEL, row N" for messages about an array (rows counted from 0, in the file's order)."""
    return lambda row: f"{label}, row {row}"


@dataclass
class _FileReader:
    """Reads one user file as the run reads its data, checking each array as it comes: before any shuffle, so
    that a problem names the file's line or the array's row."""

    data: DataSpec
    model: Model
    schema: dict[str, Any]
    learn: bool

    def split(self, path: Path) -> Split:
        """The inputs and targets in `path`, by its kind."""
        data, model = self.data, self.model
        suffix = data_suffix(path)
        if suffix == ".npz":
            arrays = read_npz(path)
            inputs = {name: self.input_array(_pick(arrays, path, array, "input"), name, f"{path}, array {array!r}")
                      for name, array in _mapping(data.inputs, model.inputs, "x").items()}
            targets = {name: self.npz_target(arrays, path, array, name)
                       for name, array in _mapping(data.targets, model.outputs, "y").items()}
            return Split(inputs, targets)
        if suffix in (".csv", ".csv.gz"):
            return self.csv_split(path)
        if suffix == ".npy":
            input_name, output_name = _only(model.inputs, "input"), _only(model.outputs, "output")
            x = self.input_array(read_npy(path), input_name, str(path))
            target_path = _npy_partner(path)
            y = self.target_array(read_npy(target_path), output_name, str(target_path), _rows_of(str(target_path)))
            return Split({input_name: x}, {output_name: y})
        raise DataError(f"{path}: unsupported data file; use .npz (arrays by name), .csv (columns) or .npy pairs "
                        "(x_NAME.npy beside y_NAME.npy)")

    def input_array(self, array: np.ndarray, name: str, label: str) -> np.ndarray:
        """An input array checked: at least one example, a dtype the input takes, finite numbers."""
        check_examples(label, array)
        array = check_input_dtype(array, self.model.inputs[name].dtype, label)
        refuse_nonfinite(array, _rows_of(label), _NONFINITE_FIX)
        return array

    def npz_target(self, arrays: dict[str, np.ndarray], path: Path, name: str, output: str) -> np.ndarray:
        """The target array `name`; for a ctc output, an array `<name>_lengths` beside it gives each row's number
        of labels (Keras' label_length), and what follows them, whatever it holds, becomes -1 padding."""
        label = f"{path}, array {name!r}"
        target = self.target_array(_pick(arrays, path, name, "target"), output, label, _rows_of(label))
        lengths_name = f"{name}_lengths"
        if self.model.outputs[output].loss.type != "ctc" or lengths_name not in arrays:
            return target
        return label_sequences(target, arrays[lengths_name], f"{path}: {lengths_name!r}")

    def target_array(self, array: np.ndarray, output: str, label: str, where: Callable[[int], str]) -> np.ndarray:
        """A target array checked (at least one example, a dtype the loss takes, finite numbers, class ids in
        range), class names mapped to ids with the class list of the schema (learned from the training file)."""
        loss = self.model.outputs[output].loss.type
        check_examples(label, array)
        array = check_target_dtype(array, loss in CLASSIFIER_LOSSES, loss, label)
        if array.dtype.kind == "U":
            names = np.char.strip(array)
            return class_ids(names, self.classes(output, class_list(names), label), where, "label")
        refuse_nonfinite(array, where, _NONFINITE_FIX)
        self.check_ids(array, output, where, "label")
        return array

    def check_ids(self, ids: np.ndarray, output: str, where: Callable[[int], str], column: str) -> None:
        """Class ids in range, checked in file order, for the losses (and data.one_hot) that take them."""
        if self.data.one_hot or self.model.outputs[output].loss.type in SPARSE_LOSSES:
            check_class_ids(ids, self.model.shapes[output][-1], where, column)

    def classes(self, output: str, found: list[str], label: str) -> list[str]:
        """The class list of `output`: the schema's, or (learning) `found`, the names of this file, stored."""
        known = self.schema.get("classes", {})
        if output not in known and not self.learn:  # their ids would be made up here
            raise DataError(f"{label} holds class names, but the model was trained on numeric labels (class ids); "
                            f"give numeric labels, as in the training data")
        classes = known.get(output, found)
        loss, width = self.model.outputs[output].loss.type, self.model.shapes[output][-1]
        check_class_count(classes, width, loss == "binary_crossentropy" and width == 1, label)
        self.schema.setdefault("classes", {})[output] = classes
        return classes

    def csv_split(self, path: Path) -> Split:
        """A split from a CSV file: feature columns by name (learned from the training file), missing cells by
        data.missing, class names to ids."""
        data, model, schema = self.data, self.model, self.schema
        if data.target is None:
            raise SpecError(f"data.target: {path.name} is a CSV file: name its target column, e.g. target = "
                            f"\"label\"")
        input_name, output_name = _only(model.inputs, "input"), _only(model.outputs, "output")
        takes_text = model.inputs[input_name].dtype == "string"
        if takes_text and data.text is None:
            raise SpecError(f"data.text: the model takes text: name the column of {path.name} that holds it, "
                            f"e.g. text = \"review\"")
        if not takes_text and data.text is not None:
            raise SpecError(f"data.text: the model's input is numeric (dtype = "
                            f"\"{model.inputs[input_name].dtype}\"); to feed it text, give it dtype = \"string\", "
                            f"shape = [1] and a text_vectorization layer, or name numeric columns in data.features")
        loss = model.outputs[output_name].loss.type
        column = f"column {data.target!r}"
        read = read_csv_examples(path, CsvRecipe(
            features=data.features, target=data.target, text=data.text, missing=data.missing,
            columns=None if takes_text else schema.get("columns"), classes=schema.get("classes", {}).get(output_name),
            names_allowed=loss in CLASSIFIER_LOSSES, loss=loss))
        assert read.y is not None
        missing = schema.setdefault("missing", {"policy": data.missing, "rows_dropped": 0, "cells_filled": 0})
        missing["rows_dropped"] = missing.get("rows_dropped", 0) + read.rows_dropped
        if read.classes is not None:
            self.classes(output_name, read.classes, f"{path}, {column}")
            y = read.y
        else:
            self.check_ids(read.y, output_name, read.where, column)
            y = read.y.astype(np.float32)
        if takes_text:
            return Split({input_name: read.x}, {output_name: y})
        schema.setdefault("columns", read.columns)
        x = read.x.astype(np.float32)
        if "fill" in missing:
            missing["cells_filled"] = missing.get("cells_filled", 0) + fill_missing(x, read.columns, missing["fill"])
        return Split({input_name: x}, {output_name: y})


def _mapping(given: dict[str, str] | None, names: dict, default: str) -> dict[str, str]:
    """Model name -> array name: as the spec says, else `x`/`y` for a single input/output, else the same name."""
    if given is not None:
        missing = [n for n in names if n not in given]
        extra = [n for n in given if n not in names]
        if missing or extra:
            raise SpecError(f"data mapping must name exactly the model's {list(names)}; "
                            f"missing {missing}, unknown {extra}")
        return dict(given)
    return {name: default for name in names} if len(names) == 1 else {name: name for name in names}


def _pick(arrays: dict[str, np.ndarray], path: Path, name: str, role: str) -> np.ndarray:
    if name not in arrays:
        raise DataError(f"{path}: no array {name!r} for the {role}; the file holds {', '.join(sorted(arrays)) or 'nothing'}."
                        f" Map arrays with data.inputs / data.targets")
    return arrays[name]


def label_sequences(labels: np.ndarray, lengths: np.ndarray, label: str) -> np.ndarray:
    """labels (examples, max_length) with the entries at or past each row's length set to -1.

    Checks what a lengths array can get wrong: its dtype, its shape, and lengths outside [0, max_length].
    """
    labels = labels[:, None] if labels.ndim == 1 else labels
    if labels.ndim != 2:
        raise DataError(f"{label}: lengths go with label sequences (examples, max_length), but the labels have shape "
                        f"{list(labels.shape)}")
    lengths = lengths.reshape(-1) if lengths.ndim == 2 and lengths.shape[1] == 1 else lengths
    if lengths.ndim != 1 or len(lengths) != len(labels):
        raise DataError(f"{label}: needs one length per example, shape [{len(labels)}], found shape "
                        f"{list(lengths.shape)}")
    if lengths.dtype.kind == "f" and np.all(lengths == np.round(lengths)):
        lengths = lengths.astype(np.int64)
    if lengths.dtype.kind not in "iu":
        raise DataError(f"{label}: lengths must be integers, found dtype {lengths.dtype}")
    bad = (lengths < 0) | (lengths > labels.shape[1])
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{label}: row {row} has length {int(lengths[row])}, outside [0, {labels.shape[1]}] (the "
                        f"labels' width); {int(bad.sum()):,} such rows")
    kept = np.arange(labels.shape[1]) < lengths[:, None]
    if labels.dtype.kind not in "iuf":  # not labels at all: the ctc check names the dtype
        return labels
    out = labels.astype(np.int64 if labels.dtype.kind in "iu" else np.float64)  # uint8 labels cannot hold -1
    out[~kept] = -1
    return out


def _npy_partner(path: Path) -> Path:
    stem = path.stem
    if not stem.startswith("x"):
        raise DataError(f"{path}: a .npy input file must be named x*.npy with its targets in y*.npy beside it")
    partner = path.with_name("y" + stem[1:] + ".npy")
    if not os.path.lexists(partner):  # a broken link or a loop is there: reading it says which
        raise DataError(f"{path}: its targets {partner.name} are missing; put them beside it")
    return partner


def check_split(split: Split, model: Model, name: str, to_one_hot: bool) -> None:
    """Shapes, lengths, finiteness and label ranges of one split against the model; targets are normalized."""
    check_lengths({f"{name} input {k}": v for k, v in split.inputs.items()} |
                  {f"{name} target {k}": v for k, v in split.targets.items()})
    for input_name, array in split.inputs.items():
        expected = tuple(model.inputs[input_name].shape)
        if array.ndim == 1 and expected == (1,):
            array = split.inputs[input_name] = array[:, None]
        if array.shape[1:] != expected:
            raise DataError(f"{name} input {input_name!r}: each example has shape {list(array.shape[1:])}, but the "
                            f"model's input takes {list(expected)}; fix model.input(s) shape or reshape the data")
        check_input_dtype(array, model.inputs[input_name].dtype, f"{name} input {input_name!r}")
        if array.dtype.kind == "f":
            check_finite(f"{name} input {input_name!r}", array)
    for output_name, target in split.targets.items():
        split.targets[output_name] = _normalized_target(target, model, output_name, name, to_one_hot)


def _normalized_target(target: np.ndarray, model: Model, output: str, split: str, to_one_hot: bool) -> np.ndarray:
    shape = model.shapes[output]
    loss = model.outputs[output].loss.type
    label = f"{split} target {output!r}"
    classes = shape[-1]
    if loss == "ctc":
        return _ctc_labels(target, label, shape, model.outputs[output].loss.blank)
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


def _ctc_labels(target: np.ndarray, label: str, shape: tuple[int, ...], blank: int | None) -> np.ndarray:
    """Label sequences for a ctc output (time, classes): integers in [0, classes) but the blank, -1 padding.

    Each row must fit in the output's steps: CTC needs one step per label plus a blank between repeats.
    """
    if len(shape) != 2:
        raise SpecError(f"{label}: the ctc loss needs an output of shape (time, classes), but it gives {list(shape)}; "
                        "end the model with a dense layer on a sequence (return_sequences = true)")
    steps, classes = shape
    blank = classes - 1 if blank is None else blank
    if blank >= classes:
        raise SpecError(f"{label}: the ctc loss has blank = {blank}, but the output has {classes} classes "
                        f"(0 to {classes - 1}); set blank to one of them")
    labels = target[:, None] if target.ndim == 1 else target
    if labels.ndim != 2:
        raise DataError(f"{label}: ctc targets are label sequences (examples, max_length) padded with -1, found "
                        f"shape {list(target.shape)}")
    if labels.dtype.kind == "f":
        fractional = labels != np.round(labels)  # NaN counts as fractional too
        if fractional.any():
            raise DataError(f"{label}: ctc needs integer labels, found {labels[fractional][0]}")
    elif labels.dtype.kind not in "iu":
        raise DataError(f"{label}: ctc needs integer labels, found dtype {labels.dtype}")
    bad = ((labels < 0) & (labels != -1)) | (labels >= classes) | (labels == blank)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{label}: labels must lie in [0, {classes}) except the blank {blank}, with -1 as padding; "
                        f"found {labels[row, column]:g} at row {row}, position {column} ({int(bad.sum()):,} such "
                        "values). Check the number of classes (the output's width) and the blank index")
    labels = labels.astype(np.int64)
    packed, lengths = packed_labels(labels)
    repeats = ((packed[:, 1:] == packed[:, :-1]) & (packed[:, 1:] >= 0)).sum(axis=1)
    too_long = lengths + repeats > steps
    if too_long.any():
        row = int(np.argmax(too_long))
        raise DataError(f"{label}: row {row} has {lengths[row]} labels ({repeats[row]} repeated) that need "
                        f"{lengths[row] + repeats[row]} steps, but the output has {steps} ({int(too_long.sum()):,} of "
                        f"{len(labels):,} rows too long); CTC cannot align them: shorten the labels or give the output more steps")
    return labels
