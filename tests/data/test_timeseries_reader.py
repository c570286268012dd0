"""The time-series reader: training, validation and test windows from consecutive ranges of rows, none crossing
into the next range; windows over a whole file for eval and predict (the last ones forecasting); columns by name;
missing cells; and the [data.timeseries] keys checked when the spec loads."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from dlcli.data import InputSlot, ReadRequest, TargetSlot, read_examples
from dlcli.data.readers.timeseries import TimeseriesReader
from dlcli.errors import DataError, SpecError
from dlcli.spec.models import DataSpec


def data_keys(path: Path, **series: object) -> DataSpec:
    options = {"target": "y", "sequence_length": 5, "delay": 1, **series}
    return DataSpec.model_validate({"train": str(path), "timeseries": options})


def request(data: DataSpec, targets: bool = True, schema: dict | None = None) -> ReadRequest:
    slots = {"out": TargetSlot("mean_squared_error", 1)} if targets else None
    return ReadRequest({"x": InputSlot("float32")}, slots, data, schema if schema is not None else {})


def write_table(path: Path, rows: int = 100) -> Path:
    """Columns t (the row number), y (ten times it) and a text column, which features must leave out."""
    lines = ["when,t,y"] + [f"day {i},{i},{10 * i}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ranges_follow_in_time_order_and_no_window_or_target_crosses_into_the_next(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv")
    data = data_keys(path, features=["t"], validation_split=0.25, test_split=0.25)
    ranges = TimeseriesReader().read_ranges(path, request(data))
    expected = {"train": (0, 50), "validation": (50, 75), "test": (75, 100)}
    for name, (first, last) in expected.items():
        windows, targets = ranges[name].inputs["x"], ranges[name].targets["out"]
        rows = np.asarray(windows)[:, :, 0]  # column t: each step's row
        assert rows.min() == first and rows.max() < last
        # the target is y of the row after each window's last row, and lies in the range too
        np.testing.assert_array_equal(targets, 10 * (rows[:, -1] + 1))
        assert targets.max() < 10 * last and len(windows) == (last - first) - 5
        assert ranges[name].lines.tolist() == (rows[:, -1] + 3).tolist()  # the target row's line (header = 1)


def test_the_books_split_rows_for_jena(tmp_path: Path) -> None:
    from dlcli.data.readers.timeseries import _bounds

    # the book: num_train = int(0.5 * n), num_val = int(0.25 * n), the rest for test (n = 420451 rows)
    assert _bounds(420451, 0.25, 0.25) == {"train": (0, 210225), "validation": (210225, 315337),
                                           "test": (315337, 420451)}
    assert _bounds(100, 0.2, 0.0) == {"train": (0, 80), "validation": (80, 100), "test": (100, 100)}


def test_split_rows_are_the_fractions_as_written_without_float_rounding_losing_a_row() -> None:
    from dlcli.data.readers.timeseries import _bounds

    # 0.7 * 90 is 62.99999999999999 in floats, and 1 - 0.1 - 0.2 is 0.7000000000000001 but 1 - 0.2 - 0.1 is 0.7
    assert _bounds(90, 0.3, 0.0) == {"train": (0, 63), "validation": (63, 90), "test": (90, 90)}
    assert _bounds(90, 0.1, 0.2) == {"train": (0, 63), "validation": (63, 72), "test": (72, 90)}
    assert _bounds(90, 0.2, 0.1) == {"train": (0, 63), "validation": (63, 81), "test": (81, 90)}
    # 0.29 * 100 is 28.999999999999996: the validation range must still get its 29 rows
    assert _bounds(100, 0.29, 0.1) == {"train": (0, 61), "validation": (61, 90), "test": (90, 100)}
    assert _bounds(20, 0.05, 0.05) == {"train": (0, 18), "validation": (18, 19), "test": (19, 20)}


def test_predict_windows_the_whole_file_up_to_its_last_row(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv", rows=30)
    data = data_keys(path, features=["t"], sampling_rate=2, validation_split=0.5)
    examples = read_examples(path, request(data, targets=False, schema={"columns": ["t"]}))
    rows = np.asarray(examples.inputs["x"])[:, :, 0]
    # 5 steps 2 rows apart span 9 rows: windows start at rows 0 .. 21, the last one ends on the last row
    assert rows[0].tolist() == [0, 2, 4, 6, 8] and rows[-1].tolist() == [21, 23, 25, 27, 29] and len(rows) == 22
    evaluated = read_examples(path, request(data, schema={"columns": ["t"]}))
    assert len(evaluated.inputs["x"]) == 21  # with targets, the last window needs the row after it


def test_predict_windows_end_on_the_last_row_whatever_the_stride_and_eval_keeps_keras_starts(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv", rows=40)
    data = data_keys(path, features=["t"], sequence_length=3, sampling_rate=2, sequence_stride=3, delay=2)
    examples = read_examples(path, request(data, targets=False, schema={"columns": ["t"]}))
    rows = np.asarray(examples.inputs["x"])[:, :, 0]
    # a window spans 5 rows, so 36 could start; every 3rd, counted back from the one ending on row 39 (rows 35,
    # 37, 39): starts 2, 5, ..., 35, and rows 0 and 1 are the ones left out, not the newest 38 and 39
    assert rows[-1].tolist() == [35, 37, 39] and rows[:, 0].tolist() == list(range(2, 36, 3))
    # with targets (eval --data) the windows are Keras' (from row 0), as the test range of the same rows would be
    evaluated = read_examples(path, request(data, schema={"columns": ["t"]}))
    evaluated_rows = np.asarray(evaluated.inputs["x"])[:, :, 0]
    assert evaluated_rows[:, 0].tolist() == list(range(0, 34, 3))
    assert evaluated.targets["out"].tolist() == [10.0 * (start + 6) for start in range(0, 34, 3)]


def test_later_files_are_read_by_the_training_columns_names(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"y": [10.0 * i for i in range(20)], "other": [0.0] * 20, "t": list(range(20))}), path)
    data = data_keys(path, features=["t"])
    examples = read_examples(path, request(data, schema={"columns": ["t"]}))
    assert np.asarray(examples.inputs["x"])[0, :, 0].tolist() == [0, 1, 2, 3, 4]
    assert examples.lines is None  # a parquet table has rows, not lines
    with pytest.raises(DataError, match=r"t.parquet has no column 'T'"):
        read_examples(path, request(data, schema={"columns": ["T"]}))


def test_problems_name_the_range_the_line_and_the_key(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv", rows=40)
    short = data_keys(path, features=["t"], sequence_length=8, validation_split=0.2)
    with pytest.raises(DataError, match=r"t.csv: the validation range \(rows 32 to 39, counting from 0\) holds 8 "
                                        r"rows, fewer than the 9 one window and its target span \(sequence_length 8, "
                                        r"sampling_rate 1, delay 1\); use a larger data.timeseries.validation_split"):
        TimeseriesReader().read_ranges(path, request(short))
    with pytest.raises(DataError, match=r"t.csv, line 2, column 'when': expected a number, found 'day 0'.*"
                                        r"data.timeseries.features names them"):
        TimeseriesReader().read_ranges(path, request(data_keys(path)))  # every column: the text one too
    no_target = DataSpec.model_validate({"train": str(path), "timeseries": {"sequence_length": 3}})
    with pytest.raises(SpecError, match=r"data.timeseries.target: name the column of t.csv"):
        TimeseriesReader().read_ranges(path, request(no_target))
    (tmp_path / "t.npz").write_bytes(b"")
    with pytest.raises(DataError, match=r"t.npz: \[data.timeseries\] cuts windows from a table of named columns"):
        TimeseriesReader().read_ranges(tmp_path / "t.npz", request(data_keys(tmp_path / "t.npz")))


def test_a_table_too_short_for_one_window_names_only_the_fixes_that_apply(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv", rows=5)
    # no validation or test range: the training range is the whole table, and only a longer one (or shorter
    # windows) helps
    with pytest.raises(DataError, match=r"t.csv holds 5 rows, fewer than the 6 one window and its target span "
                                        r"\(sequence_length 5, sampling_rate 1, delay 1\); use a longer table, or "
                                        r"shorter windows$"):
        TimeseriesReader().read_ranges(path, request(data_keys(path, features=["t"])))
    longer = write_table(tmp_path / "u.csv", rows=10)
    with pytest.raises(DataError, match=r"the train range \(rows 0 to 4, counting from 0\) holds 5 rows, .*; use a "
                                        r"smaller data.timeseries.test_split, or shorter windows$"):
        TimeseriesReader().read_ranges(longer, request(data_keys(longer, features=["t"], test_split=0.5)))


def test_missing_cells_are_filled_from_the_training_range_alone(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    values = [str(i) for i in range(40)]
    values[3], values[35] = "", "NA"  # one gap in the training range, one in the test range
    path.write_text("t,y\n" + "".join(f"{v},{i}\n" for i, v in enumerate(values)))
    with pytest.raises(DataError, match=r"t.csv, line 5, column 't': expected a number, found an empty cell"):
        TimeseriesReader().read_ranges(path, request(data_keys(path, features=["t"], test_split=0.5)))
    data = DataSpec.model_validate({"train": str(path), "missing": "fill_mean", "timeseries": {
        "features": ["t"], "target": "y", "sequence_length": 5, "test_split": 0.5}})
    schema: dict = {}
    ranges = TimeseriesReader().read_ranges(path, request(data, schema=schema))
    training_mean = (sum(range(20)) - 3) / 19  # the 19 present values of the first 20 rows; none of the test's
    assert schema["missing"]["fill"] == {"t": pytest.approx(training_mean)} and schema["missing"]["cells_filled"] == 2
    assert np.asarray(ranges["train"].inputs["x"])[0, 3, 0] == pytest.approx(training_mean, rel=1e-6)


def test_a_missing_cell_is_refused_with_the_fixes_that_work_for_a_time_series(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("t,y,w,z\n" + "".join(f"{'' if i == 3 else i},{'' if i == 8 else 10 * i},{1 if i != 9 else ''},"
                                           f"{i}\n" for i in range(40)))
    # a target is never filled and rows are never dropped in a time series: only the file can be fixed (or cut)
    target_fix = (r"a time series' target and sample weight are never filled in \(data.missing fills feature cells "
                  r"only\) nor dropped \(dropping a row would close a gap in time\): fill in those cells, or cut "
                  r"the table to the rows whose value is known \(dlcli predict needs no target: it forecasts past "
                  r"them\)$")
    for fill in ({"missing": "fill_mean"}, {"missing": "fill_value", "fill_value": 0.0}):
        data = DataSpec.model_validate({"train": str(path), **fill, "timeseries": {
            "features": ["t"], "target": "y", "sequence_length": 5}})
        with pytest.raises(DataError, match=r"t.csv, line 10, column 'y': expected a number, found an empty cell, a "
                                            r"missing value \(1 missing cell in 1 row\); " + target_fix):
            TimeseriesReader().read_ranges(path, request(data))
    weighted = DataSpec.model_validate({"train": str(path), "missing": "fill_mean", "sample_weight": "w",
                                        "timeseries": {"features": ["z"], "target": "z", "sequence_length": 5}})
    with pytest.raises(DataError, match=r"t.csv, line 11, column 'w': expected a number, .*; " + target_fix):
        TimeseriesReader().read_ranges(path, request(weighted))
    # a feature cell: the fills work, drop_rows is refused for a time series, so it is not offered
    data = DataSpec.model_validate({"train": str(path), "timeseries": {"features": ["t"], "target": "z",
                                                                      "sequence_length": 5}})
    with pytest.raises(DataError, match=r"t.csv, line 5, column 't': expected a number, found an empty cell, a "
                                        r"missing value \(1 missing cell in 1 row\); fill in those cells, or train "
                                        r"with data.missing = \"fill_mean\" \(the training range's means\) or "
                                        r"\"fill_value\" \(\"drop_rows\" would close a gap in time\)$"):
        TimeseriesReader().read_ranges(path, request(data))


@pytest.mark.parametrize(("keys", "message"), [
    ({"validation_split": 0.2}, "give timeseries.validation_split instead"),
    ({"features": ["t"]}, r"with \[data.timeseries\], give features in it"),
    ({"missing": "drop_rows"}, "would close the gaps in time"),
    ({"validation": "v.csv", "timeseries": {"sequence_length": 3, "validation_split": 0.2}},
     'give validation = "PATH" or timeseries.validation_split, not both'),
    ({"timeseries": {"sequence_length": 3, "validation_split": 0.5, "test_split": 0.5}}, "leaves no rows for "
                                                                                         "training"),
])
def test_keys_that_would_shuffle_or_name_columns_elsewhere_are_refused(keys: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DataSpec.model_validate({"train": "t.csv", "timeseries": {"sequence_length": 3}, **keys})


def test_fill_mean_is_stored_from_the_training_rows_even_without_a_gap_and_fills_later_files(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv", rows=40)  # no missing cell: t = row
    data = DataSpec.model_validate({"train": str(path), "missing": "fill_mean", "timeseries": {
        "features": ["t"], "target": "y", "sequence_length": 5, "test_split": 0.5}})
    schema: dict = {}
    TimeseriesReader().read_ranges(path, request(data, schema=schema))
    assert schema["missing"]["fill"] == {"t": pytest.approx(9.5)}  # rows 0..19, the training range
    later = tmp_path / "later.csv"  # a predict or eval file with a gap: filled with 9.5, not its own mean (5.75)
    later.write_text("t,y\n" + "".join(f"{'' if i == 3 else i},{10 * i}\n" for i in range(12)))
    for targets in (False, True):
        examples = read_examples(later, request(data, targets=targets, schema=copy.deepcopy(schema)))
        assert np.asarray(examples.inputs["x"])[0, 3, 0] == pytest.approx(9.5)


def test_a_run_that_stored_no_mean_refuses_a_gap_rather_than_take_the_files_own_mean(tmp_path: Path) -> None:
    later = tmp_path / "later.csv"
    later.write_text("t,y\n" + "".join(f"{'' if i == 3 else i},{10 * i}\n" for i in range(12)))
    data = DataSpec.model_validate({"train": "train.csv", "missing": "fill_mean", "timeseries": {
        "features": ["t"], "target": "y", "sequence_length": 5, "test_split": 0.5}})
    # what an older dlcli stored when the training table had no gap: the policy, but no fill
    old = {"columns": ["t"], "missing": {"policy": "fill_mean", "rows_dropped": 0, "cells_filled": 0}}
    for targets in (False, True):
        with pytest.raises(DataError, match=r"later.csv, line 5, column 't': a missing value, and the run was "
                                            r"trained .* stored no training means"):
            read_examples(later, request(data, targets=targets, schema=copy.deepcopy(old)))
    # fill_value needs no stored statistic: the spec's value is the fill
    by_value = DataSpec.model_validate({**data.model_dump(exclude_none=True), "missing": "fill_value",
                                        "fill_value": -1.0})
    examples = read_examples(later, request(by_value, targets=False, schema=copy.deepcopy(old)))
    assert np.asarray(examples.inputs["x"])[0, 3, 0] == -1.0
