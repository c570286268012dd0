"""A CSV file (or any table of named columns: parquet) read as examples the way a run reads them: feature columns
found by name, missing cells handled by the run's policy, a target of numbers or of class names (mapped to ids)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dlcli.data.batches import counted
from dlcli.data.csv_table import FEATURE_ADVICE, read_csv_table
from dlcli.data.table import Table
from dlcli.data.labels import class_ids, class_list, numbers_or_names
from dlcli.errors import DataError

MISSING_POLICIES = ("error", "drop_rows", "fill_mean", "fill_value")
FILL_POLICIES = ("fill_mean", "fill_value")


@dataclass
class CsvRecipe:
    """How to read a CSV file: from the spec's [data] and from what training learned (the run's schema)."""

    features: Sequence[str] | None = None  # data.features: names or "first:last" ranges; None: all but the target
    target: str | None = None  # the target column; None when predicting
    ignore: str | None = None  # a column never taken as a feature when features are not named (predict: the target)
    weight: str | None = None  # the column of each example's sample weight: never a feature
    text: str | None = None  # the column of raw text, for a text model, instead of numeric features
    missing: str = "error"  # a MISSING_POLICIES entry, or "keep" (missing cells stay NaN: predict decides)
    columns: list[str] | None = None  # feature names learned from the training file; found by name, any order
    classes: list[str] | None = None  # the training data's class names, when its labels were names
    names_allowed: bool = False  # may the target hold class names (a classification loss)?
    loss: str = ""  # the loss, for messages


@dataclass
class CsvExamples:
    """What read_csv_examples got: features or texts, the target, and the file place of each row."""

    x: np.ndarray  # float64 features, NaN where a missing cell awaits its fill; or unicode texts
    y: np.ndarray | None  # float64 numbers, or int64 class ids when the labels are names
    where: Callable[[int], str]  # row -> "FILE, line N" (a CSV file) or "FILE, row N"
    lines: np.ndarray | None  # each row's line in a text file (header = line 1); None: rows from 0
    columns: list[str]  # the feature columns read, in the model's order (the text column for a text model)
    classes: list[str] | None  # the class list the ids index, when the labels are names
    rows_dropped: int = 0
    weights: np.ndarray | None = None  # float64: each row's sample weight, when the recipe names its column


def read_csv_examples(path: Path, recipe: CsvRecipe) -> CsvExamples:
    """Examples from a CSV file with a header row, as `recipe` says; every problem is a DataError naming the line."""
    return read_table_examples(read_csv_table(path), recipe)


def read_table_examples(table: Table, recipe: CsvRecipe) -> CsvExamples:
    """Examples from a table of named columns (a CSV or parquet file), as `recipe` says; every problem is a
    DataError naming the file's line or row."""
    target = table.column(recipe.target) if recipe.target is not None else -1
    weight = table.column(recipe.weight) if recipe.weight is not None else -1
    if recipe.text is not None:
        feature_columns = [table.column(recipe.text)]
    elif recipe.columns is not None:
        feature_columns = table.named_columns(recipe.columns)
    else:
        ignored = table.header.index(recipe.ignore) if recipe.ignore in table.header else -1
        weights = [table.header.index(recipe.weight)] if recipe.weight in table.header else []
        feature_columns = table.feature_columns(recipe.features, target if target >= 0 else ignored, weights)
    names = [table.header[j] for j in feature_columns]
    # predicting ("keep"), a NaN or infinite row is refused or marked later, with every such row named
    x = table.column_cells(feature_columns[0]) if recipe.text is not None else \
        table.numbers(feature_columns, allow_missing=True, advice=FEATURE_ADVICE,
                      allow_infinite=recipe.missing == "keep")
    labels = [column for column in (target, weight) if column >= 0]
    table, x, dropped = _handle_missing(table, x, feature_columns, labels, recipe)
    y, classes = _target(table, target, recipe) if target >= 0 else (None, None)
    weights = table.numbers([weight], allow_missing=False, advice="; fix that cell or drop the row")[:, 0] \
        if weight >= 0 else None
    return CsvExamples(x, y, table.where, table.lines, names, classes, dropped, weights)


