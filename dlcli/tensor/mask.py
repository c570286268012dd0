"""Step masks: (batch, time) booleans, True where a step holds data, as `mask_zero` embeddings make them.

Losses weight steps by them, metrics skip padded steps, the graph hands them on through layers that keep
steps apart, and CTC decoding reads each row's valid steps; these helpers are what they share.
"""

from __future__ import annotations

import numpy as np


def mask_covers(mask: np.ndarray | None, shape: tuple[int, ...]) -> bool:
    """Whether a (batch, time) step mask applies to values of this shape (batch, time, ...)."""
    return mask is not None and len(shape) >= 2 and tuple(np.shape(mask)) == tuple(shape[:2])


def step_weights(mask: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype = np.float32) -> np.ndarray | None:
    """Each entry's share of a loss over values of `shape` (batch, time, ...) whose steps the (batch, time) mask
    marks: 1 / (valid steps x entries per step) where the mask holds, 0 on padding; they sum to 1 (all zeros
    when no step is valid). None when there is no mask or it does not cover the first two axes."""
    if not mask_covers(mask, shape):
        return None
    mask = np.asarray(mask, bool)
    per_step = int(np.prod(shape[2:], dtype=np.int64))
    share = 1.0 / max(int(np.count_nonzero(mask)) * per_step, 1)
    return np.where(mask, share, 0.0).astype(dtype).reshape(shape[:2] + (1,) * (len(shape) - 2))


def valid_step_order(mask: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """(per-row step order that puts each row's valid steps first, or None when they already come first; their
    counts) for a (batch, time) mask. Padding at the start, as Keras' pad_sequences puts it by default, is
    moved behind the data; the order within the valid steps is kept."""
    mask = np.asarray(mask, bool)
    steps = mask.sum(axis=1)
    if np.array_equal(mask, np.arange(mask.shape[1]) < steps[:, None]):
        return None, steps
    return np.argsort(~mask, axis=1, kind="stable"), steps


def valid_steps_first(y_pred: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(y_pred with each row's valid steps moved to the front, their counts as the decoders' input_lengths);
    y_pred unchanged and None without a mask."""
    if mask is None:
        return y_pred, None
    order, steps = valid_step_order(np.asarray(mask, bool).reshape(y_pred.shape[:2]))
    return (y_pred if order is None else np.take_along_axis(y_pred, order[:, :, None], axis=1)), steps
