"""The .npy reader: x*.npy inputs with their targets in y*.npy beside them; and .npy files read safely (an object
array is refused, never unpickled)."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from dlcli import registry
from dlcli.data.files import existing_file, unreadable
from dlcli.data.readers.reader import Examples, Reader
from dlcli.data.readers.request import ReadRequest, rows_of, single_name
from dlcli.errors import DataError

# what a damaged file raises while we read it; anything else is a bug and keeps its traceback
CORRUPT = (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error)


@registry.readers.register("npy_pair")
class NpyPairReader(Reader):
    """Inputs in x_NAME.npy with their targets in y_NAME.npy beside it, for one input and one output."""

    suffixes = (".npy",)

    def read(self, path: Path, request: ReadRequest) -> Examples:
        """The inputs in `path` and the targets in its y*.npy partner (predict: `path` alone, any name)."""
        if request.targets is None:
            names = list(request.inputs)
            if len(names) != 1:
                raise DataError(f"{path}: the model has {len(names)} inputs; give an .npz with arrays {names}")
            return Examples({names[0]: request.input_array(read_npy(path), names[0], str(path))})
        if request.weight_name is not None:
            raise DataError(f"{path}: a pair of .npy files holds inputs and targets only, no sample weights "
                            f"(data.sample_weight = {request.weight_name!r}); save x, y and the weights as arrays "
                            f"of one .npz")
        input_name, output_name = single_name(request.inputs, "input"), single_name(request.targets, "output")
        x = request.input_array(read_npy(path), input_name, str(path))
        target_path = _partner(path)
        y = request.target_array(read_npy(target_path), output_name, str(target_path), rows_of(str(target_path)))
        return Examples({input_name: x}, {output_name: y})


def _partner(path: Path) -> Path:
    """y_NAME.npy, the targets beside inputs x_NAME.npy."""
    stem = path.stem
    if not stem.startswith("x"):
        raise DataError(f"{path}: a .npy input file must be named x*.npy with its targets in y*.npy beside it")
    partner = path.with_name("y" + stem[1:] + ".npy")
    if not os.path.lexists(partner):  # a broken link or a loop is there: reading it says which
        raise DataError(f"{path}: its targets {partner.name} are missing; put them beside it")
    return partner


def read_npy(path: str | Path) -> np.ndarray:
    """The array in a .npy file; an object array is refused, never unpickled."""
    path = existing_file(path)
    try:
        with open(path, "rb") as fp:
            refuse_object_arrays(fp, path, None)
        return np.load(path, allow_pickle=False)
    except CORRUPT as err:
        hint = " (it is a zip archive: name it .npz)" if zipfile.is_zipfile(path) else ""
        raise unreadable(path, err, "a readable .npy file", hint) from None


def refuse_object_arrays(fp: IO[bytes], path: Path, key: str | None) -> None:
    """Raise DataError if the .npy stream at `fp` (the file `path`, or its archive member `key`) holds Python
    objects, reading only its header."""
    version = np.lib.format.read_magic(fp)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    _shape, _fortran_order, dtype = read_header(fp)
    if dtype.hasobject:
        where = f"{path}, array {key!r}," if key is not None else str(path)
        raise DataError(f"{where} holds Python objects (dtype {dtype}): object arrays are not supported, because "
                        f"reading them means unpickling, which can run arbitrary code; save the data as numeric "
                        f"arrays instead (pad ragged sequences into one integer array)")
