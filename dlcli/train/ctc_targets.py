"""Targets of an output trained with the ctc loss: label sequences padded with -1, checked against the output's
steps and classes (the padding itself comes from the file: -1, or an array of lengths, data/label_sequences.py)."""

from __future__ import annotations

import numpy as np

from dlcli.errors import DataError, SpecError
from dlcli.ops.loss import packed_labels


def ctc_labels(target: np.ndarray, label: str, shape: tuple[int, ...], blank: int | None) -> np.ndarray:
    """Label sequences for a ctc output (time, classes): integers in [0, classes) but the blank, -1 padding.

    Each row must fit in the output's steps: CTC needs one step per label plus a blank between repeats.
    """
    if len(shape) != 2:
        raise SpecError(f"{label}: the ctc loss needs an output of shape (time, classes), but it gives {list(shape)}; "
                        "end the model with a dense layer on a sequence (return_sequences = true)")
    steps, classes = shape
    blank = classes - 1 if blank is None else blank
    if blank >= classes:
        raise SpecError(f"{label}: the ctc loss has blank = {blank}, but the output has {classes} classes "
                        f"(0 to {classes - 1}); set blank to one of them")
    labels = target[:, None] if target.ndim == 1 else target
    if labels.ndim != 2:
        raise DataError(f"{label}: ctc targets are label sequences (examples, max_length) padded with -1, found "
                        f"shape {list(target.shape)}")
    if labels.dtype.kind == "f":
        fractional = labels != np.round(labels)  # NaN counts as fractional too
        if fractional.any():
            raise DataError(f"{label}: ctc needs integer labels, found {labels[fractional][0]}")
    elif labels.dtype.kind not in "iu":
        raise DataError(f"{label}: ctc needs integer labels, found dtype {labels.dtype}")
    bad = ((labels < 0) & (labels != -1)) | (labels >= classes) | (labels == blank)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{label}: labels must lie in [0, {classes}) except the blank {blank}, with -1 as padding; "
                        f"found {labels[row, column]:g} at row {row}, position {column} ({int(bad.sum()):,} such "
                        "values). Check the number of classes (the output's width) and the blank index")
    labels = labels.astype(np.int64)
    packed, lengths = packed_labels(labels)
    repeats = ((packed[:, 1:] == packed[:, :-1]) & (packed[:, 1:] >= 0)).sum(axis=1)
    too_long = lengths + repeats > steps
    if too_long.any():
        row = int(np.argmax(too_long))
        raise DataError(f"{label}: row {row} has {lengths[row]} labels ({repeats[row]} repeated) that need "
                        f"{lengths[row] + repeats[row]} steps, but the output has {steps} ({int(too_long.sum()):,} of "
                        f"{len(labels):,} rows too long); CTC cannot align them: shorten the labels or give the output "
                        f"more steps")
    return labels
