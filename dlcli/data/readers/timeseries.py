"""The time-series reader: windows over the rows of a time-ordered table (.csv or .parquet, read by the reader of
its suffix), cut as [data.timeseries] says with Keras' timeseries_dataset_from_array options, the training,
validation and test ranges taken in time order; see data/windows.py for the window arithmetic."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dlcli import registry
from dlcli.data.batches import counted
from dlcli.data.csv_examples import FILL_POLICIES, fill_from_training, fill_missing, fill_values
from dlcli.data.csv_table import FEATURE_ADVICE
from dlcli.data.readers.reader import Examples, Reader, reader_for
from dlcli.data.readers.request import ReadRequest, single_name
from dlcli.data.readers.table_reader import TableReader, describe_table
from dlcli.data.table import Table
from dlcli.data.windows import WindowShape, Windows, target_rows, window_starts
from dlcli.errors import DataError, SpecError

RANGES = ("train", "validation", "test")  # in time order
# what fixes a missing cell of a time series: dropping its row would close a gap in time, so data.missing =
# "drop_rows" is refused, and a label (target, sample weight) is never made up
FEATURE_FIX = ('fill in those cells, or train with data.missing = "fill_mean" (the training range\'s means) or '
               '"fill_value" ("drop_rows" would close a gap in time)')
LABEL_FIX = ("a time series' target and sample weight are never filled in (data.missing fills feature cells only) "
             "nor dropped (dropping a row would close a gap in time): fill in those cells, or cut the table to the "
             "rows whose value is known (dlcli predict needs no target: it forecasts past them)")


@registry.readers.register("timeseries")
class TimeseriesReader(Reader):
    """Windows over a time-ordered table (.csv or .parquet), cut as [data.timeseries] says."""

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return False  # chosen by the spec's [data.timeseries], never by a file's name

    @classmethod
    def claims(cls, request: ReadRequest) -> bool:
        return getattr(request.data, "timeseries", None) is not None

    def read(self, path: Path, request: ReadRequest) -> Examples:
        """Windows over the whole table (a validation, test or evaluation file), Keras' from its first row;
        reading inputs only (predict), every sequence_stride rows back from the window that ends on its last row,
        the last ones forecasting past its end."""
        return self.read_ranges(path, request, whole=True)["train"]  # type: ignore[return-value]

    def describe(self, path: Path, request: ReadRequest) -> dict[str, Any]:
        """The table the windows are cut from (see TableReader.describe)."""
        return describe_table(_table(path))

    def read_ranges(self, path: Path, request: ReadRequest, whole: bool = False) -> dict[str, Examples | None]:
        """The training, validation and test windows of the training file, from consecutive ranges of its rows
        (the split fractions of [data.timeseries], in time order): no window or target crosses from one range
        into the next. `whole`: one range, the whole table, under "train"."""
        options = request.data.timeseries
        if request.targets is not None and options.target is None:
            raise SpecError(f"data.timeseries.target: name the column of {path.name} that the windows predict, "
                            f"e.g. target = \"T (degC)\"")
        table = _table(path)
        shape = WindowShape(options.sequence_length, options.sampling_rate, options.sequence_stride, options.delay)
        features, names = _features(table, options, request)
        target = weights = None
        if request.targets is not None:
            target = _label_column(table, options.target).astype(np.float32)
        if request.weight_name is not None:  # each window weighs what its target row's weight says
            weights = request.weight_array(_label_column(table, request.weight_name)[:, None],
                                           f"{path}, column {request.weight_name!r}", table.where)[:, 0]
        # the ranges cut from this table (none for a file windowed whole): what a too-short range's fix names
        splits = {} if whole else {key: getattr(options, key) for key in ("validation_split", "test_split")
                                   if getattr(options, key)}
        bounds = _bounds(len(table), splits.get("validation_split", 0.0), splits.get("test_split", 0.0))
        _fill(features, names, request, table, bounds["train"], whole)
        input_name = single_name(request.inputs, "input")
        examples: dict[str, Examples | None] = {}
        # without targets (predict) a window needs only its own rows: the last ones forecast past the table's end
        cut = replace(shape, delay=0)
        for name, (first, last) in bounds.items():
            if first == last:
                examples[name] = None
                continue
            # training, validation, test and eval windows are Keras' (from the range's first row); predict's end
            # on the table's last row, so that its last prediction is the forecast from the newest rows
            starts = first + (window_starts(last - first, shape) if target is not None else
                              window_starts(last - first, cut, to_end=True))
            if not starts.size:
                raise DataError(_too_short(path, name, first, last, shape, splits, target is None))
            inputs = {input_name: Windows(features, starts, shape)}
            if target is None:
                ends = target_rows(starts, cut)
                examples[name] = Examples(inputs, lines=_places(table, ends),
                                          positions={"row": ends, "target_row": ends + shape.delay})
                continue
            rows = target_rows(starts, shape)
            output_name = single_name(request.targets or {}, "output")
            examples[name] = Examples(inputs, {output_name: target[rows]}, lines=_places(table, rows),
                                      weights=None if weights is None else weights[rows])
        return examples


def _table(path: Path) -> Table:
    """The table behind the windows, read by the reader of its suffix (CSV or parquet)."""
    entry = reader_for(path)
    if not issubclass(entry.target, TableReader):
        raise DataError(f"{path}: [data.timeseries] cuts windows from a table of named columns, a .csv or .parquet "
                        f"file (one row a time step, oldest first); this is {entry.target.described()} "
                        f"({entry.name})")
    return entry.target().table(path)


def _features(table: Table, options: Any, request: ReadRequest) -> tuple[np.ndarray, list[str]]:
    """The feature columns (float32, rows x features): by the names training stored, else data.timeseries.features
    (names or "first:last" ranges), else every column; the target may be among them (its past is an input).
    Reading inputs only (predict), NaN and infinity are let through, as every reader lets them through: predict
    refuses or marks the windows that read them."""
    names = request.schema.get("columns")
    if names is not None:
        columns = table.named_columns(names)
    else:
        columns = table.feature_columns(options.features, -1)
    predicting = request.targets is None
    values = table.numbers(columns, allow_missing=True, allow_infinite=predicting,
                           advice=FEATURE_ADVICE + " (data.timeseries.features names them)")
    if request.data.missing == "error" and not predicting:
        _refuse_gaps(table, values, columns, FEATURE_FIX)
    names = [table.header[j] for j in columns]
    request.schema.setdefault("columns", names)
    with np.errstate(over="ignore"):  # predicting, a number too large for float32 becomes infinity, marked so
        return np.ascontiguousarray(values, dtype=np.float32), names


def _label_column(table: Table, name: str) -> np.ndarray:
    """The target or sample weight column `name` as float64 numbers; a missing cell refused with the fixes that
    work for a time series."""
    column = table.column(name)
    values = table.numbers([column], allow_missing=True, advice="; fix that cell")
    _refuse_gaps(table, values, [column], LABEL_FIX)
    return values[:, 0]


def _refuse_gaps(table: Table, values: np.ndarray, columns: list[int], fixes: str) -> None:
    """A DataError for the first missing cell (NaN) of these columns' values, ending with `fixes`."""
    with np.errstate(invalid="ignore"):
        if np.isnan(values.sum()):
            table.refuse_missing(np.isnan(values), columns, fixes=fixes)


