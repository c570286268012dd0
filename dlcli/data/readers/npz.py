"""The .npz reader: arrays by name, mapped to the model's inputs and outputs by data.inputs and data.targets; and
.npz archives read safely (object arrays are refused, never unpickled)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from dlcli import registry
from dlcli.data.files import existing_file, unreadable
from dlcli.data.label_sequences import label_sequences
from dlcli.data.readers.npy_pair import CORRUPT, refuse_object_arrays
from dlcli.data.readers.reader import Examples, Reader
from dlcli.data.readers.request import ReadRequest, rows_of
from dlcli.errors import DataError, SpecError


@registry.readers.register("npz")
class NpzReader(Reader):
    """Arrays by name in an .npz archive: x and y, or as data.inputs and data.targets map them."""

    suffixes = (".npz",)

    def read(self, path: Path, request: ReadRequest) -> Examples:
        """The arrays the mappings name; reading inputs only, an input's own name is taken where its mapped name
        is not in the file."""
        if request.targets is None:
            return Examples(_prediction_inputs(read_npz(path), path, request))
        arrays = read_npz(path)
        inputs = {name: request.input_array(_pick(arrays, path, array, "input"), name, f"{path}, array {array!r}")
                  for name, array in _mapping(request.data.inputs, request.inputs, "x").items()}
        targets = {name: _target(arrays, path, array, name, request)
                   for name, array in _mapping(request.data.targets, request.targets, "y").items()}
        weights = None
        if request.weight_name is not None:
            label = f"{path}, array {request.weight_name!r}"
            weights = request.weight_array(_pick(arrays, path, request.weight_name, "sample weights"), label,
                                           rows_of(label))
        return Examples(inputs, targets, weights=weights)


def _prediction_inputs(found: dict[str, np.ndarray], path: Path, request: ReadRequest) -> dict[str, np.ndarray]:
    names = list(request.inputs)
    mapping = request.data.inputs or ({names[0]: "x"} if len(names) == 1 else {n: n for n in names})
    arrays = {}
    for name in names:
        key = mapping[name] if mapping[name] in found else name
        if key not in found:
            raise DataError(f"{path}: no array {mapping[name]!r} for input {name!r}; the file holds "
                            f"{', '.join(sorted(found))}")
        arrays[name] = request.input_array(found[key], name, f"{path}, array {key!r}")
    return arrays


def _target(arrays: dict[str, np.ndarray], path: Path, name: str, output: str, request: ReadRequest) -> np.ndarray:
    """The target array `name`; for label sequences (ctc), an array `<name>_lengths` beside it gives each row's
    number of labels (Keras' label_length), and what follows them, whatever it holds, becomes -1 padding."""
    label = f"{path}, array {name!r}"
    target = request.target_array(_pick(arrays, path, name, "target"), output, label, rows_of(label))
    lengths_name = f"{name}_lengths"
    if not request.target(output).label_lengths or lengths_name not in arrays:
        return target
    return label_sequences(target, arrays[lengths_name], f"{path}: {lengths_name!r}")


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
        raise DataError(f"{path}: no array {name!r} for the {role}; the file holds "
                        f"{', '.join(sorted(arrays)) or 'nothing'}. Map arrays with data.inputs / data.targets")
    return arrays[name]


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array in an .npz archive, by name; object arrays are refused, never unpickled."""
    path = existing_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith(".npy"):
                    with archive.open(member) as fp:
                        refuse_object_arrays(fp, path, member.removesuffix(".npy"))
        with np.load(path, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in arrays.files}
    except CORRUPT as err:
        raise unreadable(path, err, "a readable .npz archive") from None
