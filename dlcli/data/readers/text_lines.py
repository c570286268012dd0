"""The text-lines reader: a UTF-8 file of one text a line, the inputs of a model that takes text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcli import registry
from dlcli.data.files import not_utf8, read_file_bytes
from dlcli.data.readers.reader import Examples, Reader
from dlcli.data.readers.image_folder import read_listed_images
from dlcli.data.readers.request import InputSlot, ReadRequest
from dlcli.errors import DataError


@registry.readers.register("text_lines")
class TextLinesReader(Reader):
    """One text a line, the inputs of a text model, for predict; for an image model, one image path a line."""

    suffixes = (".txt",)

    def read(self, path: Path, request: ReadRequest) -> Examples:
        """Each line an example of the one text input; the file holds no targets, so it feeds predict only."""
        names = list(request.inputs)
        if request.targets is None and len(names) == 1 and _takes_images(request.inputs[names[0]]):
            return read_listed_images(path, list(read_text_lines(path)), request)
        if not (len(names) == 1 and request.inputs[names[0]].takes_text):
            raise DataError(f"{path}: a .txt file holds one text a line, for a model whose single input has dtype "
                            f"\"string\"; this model takes numbers: use .npy, .npz or .csv")
        if request.targets is not None:
            raise DataError(f"{path}: a .txt file holds texts only, one a line, without targets, so it can be given "
                            f"to predict but not trained or evaluated on; put the texts and their targets in a "
                            f".csv (data.text and data.target name the columns) or an .npz")
        return Examples({names[0]: read_text_lines(path)})


def _takes_images(slot: InputSlot) -> bool:
    """Whether a model input takes images: numbers of shape (height, width, channels), 1, 3 or 4 channels."""
    return not slot.takes_text and slot.shape is not None and len(slot.shape) == 3 and slot.shape[2] in (1, 3, 4)


def read_text_lines(path: str | Path) -> np.ndarray:
    """The lines of a UTF-8 text file as unicode strings (1-D), one example a line; a final newline ends the
    last line rather than starting an empty one."""
    path = Path(path)
    raw = read_file_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise not_utf8(path, raw, err, "save it as UTF-8, one example a line") from None
    lines = text.split("\n")  # not splitlines(): it would also split at form feeds and other separators
    if lines[-1] == "":
        lines.pop()
    if not lines:
        raise DataError(f"{path} is empty: expected one text a line")
    return np.array([line.removesuffix("\r") for line in lines], dtype=str)
