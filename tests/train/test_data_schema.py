"""Splits.schema: what training learns about its data (CSV columns, class names, missing-value fills) and how every
later file is read with it; fills come from the training part alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.errors import DataError
from dlcli.graph import build_model
from dlcli.spec.load import validate_spec
from dlcli.train.datasets import Splits, load_splits, read_split


def splits_of(data: dict[str, Any], units: int = 2, loss: str = "sparse_categorical_crossentropy",
              inputs: int = 3, seed: int = 7) -> Splits:
    """load_splits for a one-dense-layer model on `data`, the hold-out drawn from default_rng(seed)."""
    spec = validate_spec({"name": "s", "data": data, "model": {"input": {"shape": [inputs]}, "layers": [
        {"type": "dense", "units": units, "activation": "sigmoid" if units == 1 else "softmax"}]},
        "train": {"loss": loss}}, Path("s.toml"))
    model = build_model(spec.model, np.random.default_rng(0), spec)
    return load_splits(spec, model, np.random.default_rng(seed))


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_fill_mean_uses_the_training_part_only_never_the_held_out_rows(tmp_path: Path) -> None:
    # column id numbers the rows; column a is missing in rows 3 and 8 and large in a few rows, so that which rows
    # hold out changes the mean
    a = [1.0, 2.0, 4.0, None, 8.0, 100.0, 3.0, 5.0, None, 250.0, 7.0, 9.0]
    rows = [f"{i},{'' if v is None else v},{i % 3},{i % 2}" for i, v in enumerate(a)]
    path = write_csv(tmp_path / "t.csv", "id,a,b,label", rows)
    splits = splits_of({"train": str(path), "target": "label", "missing": "fill_mean", "validation_split": 0.25})
    # the same hold-out by hand: a permutation from the same generator, the last 25% for validation
    order = np.random.default_rng(7).permutation(len(a))
    training_rows = order[:int(len(a) * 0.75)]
    present = [a[i] for i in training_rows if a[i] is not None]
    expected = sum(present) / len(present)
    everything = [v for v in a if v is not None]
    assert expected != pytest.approx(sum(everything) / len(everything))  # the test can tell a leak
    missing = splits.schema["missing"]
    assert missing["fill"]["a"] == pytest.approx(expected, rel=1e-12) and missing["policy"] == "fill_mean"
    assert missing["cells_filled"] == 2 and missing["rows_dropped"] == 0
    assert missing["fill"]["id"] == pytest.approx(np.mean(training_rows))
    for split in (splits.train, splits.validation):
        x = split.inputs["input"]
        assert np.isfinite(x).all()
        for row in x:
            if a[int(row[0])] is None:  # held-out rows are filled with the training part's mean too
                assert row[1] == np.float32(expected)
    assert splits.schema["columns"] == ["id", "a", "b"]
    json.dumps(splits.schema)  # it goes into the checkpoint's JSON metadata


def test_later_files_are_read_with_the_training_files_columns_classes_and_fills(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", "a,b,c,species", ["1,2,3,dog", "4,,6,cat", "7,8,9,fox", "1,4,1,cat"])
    test = write_csv(tmp_path / "test.csv", "species,c,x,a,b", ["fox,30,0,10,", "cat,60,0,40,50"])
    splits = splits_of({"train": str(train), "test": str(test), "target": "species", "missing": "fill_value",
                        "fill_value": -1.0}, units=3)
    assert splits.schema["classes"] == {"dense": ["cat", "dog", "fox"]}
    assert splits.train.targets["dense"].tolist() == [1, 0, 2, 0]
    assert splits.test.inputs["input"].tolist() == [[10, -1, 30], [40, 50, 60]]  # by name, filled, x ignored
    assert splits.test.targets["dense"].tolist() == [2, 0]
    assert splits.schema["missing"] == {"policy": "fill_value", "rows_dropped": 0, "cells_filled": 2,
                                        "fill": {"a": -1.0, "b": -1.0, "c": -1.0}}
    write_csv(test, "a,b,c,species", ["1,2,3,owl"])
    with pytest.raises(DataError, match=r"^data.test: .*test.csv, line 2, column 'species': class 'owl' is not one "
                                        r"of the 3 classes of the training data \(cat, dog, fox\)"):
        splits_of({"train": str(train), "test": str(test), "target": "species", "missing": "drop_rows"}, units=3)


def test_drop_rows_counts_every_file_it_drops_from(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", "a,b,c,label", ["1,2,3,0", "NA,2,3,1", "1,2,3,", "4,5,6,1"])
    validation = write_csv(tmp_path / "val.csv", "a,b,c,label", ["1,null,3,0", "4,5,6,1"])
    splits = splits_of({"train": str(train), "validation": str(validation), "target": "label",
                        "missing": "drop_rows"})
    assert len(splits.train) == 2 and len(splits.validation) == 1
    assert splits.schema["missing"] == {"policy": "drop_rows", "rows_dropped": 3, "cells_filled": 0}


def test_string_labels_in_an_npz_become_class_ids_and_must_fit_the_output(tmp_path: Path) -> None:
    x = np.ones((6, 3), np.float32)
    np.savez(tmp_path / "u.npz", x=x, y=np.array(["b", "a", "c", "a", "b", "c"]))
    np.savez(tmp_path / "s.npz", x=x, y=np.array([b"b", b"a", b"c", b"a", b"b", b"c"]))
    for name in ("u.npz", "s.npz"):
        splits = splits_of({"train": str(tmp_path / name)}, units=3)
        assert splits.schema["classes"] == {"dense": ["a", "b", "c"]}
        assert splits.train.targets["dense"].tolist() == [1, 0, 2, 0, 1, 2]
    with pytest.raises(DataError, match=r"u.npz, array 'y': the training data has 3 class names \(a, b, c\), but the "
                                        r"output has 4 units, one per class; give it 3 units"):
        splits_of({"train": str(tmp_path / "u.npz")}, units=4)
    with pytest.raises(DataError, match=r"a single sigmoid unit \(binary_crossentropy\) needs exactly 2"):
        splits_of({"train": str(tmp_path / "u.npz")}, units=1, loss="binary_crossentropy")
    with pytest.raises(DataError, match=r"holds text \(dtype <U1\), but the loss mse needs numeric targets"):
        splits_of({"train": str(tmp_path / "u.npz")}, units=1, loss="mse")


def test_two_class_names_train_a_single_sigmoid_unit(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", "a,b,c,answer", ["1,2,3,yes", "4,5,6,no", "7,8,9,yes"])
    splits = splits_of({"train": str(path), "target": "answer"}, units=1, loss="binary_crossentropy")
    assert splits.schema["classes"] == {"dense": ["no", "yes"]}
    assert splits.train.targets["dense"][:, 0].tolist() == [1.0, 0.0, 1.0]


def test_names_where_training_had_numbers_are_refused(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", "a,b,c,label", ["1,2,3,0", "4,5,6,1"])
    test = write_csv(tmp_path / "test.csv", "a,b,c,label", ["1,2,3,dog"])
    with pytest.raises(DataError, match=r"test.csv, column 'label' holds class names, but the model was trained on "
                                        r"numeric labels"):
        splits_of({"train": str(train), "test": str(test), "target": "label"})


def test_an_evaluation_file_is_read_with_the_stored_schema(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", "a,b,c,species", ["1,2,3,dog", "4,5,6,cat"])
    splits = splits_of({"train": str(train), "target": "species", "missing": "fill_mean"})
    spec = validate_spec({"name": "s", "data": {"train": str(train), "target": "species", "missing": "fill_mean"},
                          "model": {"input": {"shape": [3]}, "layers": [{"type": "dense", "units": 2}]},
                          "train": {"loss": "sparse_categorical_crossentropy"}}, Path("s.toml"))
    model = build_model(spec.model, np.random.default_rng(0), spec)
    other = write_csv(tmp_path / "other.csv", "c,b,a,species", [",5,1,cat", "3,2,1,dog"])
    split = read_split(other, spec.data, model, json.loads(json.dumps(splits.schema)), learn=False)
    assert split.inputs["input"].tolist() == [[1, 5, 4.5], [1, 2, 3]]  # c filled with the training mean 4.5
    assert split.targets["dense"].tolist() == [0, 1]


def test_class_ids_out_of_range_are_named_by_file_row_or_line_before_the_split(tmp_path: Path) -> None:
    y = np.zeros(12, np.int64)
    y[3], y[9] = 7, -1
    np.savez(tmp_path / "y.npz", x=np.ones((12, 3), np.float32), y=y)
    with pytest.raises(DataError, match=r"y.npz, array 'y', row 3, label: class id 7 is not a whole number in "
                                        r"\[0, 2\) for an output of 2 units \(2 such rows\)"):
        splits_of({"train": str(tmp_path / "y.npz"), "validation_split": 0.25})
    path = write_csv(tmp_path / "t.csv", "a,b,c,label", ["1,2,3,0", "1,2,3,1", "1,2,3,1.5", "1,2,3,0"])
    with pytest.raises(DataError, match=r"t.csv, line 4, column 'label': class id 1.5 is not a whole number"):
        splits_of({"train": str(path), "target": "label", "validation_split": 0.25})
