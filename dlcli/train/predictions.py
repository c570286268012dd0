"""Reading inputs for `dlcli predict` and writing its predictions (.npy, .npz, .csv, .jsonl or stdout lines)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np

from dlcli.checkpoint import write_atomically
from dlcli.data import read_csv_columns, read_npy, read_npz
from dlcli.errors import DataError
from dlcli.graph import Model
from dlcli.spec.models import RunSpec

CLASSIFIER_LOSSES = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy")


def read_inputs(path: Path, spec: RunSpec, model: Model) -> dict[str, np.ndarray]:
    """The model's inputs from a .npy (one input), .npz (arrays by input name, or x) or .csv (feature columns)."""
    names = list(model.inputs)
    if path.suffix == ".npy":
        if len(names) != 1:
            raise DataError(f"{path}: the model has {len(names)} inputs; give an .npz with arrays {names}")
        arrays = {names[0]: read_npy(path)}
    elif path.suffix == ".npz":
        found = read_npz(path)
        mapping = spec.data.inputs or ({names[0]: "x"} if len(names) == 1 else {n: n for n in names})
        arrays = {}
        for name in names:
            key = mapping[name] if mapping[name] in found else name
            if key not in found:
                raise DataError(f"{path}: no array {mapping[name]!r} for input {name!r}; the file holds "
                                f"{', '.join(sorted(found))}")
            arrays[name] = found[key]
    elif path.suffix == ".csv" or path.name.endswith(".csv.gz"):
        arrays = {names[0]: read_csv_columns(path, spec.data.features, exclude=spec.data.target)}
    else:
        raise DataError(f"{path}: unsupported input file; use .npy, .npz or .csv")
    for name, array in arrays.items():
        expected = tuple(model.inputs[name].shape)
        if array.shape[1:] != expected:
            raise DataError(f"{path}: input {name!r} has examples of shape {list(array.shape[1:])}, the model takes "
                            f"{list(expected)}")
    return arrays


def _columns(model: Model, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Named result columns: for classifiers a label and one probability per class; otherwise the values."""
    single = len(outputs) == 1
    columns: dict[str, np.ndarray] = {}
    for name, values in outputs.items():
        prefix = "" if single else f"{name}_"
        flat = values.reshape(len(values), -1)
        if model.outputs[name].loss.type in CLASSIFIER_LOSSES and values.ndim == 2:
            if values.shape[1] == 1:
                columns[f"{prefix}label"] = (flat[:, 0] > 0.5).astype(np.int64)
                columns[f"{prefix}probability"] = flat[:, 0]
            else:
                columns[f"{prefix}label"] = flat.argmax(axis=1)
                for k in range(flat.shape[1]):
                    columns[f"{prefix}probability_{k}"] = flat[:, k]
        else:
            for k in range(flat.shape[1]):
                columns[f"{prefix}value" if flat.shape[1] == 1 else f"{prefix}value_{k}"] = flat[:, k]
    return columns


def _records(columns: dict[str, np.ndarray]) -> Iterator[dict[str, float | int]]:
    count = len(next(iter(columns.values())))
    as_lists = {k: v.tolist() for k, v in columns.items()}
    for i in range(count):  # formatting output rows, not the numeric hot path
        yield {"index": i, **{k: v[i] for k, v in as_lists.items()}}


def write_predictions(outputs: dict[str, np.ndarray], model: Model, path: Path | None, as_json: bool) -> list[str]:
    """Write predictions to `path` by its suffix; without a path return the lines for stdout."""
    columns = _columns(model, outputs)
    if path is None:
        if as_json:
            return [json.dumps(r) for r in _records(columns)]
        return [" ".join(f"{k}={_fmt(v)}" for k, v in r.items()) for r in _records(columns)]
    suffix = path.suffix
    buffer = io.BytesIO()
    if suffix == ".npy":
        if len(outputs) != 1:
            raise DataError(f"{path}: the model has {len(outputs)} outputs; write them to an .npz")
        np.save(buffer, next(iter(outputs.values())), allow_pickle=False)
    elif suffix == ".npz":
        np.savez(buffer, **outputs)
    elif suffix == ".csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(zip(*(v.tolist() for v in columns.values())))
        buffer.write(text.getvalue().encode())
    elif suffix in (".jsonl", ".json"):
        buffer.write("".join(json.dumps(r) + "\n" for r in _records(columns)).encode())
    else:
        raise DataError(f"{path}: unsupported output file; use .npy, .npz, .csv or .jsonl")
    write_atomically(path, buffer.getvalue())
    count = len(next(iter(columns.values())))
    return [json.dumps({"event": "predictions", "path": str(path), "count": count})] if as_json \
        else [f"predictions path={path} count={count}"]


def _fmt(value: float | int) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
