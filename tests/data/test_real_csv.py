"""Real-world files at the data layer: CSV lines and missing cells, class names, dtype kinds, zero rows, OS errors on
data paths, and the validation-split messages."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dlcli.data import (CsvRecipe, check_examples, check_input_dtype, check_target_dtype, existing_file,
                        fill_missing, fill_values, nonfinite_rows, read_csv_examples, read_npz, refuse_nonfinite,
                        split_validation)
from dlcli.data.csv_table import MISSING_CELLS, read_csv_table
from dlcli.data.labels import class_ids, class_list
from dlcli.errors import DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_rows_know_their_line_through_blank_lines_and_quoted_line_breaks(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", 'a,b,label\n1,2,0\n\n"3\n",4,1\n5,oops,1\n')
    table = read_csv_table(path)
    assert table.lines.tolist() == [2, 4, 6]  # line 3 is blank; the quoted cell spans lines 4 and 5
    with pytest.raises(DataError, match=r"t.csv, line 6, column 'b': expected a number, found 'oops'"):
        table.numbers([0, 1], allow_missing=True)


@pytest.mark.parametrize("cell", ["", "NA", "N/A", "nan", "NaN", "null", "NULL", "None", " NA ", "#N/A", "<NA>"])
def test_missing_cells_read_as_nan_and_policy_error_names_line_and_column(tmp_path: Path, cell: str) -> None:
    path = write(tmp_path / "t.csv", f"a,b,label\n1,2,0\n3,{cell},1\n")
    table = read_csv_table(path)
    values = table.numbers([0, 1], allow_missing=True)
    assert values[0].tolist() == [1.0, 2.0] and values[1, 0] == 3.0 and np.isnan(values[1, 1])
    with pytest.raises(DataError, match=r"t.csv, line 3, column 'b': expected a number, found .*a missing value "
                                        r"\(1 missing cell in 1 row\).*data.missing = \"drop_rows\""):
        read_csv_examples(path, CsvRecipe(target="label"))


@pytest.mark.parametrize("labels", [("cat", "dog"), ("0", "1")])
def test_a_missing_label_names_the_label_column_not_a_feature(tmp_path: Path, labels: tuple[str, str]) -> None:
    # no feature cell missing: the label's place in the mask pointed at the second column ('b', holding 5)
    path = write(tmp_path / "t.csv", f"a,b,c,label\n1,2,3,{labels[0]}\n4,5,6,\n7,8,9,{labels[1]}\n")
    with pytest.raises(DataError, match=r"t.csv, line 3, column 'label': expected a value, found an empty cell, a "
                                        r"missing value \(1 missing cell in 1 row\); fix or drop those rows, or set "
                                        r"data.missing = \"drop_rows\" \(a label is never filled in\)$"):
        read_csv_examples(path, CsvRecipe(target="label"))  # fill_mean, suggested before, refuses a label


def test_a_csv_that_is_not_utf8_names_the_line_and_byte(tmp_path: Path) -> None:
    # a spreadsheet's Latin-1 export: "the line of every problem" (docs/spec.md), and the fix, not "corrupt"
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b,label\n1,2,cat\n4,5,caf\xe9\n7,8,dog\n")
    with pytest.raises(DataError, match=r"t.csv, line 3: byte 0xe9 is not UTF-8 \(invalid continuation byte\); "
                                        r"save the file as UTF-8"):
        read_csv_examples(path, CsvRecipe(target="label"))
    path.write_bytes(b"a,label\n1,0\n\x00\x01\x02\xff\xfe\n")
    with pytest.raises(DataError, match=r"t.csv, line 3: not text \(NUL bytes.*it looks binary"):
        read_csv_examples(path, CsvRecipe(target="label"))


def test_the_missing_set_is_pandas_default_na_values() -> None:
    assert {"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "n/a", "#N/A", "<NA>", "-NaN"} <= set(MISSING_CELLS)
    assert "0" not in MISSING_CELLS and "?" not in MISSING_CELLS and "none" not in MISSING_CELLS


def test_infinite_and_float32_overflowing_cells_are_refused_with_their_line(tmp_path: Path) -> None:
    for cell, found in (("inf", "'inf' is infinite"), ("-Infinity", "'-Infinity' is infinite"),
                        ("1e300", "'1e300' is too large for float32")):
        path = write(tmp_path / "t.csv", f"a,label\n1,0\n{cell},1\n")
        with pytest.raises(DataError, match=rf"t.csv, line 3, column 'a': {found}"):
            read_csv_examples(path, CsvRecipe(target="label"))


def test_unreadable_csv_syntax_is_a_data_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,label\n1,0\n" + b"9" * 200_000 + b",1\n")  # longer than the csv module's field limit
    with pytest.raises(DataError, match=r"t.csv, line 3: not readable as CSV"):
        read_csv_table(path)


def test_drop_rows_drops_rows_with_a_missing_feature_or_target_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "a,b,label\n1,2,0\n,4,1\n5,6,\n7,8,1\n9,nan,0\n")
    read = read_csv_examples(path, CsvRecipe(target="label", missing="drop_rows"))
    assert read.rows_dropped == 3 and read.x.tolist() == [[1, 2], [7, 8]] and read.y.tolist() == [0, 1]
    assert read.lines.tolist() == [2, 5] and read.where(1) == f"{path}, line 5"
    every = write(tmp_path / "all.csv", "a,label\n,0\nNA,1\n")
    with pytest.raises(DataError, match="every one of its 2 rows has a missing value"):
        read_csv_examples(every, CsvRecipe(target="label", missing="drop_rows"))


def test_fill_policies_leave_features_for_filling_but_never_make_up_a_label(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "a,b,label\n1,2,0\n,4,1\n5,6,1\n")
    read = read_csv_examples(path, CsvRecipe(target="label", missing="fill_mean"))
    assert np.isnan(read.x[1, 0]) and read.rows_dropped == 0
    fill = fill_values(read.x, read.columns, "fill_mean", None, "t.csv")
    assert fill == {"a": 3.0, "b": 4.0}  # (1 + 5) / 2 and (2 + 4 + 6) / 3
    assert fill_missing(read.x, read.columns, fill) == 1 and read.x[1, 0] == 3.0
    assert fill_values(read.x, read.columns, "fill_value", -1.5, "t.csv") == {"a": -1.5, "b": -1.5}
    write(path, "a,label\n1,0\n2,\n")
    with pytest.raises(DataError, match=r"line 3, column 'label': the target is missing.*fills feature cells only"):
        read_csv_examples(path, CsvRecipe(target="label", missing="fill_value"))
    with pytest.raises(DataError, match="column 'b' has no value in the training part"):
        fill_values(np.array([[1.0, np.nan], [2.0, np.nan]]), ["a", "b"], "fill_mean", None, "t.csv")


def test_stored_columns_are_found_by_name_in_any_order_and_extra_columns_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "z,c,label,a,b\n9,3,0,1,2\n9,6,1,4,5\n")
    read = read_csv_examples(path, CsvRecipe(columns=["a", "b", "c"]))
    assert read.x.tolist() == [[1, 2, 3], [4, 5, 6]] and read.y is None
    write(path, "c,a\n3,1\n")
    with pytest.raises(DataError, match="has no column 'b'; the model was trained on the columns a, b, c"):
        read_csv_examples(path, CsvRecipe(columns=["a", "b", "c"]))


def test_without_stored_columns_predict_takes_every_column_but_the_training_target(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "a,label,b\n1,0,2\n")
    assert read_csv_examples(path, CsvRecipe(ignore="label", missing="keep")).columns == ["a", "b"]


def test_string_labels_become_sorted_class_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "a,species\n1,dog\n2, cat\n3,fox\n4,dog\n")
    read = read_csv_examples(path, CsvRecipe(target="species", names_allowed=True))
    assert read.classes == ["cat", "dog", "fox"] and read.y.tolist() == [1, 0, 2, 1]
    stored = ["cat", "dog", "fox", "owl"]
    again = read_csv_examples(path, CsvRecipe(target="species", names_allowed=True, classes=stored))
    assert again.y.tolist() == [1, 0, 2, 1]  # a stored list is used as it is
    with pytest.raises(DataError, match=r"t.csv, line 3, column 'species': class 'cat' is not one of the 2 classes "
                                        r"of the training data \(dog, fox\)"):
        read_csv_examples(path, CsvRecipe(target="species", names_allowed=True, classes=["dog", "fox"]))


def test_integer_labels_stay_numbers_and_names_need_a_classification_loss(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "a,label\n1,2\n2,0\n")
    read = read_csv_examples(path, CsvRecipe(target="label", names_allowed=True))
    assert read.classes is None and read.y.tolist() == [2.0, 0.0]
    write(path, "a,label\n1,dog\n2,cat\n")
    with pytest.raises(DataError, match=r"line 2, column 'label': expected a number, found 'dog'; the loss mse "
                                        r"needs numeric targets"):
        read_csv_examples(path, CsvRecipe(target="label", loss="mse"))
    write(path, "a,label\n1,dog\n2,3\n")
    with pytest.raises(DataError, match=r"line 2, column 'label': class name 'dog', but .*line 3 holds the number "
                                        r"'3': the labels mix class names and numbers"):
        read_csv_examples(path, CsvRecipe(target="label", names_allowed=True))


def test_class_ids_of_an_array_name_the_row_of_an_unknown_class() -> None:
    names = np.array(["b", "a", "c", "a"])
    assert class_list(names) == ["a", "b", "c"]
    assert class_ids(names, ["a", "b", "c"], str, "label").tolist() == [1, 0, 2, 0]
    with pytest.raises(DataError, match=r"^x.npz, array 'y', row 2, label: class 'c' is not one of the 2 classes"):
        class_ids(names, ["a", "b"], lambda row: f"x.npz, array 'y', row {row}", "label")


# numeric input, text input, classification target, regression target: accepted (True) or refused (False)
KINDS = {
    "b bool": (np.array([True, False]), True, False, True, True),
    "i int": (np.array([1, 2], np.int16), True, False, True, True),
    "u uint": (np.array([1, 2], np.uint8), True, False, True, True),
    "f float16": (np.array([1.5, 2], np.float16), True, False, True, True),
    "c complex": (np.array([1 + 2j, 2]), False, False, False, False),
    "m timedelta": (np.array([1, 2], "timedelta64[s]"), False, False, False, False),
    "M datetime": (np.array(["2024-01-01", "2024-01-02"], "datetime64[D]"), False, False, False, False),
    "O object": (np.array([1, "a"], dtype=object), False, False, False, False),
    "S bytes": (np.array([b"cat", b"dog"]), False, True, True, False),
    "U unicode": (np.array(["True", "False"]), False, True, True, False),
    "V structured": (np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]), False, False, False, False),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_numpy_dtype_kind_is_accepted_or_refused_by_name(kind: str) -> None:
    array, numeric, text, names, numbers = KINDS[kind]
    for accepted, check in ((numeric, lambda: check_input_dtype(array, "float32", "x.npz, array 'x'")),
                            (text, lambda: check_input_dtype(array, "string", "x.npz, array 'x'")),
                            (names, lambda: check_target_dtype(array, True, "sparse_categorical_crossentropy",
                                                               "x.npz, array 'y'")),
                            (numbers, lambda: check_target_dtype(array, False, "mse", "x.npz, array 'y'"))):
        if accepted:
            checked = check()
            assert checked.dtype.kind != "S"  # bytes are read as UTF-8 text
        else:
            with pytest.raises(DataError, match=r"^x.npz, array '[xy]'"):
                check()


def test_complex_data_is_never_cast_to_real_silently() -> None:
    with pytest.raises(DataError, match=r"holds complex numbers \(dtype complex128\).*silently drop the imaginary"):
        check_input_dtype(np.array([[1 + 1j, 2.0]]), "float32", "x")


def test_integer_inputs_refuse_fractions_and_overflow_instead_of_casting() -> None:
    assert check_input_dtype(np.array([[1.0, 2.0]]), "int32", "x").tolist() == [[1.0, 2.0]]
    with pytest.raises(DataError, match=r"x: the model's input has dtype int32.*row 1 holds 2.5"):
        check_input_dtype(np.array([[1.0], [2.5]]), "int32", "x")
    with pytest.raises(DataError, match="row 0 holds 4294967296"):
        check_input_dtype(np.array([[2**32]], np.int64), "int32", "x")


def test_zero_rows_and_scalars_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^e.npz, array 'x' holds no examples \(zero rows, shape \[0, 3\]\)"):
        check_examples("e.npz, array 'x'", np.zeros((0, 3)))
    with pytest.raises(DataError, match="is a scalar"):
        check_examples("s", np.float32(1))
    with pytest.raises(DataError, match=r"h.csv has a header row but no examples \(zero rows\)"):
        read_csv_table(write(tmp_path / "h.csv", "a,label\n\n"))


def test_nonfinite_rows_are_named_in_file_order() -> None:
    x = np.ones((8, 2), np.float64)
    x[6, 1], x[3, 0], x[5, 0] = np.nan, np.inf, 1e300  # 1e300 overflows float32, the model's dtype
    assert np.flatnonzero(nonfinite_rows(x)).tolist() == [3, 5, 6]
    with pytest.raises(DataError, match=r"^x.npz, array 'x', row 3 holds inf \(NaN or infinity in 3 of 8 rows: "
                                        r"rows 3, 5, 6, counting from 0\); fix them$"):
        refuse_nonfinite(x, lambda row: f"x.npz, array 'x', row {row}", "fix them")
    assert not nonfinite_rows(np.full((3, 2), 3e38, np.float32)).any()  # the float32 sum overflows, entries fit


def test_every_os_error_on_a_data_path_is_a_data_error_naming_it(tmp_path: Path) -> None:
    os.symlink("b.npz", tmp_path / "a.npz")
    os.symlink("a.npz", tmp_path / "b.npz")
    with pytest.raises(DataError, match=r"a.npz is a symbolic link that loops"):
        read_npz(tmp_path / "a.npz")
    long = tmp_path / ("x" * 300 + ".csv")
    with pytest.raises(DataError, match=r"x\.csv is a name longer than this system allows"):
        read_csv_table(long)
    with pytest.raises(DataError, match="is a folder, not a file"):
        existing_file(tmp_path)
    with pytest.raises(DataError, match=r"missing.npz does not exist; check the path"):
        existing_file(tmp_path / "missing.npz")
    os.symlink("nowhere.csv", tmp_path / "dangling.csv")
    with pytest.raises(DataError, match=r"dangling.csv does not exist"):
        read_csv_table(tmp_path / "dangling.csv")


def test_validation_split_messages_name_the_file_and_the_right_direction() -> None:
    arrays = {"x": np.zeros((40, 2))}
    with pytest.raises(DataError, match=r"^t.csv: validation_split = 0.999 of 40 examples leaves no example for "
                                        r"training; use a smaller fraction"):
        split_validation(arrays, 0.999, np.random.default_rng(0), "t.csv")
    with pytest.raises(DataError, match=r"no example for validation; use a larger fraction"):
        split_validation(arrays, 1e-20, np.random.default_rng(0), "t.csv")
    with pytest.raises(DataError, match=r"^one.csv holds a single example"):
        split_validation({"x": np.zeros((1, 2))}, 0.5, np.random.default_rng(0), "one.csv")
