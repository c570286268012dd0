"""Seeded shuffles, validation splits, mini-batches, one-hot labels and checks on arrays of examples."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from dlcli.errors import DataError

SHOWN_ROWS = 5  # how many offending rows a message lists before it just counts them


def is_lazy(array: object) -> bool:
    """Whether `array` is a lazy array-like that gathers examples on demand (time-series windows) rather than a
    NumPy array: its reader checked the values it is made of, so checks that scan a whole array skip it."""
    return not isinstance(array, np.ndarray)


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


def check_examples(label: str, array: np.ndarray) -> None:
    """DataError unless `array` holds at least one example along its first axis."""
    if np.ndim(array) == 0:
        raise DataError(f"{label} is a scalar: expected one entry per example along its first axis")
    if len(array) == 0:
        raise DataError(f"{label} holds no examples (zero rows, shape {list(array.shape)}): expected at least one; "
                        f"check that the file was written completely")


def nonfinite_rows(array: np.ndarray) -> np.ndarray:
    """Which examples (first axis) hold NaN, infinity, or a number too large for float32 (the model's dtype); a lazy
    array answers by its own `nonfinite_rows()` when it has one (time-series windows), else has none."""
    if is_lazy(array):
        finder = getattr(array, "nonfinite_rows", None)
        return finder() if finder is not None else np.zeros(len(array), bool)
    if array.dtype.kind != "f" or array.size == 0:
        return np.zeros(len(array), bool)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(array.sum(dtype=np.float32)):
            return np.zeros(len(array), bool)  # a finite float32 sum proves every entry finite in float32
        bad = ~np.isfinite(array.astype(np.float32))
    return bad.reshape(len(array), -1).any(axis=1)


def counted(count: int, noun: str) -> str:
    """ "1 row", "3 rows": a count with its noun."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def listed_rows(names: Sequence[str], noun: str = "row") -> str:
    """ "rows 3, 8, 9" ("row 3" for one), the first SHOWN_ROWS of them, then how many more."""
    more = f" and {len(names) - SHOWN_ROWS:,} more" if len(names) > SHOWN_ROWS else ""
    return f"{noun}{'' if len(names) == 1 else 's'} " + ", ".join(names[:SHOWN_ROWS]) + more


def refuse_nonfinite(array: np.ndarray, where: Callable[[int], str], fix: str) -> None:
    """DataError naming the first example (by `where(row)`, its place in the file) that holds NaN, infinity or a
    number float32 cannot hold, and how many do; `fix` ends the message."""
    rows = np.flatnonzero(nonfinite_rows(array))
    if not rows.size:
        return
    values = array[rows[0]].reshape(-1)
    with np.errstate(over="ignore"):
        value = values[~np.isfinite(values.astype(np.float32))][0]
    found = str(value) if not np.isfinite(value) else f"{value:g}, too large for float32"
    raise DataError(f"{where(int(rows[0]))} holds {found} (NaN or infinity in {rows.size:,} of "
                    f"{counted(len(array), 'row')}: {listed_rows([str(int(i)) for i in rows])}, counting from 0); "
                    f"{fix}")


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


def split_validation(arrays: dict[str, np.ndarray], fraction: float, rng: np.random.Generator,
                     source: str = "the data") -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Shuffle the examples with `rng`, then hold out the last `fraction` of them for validation; `source` names
    where the examples came from in messages."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must lie in [0, 1), got {fraction}")
    n = check_lengths(arrays)
    if fraction == 0.0:
        return dict(arrays), {name: take_rows(array, np.arange(0)) for name, array in arrays.items()}
    # floor, as Keras' validation_split computes its split point
    split_at = int(n * (1.0 - fraction))
    if n == 1:
        raise DataError(f"{source} holds a single example, which validation_split = {fraction} cannot split into "
                        f"a training and a validation part; add examples, or give a separate validation file")
    if split_at in (0, n):
        part, advice = ("training", "a smaller fraction") if split_at == 0 else ("validation", "a larger fraction")
        raise DataError(f"{source}: validation_split = {fraction} of {n:,} examples leaves no example for {part}; "
                        f"use {advice}, a larger dataset, or a separate validation file")
    order = rng.permutation(n)
    train, validation = order[:split_at], order[split_at:]
    return ({name: take_rows(array, train) for name, array in arrays.items()},
            {name: take_rows(array, validation) for name, array in arrays.items()})


def take_rows(array: Any, index: np.ndarray) -> Any:
    """The rows of `array` at `index`: a lazy array's select() keeps them lazy (nothing is read), any other array
    is indexed (a NumPy array: a copy of those rows)."""
    return array.select(index) if hasattr(array, "select") else array[index]


def split_folds(arrays: dict[str, np.ndarray], folds: int, fold: int, rng: np.random.Generator,
                source: str = "the data") -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Fold `fold` (from 1) of `folds` held out for validation, the others kept for training: the examples are
    shuffled with `rng` (the same order for every fold of a seed), then cut into `folds` consecutive parts whose
    sizes differ by at most one, so that every example validates exactly once."""
    n = check_lengths(arrays)
    if n < folds:
        raise DataError(f"{source} holds {counted(n, 'example')}, fewer than the {folds} folds that data.folds "
                        f"asks for; use fewer folds or more data")
    parts = np.array_split(rng.permutation(n), folds)
    held = parts[fold - 1]
    kept = np.concatenate(parts[:fold - 1] + parts[fold:])
    return ({name: take_rows(array, kept) for name, array in arrays.items()},
            {name: take_rows(array, held) for name, array in arrays.items()})
