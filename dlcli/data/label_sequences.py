"""Label sequences given with their lengths (Keras' label_length): the labels past each row's length become -1
padding, the form the ctc loss and the checks of its targets take."""

from __future__ import annotations

import numpy as np

from dlcli.errors import DataError


def label_sequences(labels: np.ndarray, lengths: np.ndarray, label: str) -> np.ndarray:
    """labels (examples, max_length) with the entries at or past each row's length set to -1.

    Checks what a lengths array can get wrong: its dtype, its shape, and lengths outside [0, max_length].
    """
    labels = labels[:, None] if labels.ndim == 1 else labels
    if labels.ndim != 2:
        raise DataError(f"{label}: lengths go with label sequences (examples, max_length), but the labels have shape "
                        f"{list(labels.shape)}")
    lengths = lengths.reshape(-1) if lengths.ndim == 2 and lengths.shape[1] == 1 else lengths
    if lengths.ndim != 1 or len(lengths) != len(labels):
        raise DataError(f"{label}: needs one length per example, shape [{len(labels)}], found shape "
                        f"{list(lengths.shape)}")
    if lengths.dtype.kind == "f" and np.all(lengths == np.round(lengths)):
        lengths = lengths.astype(np.int64)
    if lengths.dtype.kind not in "iu":
        raise DataError(f"{label}: lengths must be integers, found dtype {lengths.dtype}")
    bad = (lengths < 0) | (lengths > labels.shape[1])
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{label}: row {row} has length {int(lengths[row])}, outside [0, {labels.shape[1]}] (the "
                        f"labels' width); {int(bad.sum()):,} such rows")
    kept = np.arange(labels.shape[1]) < lengths[:, None]
    if labels.dtype.kind not in "iuf":  # not labels at all: the ctc check names the dtype
        return labels
    out = labels.astype(np.int64 if labels.dtype.kind in "iu" else np.float64)  # uint8 labels cannot hold -1
    out[~kept] = -1
    return out
