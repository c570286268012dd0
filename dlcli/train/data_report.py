"""`dlcli validate SPEC --data-report`: what the data of a run holds, in the spirit of spaCy's `debug data`.

Per split: its examples, each target's class balance (or range), each input's constant features, and each
output's weights; between the training split and the others: examples whose inputs are the same bytes (by
content; lazy arrays by a hash of each example, a batch at a time), which make validation scores look better
than they are. Per file: what its reader can tell
(Reader.describe: a table's missing and constant columns, an image folder's sizes and modes, ...).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from dlcli.data import dataset_info, describe_file, is_lazy
from dlcli.data.dtypes import TEXT_KINDS
from dlcli.data.windows import Windows
from dlcli.graph import Model
from dlcli.spec.models import RunSpec
from dlcli.train.class_weights import CLASSIFIER_LOSSES, class_labels
from dlcli.train.datasets import Splits, read_request
from dlcli.train.loop import Split

SHOWN = 10  # how many names a list of constant features shows before it counts the rest
HASHED_BATCH = 256  # examples of a lazy array gathered at once to hash them (never the whole split)


def data_report(spec: RunSpec, model: Model, splits: Splits | None) -> dict[str, Any]:
    """The report as JSON-able values: files, splits, and duplicates between training and the other splits; with
    no splits (a registry dataset not on this machine, which validate never downloads) what the registry knows."""
    report: dict[str, Any] = {"files": {}, "splits": {}, "duplicates": {}}
    if spec.data.dataset is not None:
        info = dataset_info(spec.data.dataset)
        report["files"]["dataset"] = {"name": info.name, "on_this_machine": splits is not None, "task": info.task,
                                      "num_classes": info.num_classes, "input_shape": list(info.input_shape),
                                      "size_bytes": info.size_bytes}
    if splits is None:
        return report
    parts = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    for key in ("train", "validation", "test"):
        path = getattr(spec.data, key)
        if path is not None:
            report["files"][key] = {"path": str(path), **describe_file(path, read_request(model, spec.data,
                                                                                        dict(splits.schema)))}
    for name, split in parts.items():
        if split is not None:
            report["splits"][name] = split_report(split, model, splits.schema)
    for name in ("validation", "test"):
        if parts[name] is not None:
            report["duplicates"][name] = duplicates(splits.train, parts[name])  # type: ignore[arg-type]
    return report


def split_report(split: Split, model: Model, schema: dict[str, Any]) -> dict[str, Any]:
    """One split: its examples, inputs (shape, dtype, constant features), targets and weights."""
    columns = schema.get("columns")
    inputs = {name: _input_report(array, columns if len(model.inputs) == 1 else None)
              for name, array in split.inputs.items()}
    targets = {name: _target_report(target, model, name, (schema.get("classes") or {}).get(name))
               for name, target in split.targets.items()}
    report = {"examples": len(split), "inputs": inputs, "targets": targets}
    if split.weights:
        report["weights"] = {name: _range(weights) for name, weights in split.weights.items()}
    return report


def _input_report(array: Any, columns: list[str] | None) -> dict[str, Any]:
    """Shape, dtype and the features that hold one value throughout (of windows: of the table's rows); a lazy
    array's own facts (its describe(): an image folder's sizes and modes, say) besides."""
    # text as the spec names it: numpy's '<U51' (a CSV column's longest text) or '<U0' (a text folder's lazy
    # rows) are widths, not what the model takes
    dtype = "string" if array.dtype.kind in TEXT_KINDS else str(array.dtype)
    report: dict[str, Any] = {"shape": list(array.shape[1:]), "dtype": dtype}
    if is_lazy(array) and hasattr(array, "describe"):
        report.update(array.describe())
    values = array.table if isinstance(array, Windows) else None if is_lazy(array) else array
    if values is None or values.dtype.kind not in "biuf" or len(values) == 0:
        return report
    flat = values.reshape(len(values), -1)
    constant = np.flatnonzero(flat.min(axis=0) == flat.max(axis=0))
    names = columns if columns is not None and len(columns) == flat.shape[1] else None
    shown = [names[j] if names else int(j) for j in constant[:SHOWN]]
    report["constant_features"] = {"count": int(constant.size), "of": int(flat.shape[1]), "first": shown}
    return report


def _target_report(target: np.ndarray, model: Model, output: str, names: list[str] | None) -> dict[str, Any]:
    """A classifier's class balance (examples, or steps, per class); any other target's range."""
    loss = model.outputs[output].loss.type
    if loss not in CLASSIFIER_LOSSES:
        return {"range": _range(target)} if loss != "ctc" else {"label_sequences": len(target)}
    labels = class_labels(target, model.shapes[output], loss).reshape(-1)
    present, counts = np.unique(labels, return_counts=True)
    balance = {(names[label] if names and 0 <= label < len(names) else str(int(label))): int(count)
               for label, count in zip(present, counts)}
    return {"classes": balance, "largest_to_smallest": float(counts.max() / counts.min())}


def _range(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, np.float64)
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
            "std": float(values.std())}


def duplicates(train: Split, other: Split) -> dict[str, Any]:
    """How many examples of `other` have inputs byte for byte equal to a training example's (by content: each
    example's input bytes compared whole), and the first of them; windows are left out (they overlap by
    design)."""
    arrays = [*train.inputs.values(), *other.inputs.values()]
    if any(isinstance(array, Windows) for array in arrays):
        return {"checked": False, "reason": "time-series windows share rows by design"}
    keys = _row_hashes if any(is_lazy(array) for array in arrays) else _row_keys
    found = np.isin(keys(other), keys(train))
    return {"checked": True, "count": int(found.sum()), "of": len(other),
            "first": [int(i) for i in np.flatnonzero(found)[:SHOWN]]}


def _row_keys(split: Split) -> np.ndarray:
    """Each example's inputs as one opaque byte string (a NumPy void), comparable and sortable as a whole: the
    bytes of its numbers, and a digest of its texts (a unicode array's width is its longest text's, which differs
    between splits and batches)."""
    parts = [np.ascontiguousarray(np.asarray(split.inputs[name])).reshape(len(split), -1) for name in
             sorted(split.inputs)]
    raw = np.concatenate([_text_digests(part) if part.dtype.kind in "OSU" else
                          part.view(np.uint8).reshape(len(split), -1) for part in parts], axis=1)
    return np.ascontiguousarray(raw).view(np.dtype((np.void, raw.shape[1])))[:, 0]


def _text_digests(texts: np.ndarray) -> np.ndarray:
    """(examples, 16) bytes: a 128-bit BLAKE2 digest of each example's texts (a row of cells)."""
    digests = [hashlib.blake2b("\x1f".join(map(str, row)).encode("utf-8", "surrogatepass"), digest_size=16).digest()
               for row in texts.tolist()]  # one per example, for the report only: not the hot path
    return np.frombuffer(b"".join(digests), np.uint8).reshape(len(texts), 16)


def _row_hashes(split: Split) -> np.ndarray:
    """Each example's inputs as a 128-bit BLAKE2 digest, gathered HASHED_BATCH examples at a time: for lazy
    arrays (an image folder's images), which would not fit in memory as whole rows of bytes."""
    digests = []
    for start in range(0, len(split), HASHED_BATCH):
        rows = _row_keys(split.take(slice(start, start + HASHED_BATCH)))
        digests += [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]  # not the hot path
    return np.frombuffer(b"".join(digests), dtype=np.dtype((np.void, 16)))
