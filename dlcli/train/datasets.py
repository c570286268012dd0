"""The spec's [data] -> train / validation / test splits keyed by the model's input and output names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcli.data import (
    check_finite, check_labels, check_lengths, load_dataset, one_hot, read_csv, read_npy, read_npz, split_validation,
)
from dlcli.errors import DataError, SpecError
from dlcli.graph import Model
from dlcli.spec.models import DataSpec, RunSpec
from dlcli.train.loop import Split

SPARSE_LOSSES = ("sparse_categorical_crossentropy",)


@dataclass
class Splits:
    """The data of a run, each split checked against the model's shapes."""

    train: Split
    validation: Split | None
    test: Split | None


def load_splits(spec: RunSpec, model: Model, rng: np.random.Generator, need_train: bool = True) -> Splits:
    """Read the data the spec names, hold out validation after a seeded shuffle, and check every array."""
    data = spec.data
    if data.dataset is not None:
        train, test = _registry_splits(data, model)
        validation = None
    else:
        assert data.train is not None
        train = read_split(data.train, data, model)
        test = read_split(data.test, data, model) if data.test is not None else None
        validation = read_split(data.validation, data, model) if data.validation is not None else None
    if validation is None and data.validation_split > 0:
        merged = {**{f"in:{k}": v for k, v in train.inputs.items()}, **{f"out:{k}": v for k, v in train.targets.items()}}
        kept, held = split_validation(merged, data.validation_split, rng)
        train, validation = _unmerge(kept), _unmerge(held)
    splits = Splits(train, validation, test)
    for name, split in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
        if split is not None:
            check_split(split, model, name, data.one_hot)
    return splits


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


def read_split(path: Path, data: DataSpec, model: Model) -> Split:
    """One split from a user file: .npz (arrays by name), .csv (feature and target columns) or .npy pairs."""
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffix == ".npz":
        arrays = read_npz(path)
        return Split({name: _pick(arrays, path, array, "input") for name, array in _mapping(data.inputs, model.inputs, "x").items()},
                     {name: _pick(arrays, path, array, "target") for name, array in _mapping(data.targets, model.outputs, "y").items()})
    if suffix in (".csv", ".csv.gz"):
        if data.target is None:
            raise SpecError(f"data.target: {path.name} is a CSV file: name its target column, e.g. target = \"label\"")
        x, y = read_csv(path, data.features, data.target)
        return Split({_only(model.inputs, "input"): x}, {_only(model.outputs, "output"): y})
    if suffix == ".npy":
        x = read_npy(path)
        target_path = _npy_partner(path)
        return Split({_only(model.inputs, "input"): x}, {_only(model.outputs, "output"): read_npy(target_path)})
    raise DataError(f"{path}: unsupported data file; use .npz (arrays by name), .csv (columns) or .npy pairs "
                    "(x_NAME.npy beside y_NAME.npy)")


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


def _npy_partner(path: Path) -> Path:
    stem = path.stem
    if not stem.startswith("x"):
        raise DataError(f"{path}: a .npy input file must be named x*.npy with its targets in y*.npy beside it")
    partner = path.with_name("y" + stem[1:] + ".npy")
    if not partner.exists():
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
        if array.dtype.kind == "f":
            check_finite(f"{name} input {input_name!r}", array)
    for output_name, target in split.targets.items():
        split.targets[output_name] = _normalized_target(target, model, output_name, name, to_one_hot)


def _normalized_target(target: np.ndarray, model: Model, output: str, split: str, to_one_hot: bool) -> np.ndarray:
    shape = model.shapes[output]
    loss = model.outputs[output].loss.type
    label = f"{split} target {output!r}"
    classes = shape[-1]
    if to_one_hot or loss in SPARSE_LOSSES:
        labels = target[..., 0] if target.ndim == len(shape) + 1 and target.shape[-1] == 1 and shape[-1] > 1 else target
        if labels.dtype.kind == "f":
            if not np.all(labels == np.round(labels)):
                raise DataError(f"{label}: {loss} needs integer class labels, found fractional values")
        check_labels(label, labels, classes)
        labels = labels.astype(np.int64)
        if labels.shape[1:] != shape[:-1]:
            raise DataError(f"{label}: labels have shape {list(labels.shape[1:])} per example, the output "
                            f"{list(shape)} needs {list(shape[:-1])}")
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
