"""Reading inputs for `dlcli predict` and writing its predictions (.npy, .npz, .csv, .jsonl or stdout lines)."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dlcli.checkpoint import write_atomically
from dlcli.data import listed_rows, nonfinite_rows, read_examples
from dlcli.data.windows import Windows
from dlcli.decoding import ctc_decode
from dlcli.errors import DataError, SpecError
from dlcli.graph import Model
from dlcli.output_text import json_line, plain_value_text
from dlcli.spec.models import RunSpec
from dlcli.tensor.mask import valid_steps_first
from dlcli.train.datasets import CLASSIFIER_LOSSES, read_request

OUTPUT_SUFFIXES = (".npy", ".npz", ".csv", ".jsonl", ".json")


@dataclass
class PredictionInputs:
    """The model's inputs read from a file, and how to name an example's place in that file."""

    arrays: dict[str, Any]  # an image folder's images are a lazy array, decoded a batch at a time
    path: Path
    lines: np.ndarray | None = None  # a CSV file's line of each example (header = line 1); None: rows from 0
    # columns naming each example, written before its predictions: its file (path), when each is a file of its
    # own (images, texts of a folder); a time-series window's row and target_row
    positions: dict[str, np.ndarray] = field(default_factory=dict)

    def places(self, examples: np.ndarray) -> str:
        """ "lines 3, 7" or "rows 2, 6 (counting from 0)": where these examples are in the file (a time-series
        window: where its last row is)."""
        if self.lines is not None:
            return listed_rows([str(int(self.lines[i])) for i in examples], "line")
        rows = self.positions.get("row")
        shown = examples if rows is None else rows[examples]
        return f"{listed_rows([str(int(i)) for i in shown])} (counting from 0)"


def check_output_path(path: Path | None, model: Model | None, allow_nonfinite: bool) -> None:
    """SpecError (a usage error, exit 2) for an --output the predictions cannot be written to, found before the
    model runs: an unknown suffix, a folder that is not there, a .npy for marked rows or (given the model) for
    several outputs."""
    if path is None:
        return
    if path.suffix not in OUTPUT_SUFFIXES:
        raise SpecError(f"--output {path}: unsupported suffix {path.suffix or '(none)'!r}; use .npy, .npz, .csv or "
                        f".jsonl")
    if model is not None and path.suffix == ".npy" and len(model.outputs) != 1:
        raise SpecError(f"--output {path}: the model has {len(model.outputs)} outputs and a .npy file holds one "
                        f"array; write them to an .npz")
    if path.suffix == ".npy" and allow_nonfinite:
        raise SpecError(f"--output {path}: --allow-nonfinite marks rows in a nonfinite column, which a .npy file "
                        f"(one array) has no room for; write .npz, .csv or .jsonl")
    if not os.path.isdir(path.parent or "."):  # isdir, unlike Path.is_dir, answers False for any OSError
        raise SpecError(f"--output {path}: the folder {path.parent} does not exist; create it first")


def read_prediction_inputs(path: Path, spec: RunSpec, model: Model, schema: dict[str, Any] | None = None
                           ) -> PredictionInputs:
    """The model's inputs from a file, by the reader registered for its kind (dlcli/data/readers/), read as
    training read its data: `schema` is the checkpoint's metadata["data"] (empty for old checkpoints). NaN and
    infinity are let through, for nonfinite_examples to refuse or mark."""
    examples = read_examples(path, read_request(model, spec.data, schema or {}, targets=False))
    arrays = examples.inputs
    for name, array in arrays.items():
        expected = tuple(model.inputs[name].shape)
        if len(array.shape) == 1 and expected == (1,):
            array = arrays[name] = array[:, None]
        if tuple(array.shape[1:]) != expected:
            raise DataError(f"{path}: input {name!r} has examples of shape {list(array.shape[1:])}, the model takes "
                            f"{list(expected)}")
    positions = {"path": np.array(examples.sources, dtype=str)} if examples.sources else {}
    return PredictionInputs(arrays, path, examples.lines, {**positions, **examples.positions})


def nonfinite_examples(inputs: PredictionInputs, allow: bool) -> np.ndarray | None:
    """Which examples hold NaN, infinity or a missing cell: a DataError naming them unless `allow`, then a mask
    (None when not allowed and all is well). A model answers such rows with a confident label all the same."""
    rows = np.zeros(len(next(iter(inputs.arrays.values()))), bool)
    for array in inputs.arrays.values():
        rows |= nonfinite_rows(array)
    if allow:
        return rows
    if not rows.any():
        return None
    bad = np.flatnonzero(rows)
    if any(isinstance(array, Windows) for array in inputs.arrays.values()):  # a window holds many rows
        raise DataError(f"{inputs.path}, the windows ending on {inputs.places(bad)}: {bad.size:,} of {rows.size:,} "
                        f"windows read NaN, infinity or a missing value; a model answers them with a forecast that "
                        f"means nothing: fill in those cells, or pass --allow-nonfinite to predict them anyway, "
                        f"marked nonfinite=true")
    raise DataError(f"{inputs.path}, {inputs.places(bad)}: NaN, infinity or a missing value in {bad.size:,} of "
                    f"{rows.size:,} examples; a model answers such rows with a confident label that means nothing: "
                    f"fix or drop them, or pass --allow-nonfinite to predict them anyway, marked nonfinite=true")


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


def _columns(model: Model, outputs: dict[str, np.ndarray], masks: dict[str, np.ndarray | None],
             classes: dict[str, list[str]]) -> dict[str, np.ndarray | list[list[Any]]]:
    """Named result columns: for classifiers a label and one probability per class; for per-step classifiers
    (batch, time, classes) the label of each step the output's mask keeps; label sequences for ctc outputs
    (already decoded, see decode_sequences); otherwise the values. An output trained on class names
    (`classes[name]`) gives the name as its label and the class id beside it (label_id)."""
    single = len(outputs) == 1
    columns: dict[str, np.ndarray | list[list[Any]]] = {}
    for name, values in outputs.items():
        prefix = "" if single else f"{name}_"
        loss = model.outputs[name].loss.type
        names = np.array(classes[name]) if name in classes else None
        if loss == "ctc":
            columns[f"{prefix}labels"] = [[label for label in row if label >= 0] for row in values.tolist()]
            continue
        if loss in CLASSIFIER_LOSSES and values.ndim == 3:
            columns[f"{prefix}labels"] = _step_labels(values, masks.get(name), names)
            continue
        flat = values.reshape(len(values), -1)
        if loss in CLASSIFIER_LOSSES and values.ndim == 2:
            ids = (flat[:, 0] > 0.5).astype(np.int64) if values.shape[1] == 1 else flat.argmax(axis=1)
            columns[f"{prefix}label"] = ids if names is None else names[ids]
            if names is not None:
                columns[f"{prefix}label_id"] = ids
            if values.shape[1] == 1:
                columns[f"{prefix}probability"] = flat[:, 0]
            else:
                for k in range(flat.shape[1]):
                    columns[f"{prefix}probability_{k}"] = flat[:, k]
        else:
            for k in range(flat.shape[1]):
                columns[f"{prefix}value" if flat.shape[1] == 1 else f"{prefix}value_{k}"] = flat[:, k]
    return columns


def _step_labels(values: np.ndarray, mask: np.ndarray | None, names: np.ndarray | None) -> list[list[Any]]:
    """Each row's class per kept step (its name, for an output trained on names): argmax over classes, or a
    single sigmoid above 0.5."""
    labels = (values[..., 0] > 0.5).astype(np.int64) if values.shape[-1] == 1 else values.argmax(axis=-1)
    shown = labels if names is None else names[labels]
    if mask is None:
        return shown.tolist()
    keep = np.asarray(mask, bool).reshape(labels.shape)
    return [row[kept].tolist() for row, kept in zip(shown, keep)]  # output formatting, one list per example


def _records(columns: dict[str, np.ndarray | list[list[Any]]]) -> Iterator[dict[str, Any]]:
    count = len(next(iter(columns.values())))
    as_lists = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in columns.items()}
    for i in range(count):  # formatting output rows, not the numeric hot path
        yield {"index": i, **{k: v[i] for k, v in as_lists.items()}}


def write_predictions(outputs: dict[str, np.ndarray], model: Model, path: Path | None, as_json: bool,
                      masks: dict[str, np.ndarray | None] | None = None, classes: dict[str, list[str]] | None = None,
                      nonfinite: np.ndarray | None = None, positions: dict[str, np.ndarray] | None = None
                      ) -> list[str]:
    """Write predictions to `path` by its suffix; without a path return the lines for stdout. masks: each
    output's step mask (examples, time) or None; padded steps get no per-step label. classes: the class names
    of outputs trained on names (the checkpoint's schema). nonfinite: with --allow-nonfinite, which examples
    held NaN or infinity, written as a nonfinite column (an array in an .npz). positions: columns naming each
    example (PredictionInputs.positions: its file, a window's rows), written first."""
    check_output_path(path, model, nonfinite is not None)
    columns: dict[str, np.ndarray | list[list[Any]]] = dict(positions or {})
    columns.update(_columns(model, outputs, masks or {}, classes or {}))
    if nonfinite is not None:
        columns["nonfinite"] = nonfinite
    if path is None:
        if as_json:
            return [json_line(r) for r in _records(columns)]
        return [" ".join(f"{k}={_fmt(v)}" for k, v in r.items()) for r in _records(columns)]
    buffer = io.BytesIO()
    if path.suffix == ".npy":
        np.save(buffer, next(iter(outputs.values())), allow_pickle=False)
    elif path.suffix == ".npz":
        np.savez(buffer, **outputs, **({"nonfinite": nonfinite} if nonfinite is not None else {}),
                 **(positions or {}))
    elif path.suffix == ".csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(zip(*(v.tolist() if isinstance(v, np.ndarray) else [" ".join(map(str, row)) for row in v]
                               for v in columns.values())))
        buffer.write(text.getvalue().encode())
    else:  # .jsonl, .json: check_output_path let nothing else through
        buffer.write("".join(json_line(r) + "\n" for r in _records(columns)).encode())
    write_atomically(path, buffer.getvalue(), SpecError)
    count = len(next(iter(columns.values())))
    return [json_line({"event": "predictions", "path": str(path), "count": count})] if as_json \
        else [f"predictions path={path} count={count}"]


def _fmt(value: Any) -> str:
    if isinstance(value, list):  # a label sequence: commas keep `key=value` free of spaces
        return ",".join(map(_fmt, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a class name: quoted when it would break `key=value` apart
        return plain_value_text(value)
    return f"{value:.6g}" if isinstance(value, float) else str(value)
