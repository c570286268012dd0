"""Seeded shuffles, validation splits, mini-batches, one-hot labels and checks on arrays of examples."""

from __future__ import annotations

import numpy as np

from dlcli.errors import DataError


def check_lengths(arrays: dict[str, np.ndarray]) -> int:
    """The number of examples shared by every array (its first dimension); DataError if they differ."""
    lengths = {}
    for name, array in arrays.items():
        if np.ndim(array) == 0:
            raise DataError(f"array {name!r} is a scalar: expected one entry per example along its first axis")
        lengths[name] = len(array)
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {n:,}" for name, n in lengths.items())
        raise DataError(f"arrays have different numbers of examples (first dimension): {listed}; every input "
                        f"and target needs exactly one entry per example")
    return next(iter(lengths.values()), 0)


def check_finite(name: str, array: np.ndarray) -> None:
    """DataError if a float array holds NaN or infinity, naming the first bad index."""
    if not np.issubdtype(array.dtype, np.floating):
        return
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(array.sum()):
            return  # a finite sum proves every entry finite; only a non-finite one pays for the full scan
    bad = ~np.isfinite(array)
    if not bad.any():
        return  # the sum overflowed, the entries are fine
    first = np.unravel_index(int(np.argmax(bad)), array.shape)
    index = tuple(int(i) for i in first) if array.ndim > 1 else int(first[0])
    raise DataError(f"array {name!r} has {int(bad.sum()):,} non-finite values (NaN or infinity); the first is "
                    f"{array[first]} at index {index}; remove or fill them before training")


def check_labels(name: str, labels: np.ndarray, num_classes: int) -> None:
    """DataError unless every label is an integer in [0, num_classes), naming the first one that is not."""
    labels = np.asarray(labels)
    if labels.dtype.kind == "f":
        fractional = labels != np.floor(labels)  # NaN compares unequal, so it counts as fractional too
        if fractional.any():
            i = int(np.argmax(fractional.reshape(-1)))
            raise DataError(f"labels {name!r} must be integer class indices; found {labels.reshape(-1)[i]} at "
                            f"position {i}; for one-hot or real-valued targets use a matching loss")
    elif labels.dtype.kind not in "iub":
        raise DataError(f"labels {name!r} must be integer class indices; found dtype {labels.dtype}")
    flat = labels.reshape(-1)
    out = (flat < 0) | (flat >= num_classes)
    if out.any():
        i = int(np.argmax(out))
        value = flat[i].item()
        raise DataError(f"labels {name!r} must lie in [0, {num_classes}) for {num_classes} classes; found "
                        f"{value:g} at position {i} ({int(out.sum()):,} labels out of range); check the number "
                        f"of classes (the width of the output layer) or the label column")


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer labels as float32 one-hot rows: shape labels.shape + (num_classes,)."""
    check_labels("labels", labels, num_classes)
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels).astype(np.int64)]


def shuffled_order(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of range(n), for one epoch's order of examples."""
    return rng.permutation(n)


def batch_slices(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """`order` cut into consecutive index arrays of `batch_size` (the last may be smaller)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def split_validation(arrays: dict[str, np.ndarray], fraction: float,
                     rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Shuffle the examples with `rng`, then hold out the last `fraction` of them for validation."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must lie in [0, 1), got {fraction}")
    n = check_lengths(arrays)
    if fraction == 0.0:
        return dict(arrays), {name: array[:0] for name, array in arrays.items()}
    # floor, as Keras' validation_split computes its split point
    split_at = int(n * (1.0 - fraction))
    if split_at in (0, n):
        raise DataError(f"validation_split = {fraction} of {n:,} examples leaves "
                        f"{'no example for validation' if split_at == n else 'no example for training'}; "
                        f"use a larger fraction, a larger dataset, or a separate validation file")
    order = rng.permutation(n)
    train, validation = order[:split_at], order[split_at:]
    return ({name: array[train] for name, array in arrays.items()},
            {name: array[validation] for name, array in arrays.items()})
