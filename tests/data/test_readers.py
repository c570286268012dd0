"""File readers on files each test writes: IDX (plain, gzip, damaged), .npz, .npy and CSV."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from dlcli.data.batches import check_labels
from dlcli.data import read_csv, read_idx, read_npy, read_npz, read_table
from dlcli.errors import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` (uint8) in IDX format: magic 0x0000 08 <ndim>, big-endian int32 sizes, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def test_idx_images_and_labels_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    (tmp_path / "images").write_bytes(idx_bytes(images))
    (tmp_path / "labels").write_bytes(idx_bytes(labels))
    assert int.from_bytes(idx_bytes(images)[:4], "big") == 2051 and int.from_bytes(idx_bytes(labels)[:4], "big") == 2049
    got = read_idx(tmp_path / "images")
    np.testing.assert_array_equal(got, images)
    assert got.dtype == np.uint8 and got.flags.writeable
    np.testing.assert_array_equal(read_idx(str(tmp_path / "labels")), labels)


def test_idx_reads_gzip_files_and_bytes(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(path), images)
    np.testing.assert_array_equal(read_idx(path.read_bytes()), images)
    np.testing.assert_array_equal(read_idx(idx_bytes(images)), images)


def test_truncated_idx_is_a_data_error_naming_the_file_and_sizes(tmp_path: Path) -> None:
    path = tmp_path / "train-images"
    path.write_bytes(idx_bytes(np.zeros((10, 28, 28), np.uint8))[:-100])
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and "truncated" in message and "(10, 28, 28)" in message
    assert f"{16 + 7840:,}" in message and f"{16 + 7840 - 100:,}" in message
    assert info.value.exit_code == 3


def test_truncated_gzip_idx_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))[:40])
    with pytest.raises(DataError, match="not a readable gzip file"):
        read_idx(path)


def test_wrong_idx_magic_is_a_data_error_showing_the_magic_found(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, this is not IDX")
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert "2051" in str(info.value) and str(int.from_bytes(b"hell", "big")) in str(info.value)


def test_missing_idx_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "absent.gz")


def test_npz_round_trips_arrays_by_name(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((5, 3), dtype=np.float32)
    y = np.array([0, 1, 1, 0, 2], dtype=np.int64)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    arrays = read_npz(tmp_path / "data.npz")
    assert sorted(arrays) == ["x", "y"]
    np.testing.assert_array_equal(arrays["x"], x)
    assert arrays["x"].dtype == np.float32 and arrays["y"].dtype == np.int64


def test_compressed_npz_is_read_too(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "data.npz", x=np.arange(10.0))
    np.testing.assert_array_equal(read_npz(tmp_path / "data.npz")["x"], np.arange(10.0))


def test_truncated_npz_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x=np.arange(1000.0))
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(DataError) as info:
        read_npz(path)
    assert str(path) in str(info.value) and "truncated or corrupt" in str(info.value)


class _Payload:
    """An object whose unpickling creates a folder: proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.mkdir, (str(self.marker),)


def test_npz_with_an_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.arange(3.0), tokens=np.array([_Payload(marker), [1, 2]], dtype=object))
    with pytest.raises(DataError) as info:
        read_npz(path)
    message = str(info.value)
    assert "object arrays are not supported" in message and "'tokens'" in message and str(path) in message
    assert not marker.exists()


def test_npy_with_an_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    path = tmp_path / "objects.npy"
    np.save(path, np.array([_Payload(marker), None], dtype=object))
    with pytest.raises(DataError, match="object arrays are not supported"):
        read_npy(path)
    assert not marker.exists()


def test_missing_npz_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        read_npz(tmp_path / "absent.npz")
    assert "absent.npz does not exist" in str(info.value)


def test_npy_round_trips_and_an_npz_named_npy_is_a_data_error(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.int32).reshape(3, 4)
    np.save(tmp_path / "a.npy", array)
    got = read_npy(tmp_path / "a.npy")
    np.testing.assert_array_equal(got, array)
    assert got.dtype == np.int32
    np.savez(tmp_path / "b.npz", a=array)
    (tmp_path / "b.npz").rename(tmp_path / "b.npy")
    with pytest.raises(DataError, match="name it .npz"):
        read_npy(tmp_path / "b.npy")


