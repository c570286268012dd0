"""Which NumPy dtype kinds an input or a target may have, decided once for every reader.

kind  what it holds         numeric input   text input        target
b     bool                  yes (0 and 1)   no                yes (0 and 1)
i, u  integers              yes             no                yes
f     floats                yes             no                yes
c     complex               no: a cast to float drops the imaginary part without a word
m, M  timedelta, datetime   no: convert them to numbers (seconds, day of week, ...) first
O     Python objects        no: refused before reading (unpickling runs code), see readers/npy_pair.py
S     bytes                 no              yes (as UTF-8)    class names (as UTF-8), classification only
U     unicode text          no              yes               class names, classification only
V     void / structured     no: store each field as its own array
"""

from __future__ import annotations

import numpy as np

from dlcli.errors import DataError

TEXT_KINDS = "SU"
_INT_RANGES = {"int32": np.iinfo(np.int32), "int64": np.iinfo(np.int64)}

_REFUSED = {
    "c": "complex numbers (dtype {dtype}): a model takes real numbers, and a cast would silently drop the imaginary "
         "part; store the real and imaginary parts (or the magnitude and phase) as separate features",
    "m": "time spans (dtype {dtype}); convert them to numbers first, e.g. seconds as float32",
    "M": "dates or times (dtype {dtype}); convert them to numbers first, e.g. seconds since an epoch, or day of "
         "week and hour as features",
    "O": "Python objects (dtype {dtype}); save the data as numeric arrays instead",
    "V": "structured or raw records (dtype {dtype}); store each field as its own array, or stack numeric fields "
         "into one float array",
}


def as_text(array: np.ndarray, label: str) -> np.ndarray:
    """Unicode strings from a bytes (S) array, read as UTF-8; other arrays are returned as they are."""
    if array.dtype.kind != "S":
        return array
    try:
        return np.char.decode(array, "utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{label} holds bytes that are not UTF-8 text ({err}); save the text as unicode "
                        f"strings") from None


def check_input_dtype(array: np.ndarray, model_dtype: str, label: str) -> np.ndarray:
    """The array checked for a model input of `model_dtype` ("float32", "int32", "int64" or "string"); bytes
    become unicode for a text input. DataError naming `label` for a kind the input cannot take."""
    kind = array.dtype.kind
    if kind in _REFUSED:
        raise DataError(f"{label} holds {_REFUSED[kind].format(dtype=array.dtype)}")
    if model_dtype == "string":
        if kind not in TEXT_KINDS:
            raise DataError(f"{label}: the model takes text (dtype = \"string\"), but the data has dtype "
                            f"{array.dtype}; give it strings (a CSV column named by data.text, or a unicode array)")
        return as_text(array, label)
    if kind in TEXT_KINDS:
        raise DataError(f"{label}: the data is text (dtype {array.dtype}), but the model's input is numeric; give "
                        f"the input dtype = \"string\" and shape = [1] and start the model with text_vectorization"
                        f" (or, for words such as true/false, store them as numbers)")
    if model_dtype in _INT_RANGES:
        _check_integers(array, model_dtype, label)
    return array


def _check_integers(array: np.ndarray, model_dtype: str, label: str) -> None:
    """DataError unless every value fits the integer input dtype exactly (no fraction, no overflow, no NaN)."""
    if array.size == 0:
        return
    limits = _INT_RANGES[model_dtype]
    with np.errstate(invalid="ignore"):
        bad = (array != np.round(array)) if array.dtype.kind == "f" else np.zeros(array.shape, bool)
        bad |= (array < limits.min) | (array > limits.max)
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), array.shape)
        raise DataError(f"{label}: the model's input has dtype {model_dtype}, which takes whole numbers in "
                        f"[{limits.min}, {limits.max}], but row {int(first[0])} holds {array[first]} "
                        f"({int(bad.sum()):,} such values); a cast would change them silently: fix the data or "
                        f"give the input dtype = \"float32\"")


def check_target_dtype(array: np.ndarray, names_allowed: bool, loss: str, label: str) -> np.ndarray:
    """The target array checked: numbers, or text (class names, bytes read as UTF-8) for a classification loss."""
    kind = array.dtype.kind
    if kind in _REFUSED:
        raise DataError(f"{label} holds {_REFUSED[kind].format(dtype=array.dtype)}")
    if kind in TEXT_KINDS:
        if not names_allowed:
            raise DataError(f"{label} holds text (dtype {array.dtype}), but the loss {loss} needs numeric targets; "
                            f"class names need a classification loss (sparse_categorical_crossentropy, "
                            f"binary_crossentropy, or categorical_crossentropy with data.one_hot = true)")
        return as_text(array, label)
    return array
