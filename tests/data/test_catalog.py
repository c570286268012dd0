"""The dataset registry: bundled sets load with their shapes and splits, MNIST from the local mirror."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from dlcli import registry
from dlcli.data.catalog import BUNDLED_SHA256, bundled_dir, dataset_info, keras_split, list_datasets, load_dataset
from dlcli.data.csv_table import read_table
from dlcli.errors import DataError, SpecError, UnknownNameError
from tests.data.test_readers import idx_bytes
from tests.mirror import mnist_mirror

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]

# name: rows in all, train rows, features, classes (None: regression)
BUNDLED = {
    "iris": (150, 120, 4, 3),
    "wine": (178, 142, 13, 3),
    "breast_cancer": (569, 455, 30, 2),
    "digits": (1797, 1437, 64, 10),
    "diabetes": (442, 353, 10, None),
    "boston_housing": (506, 404, 13, None),
}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_dataset_loads_with_its_shapes_and_classes(name: str) -> None:
    rows, train_rows, features, classes = BUNDLED[name]
    splits = load_dataset(name, {})
    assert splits.x_train.shape == (train_rows, features) and splits.x_test.shape == (rows - train_rows, features)
    assert splits.y_train.shape == (train_rows,) and splits.y_test.shape == (rows - train_rows,)
    assert splits.x_train.dtype == np.float32 and splits.info.input_shape == (features,)
    assert splits.info.bundled and splits.info.num_classes == classes
    labels = np.concatenate([splits.y_train, splits.y_test])
    if classes is None:
        assert splits.info.task == "regression" and labels.dtype == np.float32
    else:
        assert labels.dtype == np.int64 and np.array_equal(np.unique(labels), np.arange(classes))


def test_bundled_split_is_deterministic_and_keeps_every_row_once() -> None:
    first, second = load_dataset("iris"), load_dataset("iris")
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    table = read_table(bundled_dir() / "iris.csv", skip_rows=1).astype(np.float32)
    both = np.column_stack([np.concatenate([first.x_train, first.x_test]),
                            np.concatenate([first.y_train, first.y_test])]).astype(np.float32)
    assert not np.array_equal(both, table)  # shuffled
    np.testing.assert_array_equal(both[np.lexsort(both.T)], table[np.lexsort(table.T)])


def test_boston_housing_matches_the_keras_split() -> None:
    splits = load_dataset("boston_housing")
    # Keras' boston_housing.load_data() starts with these examples
    np.testing.assert_allclose(splits.x_train[0], [1.23247, 0, 8.14, 0, 0.538, 6.142, 91.7, 3.9769, 4, 307, 21,
                                                   396.9, 18.72], rtol=1e-6)
    np.testing.assert_allclose(splits.y_train[:3], [15.2, 42.3, 50.0], rtol=1e-6)
    np.testing.assert_allclose(splits.y_test[:3], [7.2, 18.8, 19.0], rtol=1e-6)
    assert "racial" in registry.datasets.entry("boston_housing").doc


def test_keras_split_sizes_follow_keras() -> None:
    x_train, y_train, x_test, y_test = keras_split(np.arange(10), np.arange(10) * 2)
    assert len(x_train) == 8 and len(x_test) == 2 and np.array_equal(y_test, x_test * 2)


def test_bundled_files_match_their_checksums() -> None:
    for filename, sha256 in BUNDLED_SHA256.items():
        assert hashlib.sha256((bundled_dir() / filename).read_bytes()).hexdigest() == sha256, filename


def test_a_changed_bundled_file_fails_its_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "bundled"
    shutil.copytree(bundled_dir(), copy)
    (copy / "iris.csv").write_text((copy / "iris.csv").read_text().replace("5.1,3.5", "9.1,3.5", 1))
    monkeypatch.setenv("DLCLI_BUNDLED_DATASETS", str(copy))
    with pytest.raises(DataError) as info:
        load_dataset("iris")
    assert BUNDLED_SHA256["iris.csv"] in str(info.value)
    assert hashlib.sha256((copy / "iris.csv").read_bytes()).hexdigest() in str(info.value)
    load_dataset("wine")  # the others still load from the copy
    (copy / "wine_data.csv").unlink()
    with pytest.raises(DataError, match="DLCLI_BUNDLED_DATASETS"):
        load_dataset("wine")


def test_unknown_dataset_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownNameError, match="did you mean iris"):
        load_dataset("irs")


def test_unknown_option_is_a_spec_error_with_the_options_listed() -> None:
    with pytest.raises(SpecError, match="takes none"):
        load_dataset("iris", {"num_words": 100})
    with pytest.raises(SpecError, match="did you mean num_words"):
        load_dataset("imdb", {"num_word": 100})


@pytest.mark.parametrize("name", ["imdb", "reuters"])
def test_sequence_datasets_come_from_keras_files_with_keras_options(name: str) -> None:
    # loading them is tested in tests/data/test_word_sequences.py, from files the tests write
    info = dataset_info(name)
    assert info.remote[0].url == f"https://storage.googleapis.com/tensorflow/tf-keras-datasets/{name}.npz"
    assert {"num_words", "skip_top", "maxlen", "seed", "start_char", "oov_char", "index_from"} <= set(info.options)
    assert ("test_split" in info.options) == (name == "reuters")


def test_every_dataset_has_a_short_doc_and_a_consistent_description() -> None:
    names = registry.datasets.names()
    assert set(names) >= {"mnist", "fashion_mnist", "imdb", "reuters", "boston_housing", *BUNDLED}
    for entry in registry.datasets:
        info = entry.target.info
        assert entry.doc and len(entry.doc) < 120 and info.doc == entry.doc
        assert info.task in ("classification", "binary", "regression", "sequence")
        assert (info.num_classes is None) == (info.task in ("regression", "sequence"))
        derived = not info.bundled and not info.remote  # built from another registry dataset (mnist_sequences)
        assert derived or info.bundled == bool(info.bundled_files) != bool(info.remote), info.name
        assert not derived or info.task == "sequence", info.name
        assert all(len(file.sha256) == 64 for file in info.remote), info.name


def test_list_datasets_reports_what_is_available_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rows = {row.name: row for row in list_datasets()}
    assert all(rows[name].cached and rows[name].bundled for name in BUNDLED)
    assert not rows["mnist"].cached and not rows["mnist"].bundled and rows["mnist"].size_bytes > 10_000_000
    mirror = tmp_path / "mirror" / "mnist"
    mirror.mkdir(parents=True)
    for file in dataset_info("mnist").remote:
        (mirror / file.filename).write_bytes(b"")
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(tmp_path / "mirror"))
    assert {row.name: row for row in list_datasets()}["mnist"].cached


def _write_idx_dataset(folder: Path, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Four small IDX .gz files in MNIST's names; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = (rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), rng.integers(0, 10, 6, dtype=np.uint8),
              rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), rng.integers(0, 10, 2, dtype=np.uint8))
    for file, array in zip(dataset_info("fashion_mnist").remote, arrays):
        (folder / file.filename).write_bytes(gzip.compress(idx_bytes(array)))
    return arrays


def test_fashion_mnist_loads_idx_files_once_their_checksums_match(monkeypatch: pytest.MonkeyPatch,
                                                                 isolated_data_env: Path) -> None:
    folder = isolated_data_env / "fashion_mnist"
    arrays = _write_idx_dataset(folder, np.random.default_rng(0))
    with pytest.raises(DataError, match="fails its checksum"):  # the real hashes guard the real files
        load_dataset("fashion_mnist")
    dataset = registry.datasets.get("fashion_mnist")
    toy = tuple(dataclasses.replace(file, sha256=hashlib.sha256((folder / file.filename).read_bytes()).hexdigest())
                for file in dataset.info.remote)
    monkeypatch.setattr(dataset, "info", dataclasses.replace(dataset.info, remote=toy))
    splits = load_dataset("fashion_mnist")
    for got, expected in zip((splits.x_train, splits.y_train, splits.x_test, splits.y_test), arrays):
        np.testing.assert_array_equal(got, expected)


def test_mnist_labels_out_of_range_are_a_data_error(monkeypatch: pytest.MonkeyPatch, isolated_data_env: Path) -> None:
    folder = isolated_data_env / "mnist"
    _write_idx_dataset(folder, np.random.default_rng(1))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.array([3, 12], np.uint8))))
    dataset = registry.datasets.get("mnist")
    toy = tuple(dataclasses.replace(file, sha256=hashlib.sha256(
        gzip.decompress((folder / file.filename).read_bytes())).hexdigest()) for file in dataset.info.remote)
    monkeypatch.setattr(dataset, "info", dataclasses.replace(dataset.info, remote=toy))
    with pytest.raises(DataError, match=r"mnist y_test' must lie in \[0, 10\).*found 12 at position 1"):
        load_dataset("mnist")


def test_mnist_loads_from_the_local_mirror(monkeypatch: pytest.MonkeyPatch, isolated_data_env: Path) -> None:
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(mnist_mirror()))
    splits = load_dataset("mnist")
    assert splits.x_train.shape == (60000, 28, 28) and splits.x_test.shape == (10000, 28, 28)
    assert splits.x_train.dtype == np.uint8 and splits.y_test.shape == (10000,)
    assert np.bincount(splits.y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    scaled = splits.x_train.astype(np.float64) / 255.0
    assert abs(scaled.mean() - 0.1307) < 1e-4 and abs(scaled.std() - 0.3081) < 1e-4
    assert not isolated_data_env.exists()  # read in place from the mirror, nothing copied or downloaded