CSV = "id,height,width,depth,label\n1,1.5,2,3,0\n2,2.5,3,4.25,1\n3,-1,0,1e3,2\n"


def test_csv_reads_named_columns_and_ranges_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text(CSV)
    x, y = read_csv(path, ["id", "width:depth"], "label")
    np.testing.assert_array_equal(x, [[1, 2, 3], [2, 3, 4.25], [3, 0, 1000]])
    np.testing.assert_array_equal(y, [0, 1, 2])
    assert x.dtype == np.float32 and x.ndim == 2 and y.ndim == 1
    x_all, _ = read_csv(path, None, "label")
    np.testing.assert_array_equal(x_all[:, 1], [1.5, 2.5, -1])
    assert x_all.shape == (3, 4)


def test_csv_missing_column_lists_the_columns_and_the_closest(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text(CSV)
    with pytest.raises(DataError) as info:
        read_csv(path, ["heigth"], "label")
    message = str(info.value)
    assert "no column 'heigth'" in message and "did you mean 'height'?" in message
    assert "id, height, width, depth, label" in message and str(path) in message


def test_csv_non_numeric_cell_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text(CSV.replace("2,2.5,3,4.25,1", "2,2.5,three,4.25,1"))
    with pytest.raises(DataError) as info:
        read_csv(path, None, "label")
    message = str(info.value)
    assert "line 3" in message and "column 'width'" in message and "'three'" in message
    # the bad column is harmless when it is not selected
    x, _ = read_csv(path, ["height"], "label")
    assert x.shape == (3, 1)


def test_csv_empty_cell_and_ragged_row_are_data_errors(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text(CSV.replace("3,-1,0,1e3,2", "3,-1,,1e3,2"))
    with pytest.raises(DataError, match="line 4, column 'width': expected a number, found an empty cell"):
        read_csv(path, None, "label")
    path.write_text(CSV.replace("3,-1,0,1e3,2", "3,-1,0,2"))
    with pytest.raises(DataError, match="line 4: expected 5 cells like the first row, found 4"):
        read_csv(path, None, "label")


def test_csv_target_among_features_and_backwards_range_are_data_errors(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text(CSV)
    with pytest.raises(DataError, match="target column 'label' is also among the features"):
        read_csv(path, ["depth:label"], "label")
    with pytest.raises(DataError, match="runs backwards"):
        read_csv(path, ["depth:height"], "label")


def test_csv_labels_out_of_range_are_caught_by_check_labels(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text(CSV)
    _, y = read_csv(path, None, "label")
    check_labels("y_train", y, 3)
    with pytest.raises(DataError) as info:
        check_labels("y_train", y, 2)
    assert "[0, 2)" in str(info.value) and "found 2 at position 2" in str(info.value)


def test_read_table_splits_gzip_whitespace_tables(tmp_path: Path) -> None:
    path = tmp_path / "t.txt.gz"
    path.write_bytes(gzip.compress(b"1 2  3\n4 5 6\n\n"))
    np.testing.assert_array_equal(read_table(path, delimiter=None), [[1, 2, 3], [4, 5, 6]])
    path.write_bytes(gzip.compress(b"1 2 3\n4 x 6\n"))
    with pytest.raises(DataError, match=r"line 2, column 1 \(counting from 0\): expected a number, found 'x'"):
        read_table(path, delimiter=None)


def test_read_csv_columns_takes_features_without_a_target(tmp_path: Path) -> None:
    from dlcli.data import read_csv_columns

    path = tmp_path / "new.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(read_csv_columns(path, None, exclude="label"), [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(read_csv_columns(path, None, exclude="b"), [[1, 3], [4, 6]])
    np.testing.assert_array_equal(read_csv_columns(path, ["a:b"]), [[1, 2], [4, 5]])
    with pytest.raises(DataError, match="no column 'd'"):
        read_csv_columns(path, ["d"])