def _fill(features: np.ndarray, names: list[str], request: ReadRequest, table: Table, train: tuple[int, int],
          whole: bool) -> None:
    """Missing cells filled in place as data.missing says. The training file's fills come from its training
    range's rows alone (fill_mean: their means), so no later value leaks into them, and are stored, gap or no
    gap; a later file (`whole`: validation, eval, predict) is filled with the stored ones."""
    policy = request.data.missing
    missing = request.schema.setdefault("missing", {"policy": policy, "rows_dropped": 0, "cells_filled": 0})
    if policy not in FILL_POLICIES:
        return
    if not whole:
        first, last = train
        fill_from_training(missing, features[first:last], [features], names, policy, request.data.fill_value,
                           f"{table.path}, the training rows")
        return
    if "fill" not in missing:
        if policy == "fill_mean":
            _refuse_unstored_means(features, names, table)
            return
        missing["fill"] = fill_values(features, names, policy, request.data.fill_value, str(table.path))
    missing["cells_filled"] = missing.get("cells_filled", 0) + fill_missing(features, names, missing["fill"])


def _refuse_unstored_means(features: np.ndarray, names: list[str], table: Table) -> None:
    """A run trained with fill_mean by a dlcli that stored no means when its training table had no gap: a gap in
    this file is refused. Its own means would differ from the training rows', and the training file may have
    changed or moved since, so recomputing them from it could not be trusted either."""
    with np.errstate(invalid="ignore"):
        if not np.isnan(features.sum()):
            return
    row, j = (int(i) for i in np.argwhere(np.isnan(features))[0])
    raise DataError(f"{table.where(row, table.column(names[j]))}: a missing value, and the run was trained with "
                    f"data.missing = \"fill_mean\" by an older dlcli, which stored no training means when the "
                    f"training table had no missing cell; this file's own means would fill it differently from "
                    f"training: fill in its missing cells (with the training rows' means, say), or train the run "
                    f"again")


def _bounds(rows: int, validation: float, test: float) -> dict[str, tuple[int, int]]:
    """[first, last) rows of each range, in time order: training int((1 - validation - test) * rows) rows (the
    book's int(0.5 * n)), validation int(validation * rows), test the rest. The fractions are taken as written
    (0.7 is 7/10), so float rounding never loses a row: 0.7 * 90 is 62.99999999999999 in floats."""
    exact_validation, exact_test = Fraction(str(validation)), Fraction(str(test))
    train_rows = math.floor((1 - exact_validation - exact_test) * rows)
    validation_rows = math.floor(exact_validation * rows) if test else rows - train_rows
    middle = train_rows + validation_rows
    return {"train": (0, train_rows), "validation": (train_rows, middle), "test": (middle, rows)}


def _too_short(path: Path, name: str, first: int, last: int, shape: WindowShape, splits: dict[str, float],
               forecast: bool) -> str:
    """The message for a range that holds no whole window (and target); `splits`: the nonzero split fractions
    that cut the table into ranges (none: the range is the whole table, and only a longer one helps)."""
    window = (shape.sequence_length - 1) * shape.sampling_rate + 1
    needed, what = (window, "one window spans") if forecast else (shape.span, "one window and its target span")
    where = f"{path}: the {name} range (rows {first:,} to {last - 1:,}, counting from 0)" if splits else f"{path}"
    if not splits:
        fix = "a longer table"
    elif name == "train":
        fix = ("a smaller " if len(splits) == 1 else "smaller ") + " and ".join(f"data.timeseries.{key}"
                                                                                  for key in splits)
    else:
        fix = f"a larger data.timeseries.{name}_split"
    return (f"{where} holds {counted(last - first, 'row')}, fewer than the {needed:,} {what} (sequence_length "
            f"{shape.sequence_length}, sampling_rate {shape.sampling_rate}"
            f"{'' if forecast else f', delay {shape.delay}'}); use {fix}, or shorter windows")


def _places(table: Table, rows: np.ndarray) -> np.ndarray | None:
    """Each window's place in the file, by its target row (or last row): that row's line in a text file."""
    return None if table.lines is None else table.lines[rows]
