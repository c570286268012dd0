"""Reading inputs for `dlcli predict` and writing its predictions (.npy, .npz, .csv, .jsonl or stdout lines)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np

from dlcli.checkpoint import write_atomically
from dlcli.data import read_csv_columns, read_csv_text, read_npy, read_npz, read_text_lines
from dlcli.decoding import ctc_decode, valid_steps_first
from dlcli.errors import DataError, SpecError
from dlcli.graph import Model
from dlcli.spec.models import RunSpec

CLASSIFIER_LOSSES = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy")


def read_inputs(path: Path, spec: RunSpec, model: Model) -> dict[str, np.ndarray]:
    """The model's inputs from a .npy (one input), .npz (arrays by input name, or x) or .csv (feature columns);
    for a model that takes text, a .txt (one text a line) or a .csv (the column data.text names)."""
    names = list(model.inputs)
    takes_text = len(names) == 1 and model.inputs[names[0]].dtype == "string"
    if path.suffix == ".txt" or (takes_text and (path.suffix == ".csv" or path.name.endswith(".csv.gz"))):
        arrays = {names[0]: _texts(path, spec, takes_text)}
    elif path.suffix == ".npy":
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
        raise DataError(f"{path}: unsupported input file; use .npy, .npz or .csv (or .txt, for a text model)")
    for name, array in arrays.items():
        expected = tuple(model.inputs[name].shape)
        if array.ndim == 1 and expected == (1,):
            array = arrays[name] = array[:, None]
        if array.shape[1:] != expected:
            raise DataError(f"{path}: input {name!r} has examples of shape {list(array.shape[1:])}, the model takes "
                            f"{list(expected)}")
        if (model.inputs[name].dtype == "string") != (array.dtype.kind == "U"):
            wanted = "text" if model.inputs[name].dtype == "string" else "numbers"
            raise DataError(f"{path}: input {name!r} takes {wanted}, found an array of dtype {array.dtype}")
    return arrays


def _texts(path: Path, spec: RunSpec, takes_text: bool) -> np.ndarray:
    """The texts of a .txt file (a line each) or of the data.text column of a CSV file, for a text model."""
    if not takes_text:
        raise DataError(f"{path}: a .txt file holds one text a line, for a model whose single input has dtype "
                        f"\"string\"; this model takes numbers: use .npy, .npz or .csv")
    if path.suffix == ".txt":
        return read_text_lines(path)
    if spec.data.text is None:
        raise DataError(f"{path}: the model takes text, but its spec names no CSV text column (data.text); give a "
                        f".txt file with one text a line instead")
    return read_csv_text(path, spec.data.text)[0]


def decode_sequences(outputs: dict[str, np.ndarray], model: Model, beam_width: int | None,
                     masks: dict[str, np.ndarray | None] | None = None) -> dict[str, np.ndarray]:
    """Outputs trained with the ctc loss decoded to label sequences padded with -1 (greedy without beam_width);
    only the steps an output's mask keeps (masks[name], (examples, time)) are decoded."""
    ctc = {name for name in outputs if model.outputs[name].loss.type == "ctc"}
    if beam_width is not None and not ctc:
        raise SpecError("--beam-width decodes outputs trained with the ctc loss, and this model has none; drop it")
    decoded = dict(outputs)
    for name in ctc:
        loss = model.outputs[name].loss
        scores, steps = valid_steps_first(outputs[name], (masks or {}).get(name))
        decoded[name] = ctc_decode(scores, beam_width or 1, steps, blank=loss.blank, from_logits=loss.from_logits)
    return decoded


def _columns(model: Model, outputs: dict[str, np.ndarray],
             masks: dict[str, np.ndarray | None]) -> dict[str, np.ndarray | list[list[int]]]:
    """Named result columns: for classifiers a label and one probability per class; for per-step classifiers
    (batch, time, classes) the label of each step the output's mask keeps; label sequences for ctc outputs
    (already decoded, see decode_sequences); otherwise the values."""
    single = len(outputs) == 1
    columns: dict[str, np.ndarray | list[list[int]]] = {}
    for name, values in outputs.items():
        prefix = "" if single else f"{name}_"
        if model.outputs[name].loss.type == "ctc":
            columns[f"{prefix}labels"] = [[label for label in row if label >= 0] for row in values.tolist()]
            continue
        if model.outputs[name].loss.type in CLASSIFIER_LOSSES and values.ndim == 3:
            columns[f"{prefix}labels"] = _step_labels(values, masks.get(name))
            continue
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


def _step_labels(values: np.ndarray, mask: np.ndarray | None) -> list[list[int]]:
    """Each row's class per kept step: argmax over classes, or a single sigmoid above 0.5."""
    labels = (values[..., 0] > 0.5).astype(np.int64) if values.shape[-1] == 1 else values.argmax(axis=-1)
    if mask is None:
        return labels.tolist()
    keep = np.asarray(mask, bool).reshape(labels.shape)
    return [row[kept].tolist() for row, kept in zip(labels, keep)]  # output formatting, one list per example


def _records(columns: dict[str, np.ndarray | list[list[int]]]) -> Iterator[dict[str, float | int | list[int]]]:
    count = len(next(iter(columns.values())))
    as_lists = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in columns.items()}
    for i in range(count):  # formatting output rows, not the numeric hot path
        yield {"index": i, **{k: v[i] for k, v in as_lists.items()}}


def write_predictions(outputs: dict[str, np.ndarray], model: Model, path: Path | None, as_json: bool,
                      masks: dict[str, np.ndarray | None] | None = None) -> list[str]:
    """Write predictions to `path` by its suffix; without a path return the lines for stdout. masks: each
    output's step mask (examples, time) or None; padded steps get no per-step label."""
    columns = _columns(model, outputs, masks or {})
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
        writer.writerows(zip(*(v.tolist() if isinstance(v, np.ndarray) else [" ".join(map(str, row)) for row in v]
                               for v in columns.values())))
        buffer.write(text.getvalue().encode())
    elif suffix in (".jsonl", ".json"):
        buffer.write("".join(json.dumps(r) + "\n" for r in _records(columns)).encode())
    else:
        raise DataError(f"{path}: unsupported output file; use .npy, .npz, .csv or .jsonl")
    write_atomically(path, buffer.getvalue())
    count = len(next(iter(columns.values())))
    return [json.dumps({"event": "predictions", "path": str(path), "count": count})] if as_json \
        else [f"predictions path={path} count={count}"]


def _fmt(value: float | int | list[int]) -> str:
    if isinstance(value, list):  # a label sequence: commas keep `key=value` free of spaces
        return ",".join(map(str, value))
    return f"{value:.6g}" if isinstance(value, float) else str(value)
