"""Class labels given by name ("cat", "dog"): the class list is the training data's names sorted, as Keras
(`StringLookup` with sorted vocabularies) and scikit-learn (`LabelEncoder`) sort them, and each name becomes
its index in that list."""

from __future__ import annotations

from typing import Callable

import numpy as np

from dlcli.data.table import is_number
from dlcli.errors import DataError

Where = Callable[[int], str]  # row (counting from 0 in the file, before any shuffle) -> "FILE, line N" etc.


def class_list(names: np.ndarray) -> list[str]:
    """The distinct names, sorted by code point (np.unique's order, which is scikit-learn's)."""
    return [str(name) for name in np.unique(names)]


def class_ids(names: np.ndarray, classes: list[str], where: Where, column: str) -> np.ndarray:
    """Each name's index in `classes` (int64, names' shape); DataError naming the first unknown name and its row.

    `column` says which labels these are in messages, e.g. "column 'species'".
    """
    distinct, inverse = np.unique(names, return_inverse=True)
    index = {name: i for i, name in enumerate(classes)}
    ids = np.array([index.get(str(name), -1) for name in distinct], dtype=np.int64)  # one lookup per class
    per_row = ids[inverse.reshape(-1)].reshape(names.shape)
    unknown = (per_row < 0).reshape(len(names), -1)
    if unknown.any():
        row = int(np.argmax(unknown.any(axis=1)))
        name = str(names.reshape(len(names), -1)[row][unknown[row]][0])
        others = sorted({str(n) for n, i in zip(distinct, ids) if i < 0} - {name})
        more = f" (and {len(others)} more unknown: {', '.join(others[:5])})" if others else ""
        raise DataError(f"{where(row)}, {column}: class {name!r} is not one of the {len(classes)} classes of the "
                        f"training data ({', '.join(classes)}){more}; fix the label, or train on data that has "
                        f"that class")
    return per_row


def numbers_or_names(cells: np.ndarray, where: Where, column: str, names_allowed: bool, loss: str) -> bool:
    """Whether the label cells (stripped strings, none missing) are class names rather than numbers.

    Numbers win when every cell is one; names need a classification loss and no cell that is a number, since
    a column that mixes them is most often a typo in one or the other.
    """
    try:
        cells.astype(np.float64)
        return False
    except ValueError:
        pass
    distinct = np.unique(cells)
    names = ~np.fromiter((is_number(cell) for cell in distinct), bool, count=len(distinct))  # once per distinct
    is_name = np.isin(cells, distinct[names])
    first_name = int(np.argmax(is_name))  # in file order
    if not names_allowed:
        raise DataError(f"{where(first_name)}, {column}: expected a number, found {str(cells[first_name])!r}; the "
                        f"loss {loss} needs numeric targets, and class names need a classification loss "
                        f"(sparse_categorical_crossentropy, binary_crossentropy, or categorical_crossentropy with "
                        f"data.one_hot = true); fix the cell or drop the row")
    if not names.all():
        first_number = int(np.argmax(~is_name))
        raise DataError(f"{where(first_name)}, {column}: class name {str(cells[first_name])!r}, but "
                        f"{where(first_number)} holds the number {str(cells[first_number])!r}: the labels mix "
                        f"class names and numbers; use one kind throughout (all names, or all integer ids)")
    return True


def check_class_count(classes: list[str], width: int, binary: bool, label: str) -> None:
    """DataError unless the training data's classes fit the output: one unit per class (two classes for a single
    sigmoid unit), so that every unit has a name and every name a unit."""
    if len(classes) == (2 if binary else width):
        return
    listed = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    found = f"{label}: the training data has {len(classes)} class names ({listed}), but"
    if binary:
        raise DataError(f"{found} a single sigmoid unit (binary_crossentropy) needs exactly 2; fix the labels, or "
                        f"use sparse_categorical_crossentropy with {len(classes)} units")
    raise DataError(f"{found} the output has {width} units, one per class; give it {len(classes)} units, or fix "
                    f"the labels")


def check_class_ids(ids: np.ndarray, width: int, where: Where, column: str) -> None:
    """DataError naming the first row, in file order, whose class ids are not whole numbers in [0, width)."""
    flat = ids.reshape(len(ids), -1)
    with np.errstate(invalid="ignore"):
        bad = (flat < 0) | (flat >= width)
        if flat.dtype.kind == "f":
            bad |= flat != np.floor(flat)  # NaN compares unequal: it is refused too
    if not bad.any():
        return
    rows = bad.any(axis=1)
    row = int(np.argmax(rows))
    value = flat[row][bad[row]][0].item()
    raise DataError(f"{where(row)}, {column}: class id {value:g} is not a whole number in [0, {width}) for an "
                    f"output of {width} units ({int(rows.sum()):,} such rows); check the labels, or the number of "
                    f"classes (the output's width)")