def _handle_missing(table: Table, x: np.ndarray, features: list[int], labels: list[int],
                    recipe: CsvRecipe) -> tuple[Table, np.ndarray, int]:
    """Apply the missing-value policy: refuse, or drop rows; fills happen later (fill_missing), once the
    training part, whose means they may need, is known. `labels` (the target, the sample weight) are never
    filled."""
    with np.errstate(invalid="ignore", over="ignore"):
        any_nan = x.dtype.kind == "f" and np.isnan(x.sum())  # one pass: NaN anywhere makes the sum NaN
    x_missing = np.isnan(x) if any_nan else np.zeros((len(x), 1), bool)
    label_missing = table.missing(labels)
    y_missing = label_missing.any(axis=1)
    if not (x_missing.any() or y_missing.any()) or recipe.missing == "keep":
        return table, x, 0
    if recipe.missing == "error":
        if any_nan and recipe.text is None:  # an empty text is a text; only the label can be missing
            table.refuse_missing(np.concatenate([x_missing, label_missing], axis=1), features + labels, labels=labels)
        # no feature is missing (x_missing is then one column of False, standing for none of them)
        table.refuse_missing(label_missing, labels, "a value", labels=labels)
    if recipe.missing == "drop_rows":
        keep = ~(x_missing.any(axis=1) | y_missing)
        if not keep.any():
            raise DataError(f"{table.path}: every one of its {len(table):,} rows has a missing value, so "
                            f"data.missing = \"drop_rows\" leaves nothing; fill them instead (\"fill_mean\" or "
                            f"\"fill_value\") or fix the file")
        return table.take(keep), x[keep], int((~keep).sum())
    if y_missing.any():  # fill_mean, fill_value: a label cannot be made up
        row, k = (int(i) for i in np.argwhere(label_missing)[0])
        what = "target" if labels[k] == table.column(recipe.target or "") else "sample weight"
        rows = counted(int(label_missing[:, k].sum()), "row")
        raise DataError(f"{table.where(row, labels[k])}: the {what} is missing (in {rows}); "
                        f"data.missing = \"{recipe.missing}\" fills feature cells only, since a made-up {what} would "
                        f"teach the model a wrong answer: fix or drop those rows, or use \"drop_rows\"")
    return table, x, 0


def _target(table: Table, column: int, recipe: CsvRecipe) -> tuple[np.ndarray, list[str] | None]:
    """The target column as float64 numbers, or as class ids (int64) with the class list when it holds names."""
    if table.is_numeric(column):  # the fast reader found numbers only
        return table.numbers([column], allow_missing=False, advice="; fix that cell or drop the row")[:, 0], None
    cells = np.char.strip(table.column_cells(column))
    label = f"column {table.header[column]!r}"
    if not numbers_or_names(cells, lambda row: table.where(row), label, recipe.names_allowed, recipe.loss):
        return table.numbers([column], allow_missing=False, advice="; fix that cell or drop the row")[:, 0], None
    classes = recipe.classes if recipe.classes is not None else class_list(cells)
    return class_ids(cells, classes, lambda row: table.where(row), label), classes


def fill_values(x: np.ndarray, names: list[str], policy: str, value: float | None, source: str) -> dict[str, float]:
    """The number each feature column's missing cells get: `value` for "fill_value", else the column's mean
    over the rows of `x` that have one (the training part only, so held-out rows cannot leak into it), summed in
    float64 over the values as given (float32, as the model sees them)."""
    if policy == "fill_value":
        assert value is not None
        return {name: float(value) for name in names}
    present = ~np.isnan(x)
    counts = present.sum(axis=0)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise DataError(f"{source}: column {names[int(empty[0])]!r} has no value in the training part to take a "
                        f"mean of (every cell is missing); give it values, leave it out of data.features, or use "
                        f"data.missing = \"fill_value\"")
    means = np.where(present, x.astype(np.float64), 0.0).sum(axis=0) / counts
    return {name: float(mean) for name, mean in zip(names, means)}


def fill_from_training(missing: dict[str, Any], training: np.ndarray, parts: Sequence[np.ndarray], names: list[str],
                       policy: str, value: float | None, source: str) -> None:
    """Store in `missing` (the schema's record, saved in the checkpoint) each feature column's fill, taken from
    the training part `training` alone, then fill the missing cells of every array of `parts` with it, in place
    and counted. The fill is stored even when no cell is missing here: a later file's gaps must be filled as
    training would have filled them, not with that file's own means."""
    missing["fill"] = fill_values(training, names, policy, value, source)
    for part in parts:
        missing["cells_filled"] = missing.get("cells_filled", 0) + fill_missing(part, names, missing["fill"])


def fill_missing(x: np.ndarray, names: list[str], fill: dict[str, float]) -> int:
    """Fill the NaN cells of feature matrix `x` (columns `names`) in place from `fill`; the number filled."""
    missing = np.isnan(x)
    if not missing.any():
        return 0
    values = np.array([fill[name] for name in names], dtype=x.dtype)
    rows, columns = np.nonzero(missing)
    x[rows, columns] = values[columns]
    return int(rows.size)
