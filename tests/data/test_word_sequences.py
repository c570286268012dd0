"""imdb and reuters: Keras' load_data semantics on Keras-format .npz files, parsed without unpickling."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli import registry
from dlcli.data import load_dataset
from dlcli.data.object_arrays import IntLists, parse_object_array, read_keras_npz
from dlcli.errors import DataError, SpecError


def object_array(lists: list[Any]) -> np.ndarray:
    """A 1-D object array of int lists, as Keras' dataset files hold them (or of whatever `lists` holds)."""
    array = np.empty(len(lists), dtype=object)
    for i, element in enumerate(lists):  # one by one: NumPy would make equal-length lists a 2-D array
        array[i] = element
    return array


def random_lists(rng: np.random.Generator, count: int, vocabulary: int = 40) -> list[list[int]]:
    """Sequences of 0 to 12 word ids (the data's own ids start at 1, as Keras' do)."""
    return [rng.integers(1, vocabulary, rng.integers(0, 13)).tolist() for _ in range(count)]


# --- Keras' code, on Python lists, as the oracle: keras/src/datasets/imdb.py and reuters.py load_data ---

def _keras_common(xs: list[list[int]], labels: list[int], o: dict[str, Any]) -> tuple[list[list[int]], list[int]]:
    if o["start_char"] is not None:
        xs = [[o["start_char"]] + [w + o["index_from"] for w in x] for x in xs]
    elif o["index_from"]:
        xs = [[w + o["index_from"] for w in x] for x in xs]
    if o["maxlen"]:
        kept = [(x, y) for x, y in zip(xs, labels) if len(x) < o["maxlen"]]
        xs, labels = [x for x, _ in kept], [y for _, y in kept]
    return xs, labels


def _keras_limit(xs: list[list[int]], o: dict[str, Any]) -> list[list[int]]:
    num_words = o["num_words"] or max(max(x) for x in xs if x)
    if o["oov_char"] is not None:
        return [[w if o["skip_top"] <= w < num_words else o["oov_char"] for w in x] for x in xs]
    return [[w for w in x if o["skip_top"] <= w < num_words] for x in xs]


def keras_imdb(x_train: list, y_train: np.ndarray, x_test: list, y_test: np.ndarray, o: dict[str, Any]) -> tuple:
    rng = np.random.RandomState(o["seed"])
    indices = np.arange(len(x_train))
    rng.shuffle(indices)
    x_train, y_train = [x_train[i] for i in indices], y_train[indices].tolist()
    indices = np.arange(len(x_test))
    rng.shuffle(indices)
    x_test, y_test = [x_test[i] for i in indices], y_test[indices].tolist()
    x_train, y_train = _keras_common(x_train, y_train, o)
    x_test, y_test = _keras_common(x_test, y_test, o)
    xs = _keras_limit(x_train + x_test, o)
    return xs[:len(x_train)], y_train, xs[len(x_train):], y_test


def keras_reuters(xs: list, labels: np.ndarray, o: dict[str, Any]) -> tuple:
    indices = np.arange(len(xs))
    np.random.RandomState(o["seed"]).shuffle(indices)
    xs, labels = _keras_common([xs[i] for i in indices], labels[indices].tolist(), o)
    xs = _keras_limit(xs, o)
    split_at = int(len(xs) * (1 - o["test_split"]))
    return xs[:split_at], labels[:split_at], xs[split_at:], labels[split_at:]


def pad_pre(xs: list[list[int]], length: int) -> np.ndarray:
    """keras.utils.pad_sequences(xs, maxlen=length), padding and truncating "pre"."""
    return np.array([[0] * (length - len(x[-length:])) + x[-length:] for x in xs], dtype=np.int64).reshape(-1, length)


DEFAULTS = {"num_words": None, "skip_top": 0, "maxlen": None, "seed": 113, "start_char": 1, "oov_char": 2,
            "index_from": 3, "sequence_length": None, "test_split": 0.2}
OPTION_SETS = [
    {},
    {"num_words": 20},
    {"num_words": 25, "skip_top": 5, "seed": 7},
    {"maxlen": 9},
    {"maxlen": 9, "sequence_length": 4, "num_words": 30},
    {"sequence_length": 6, "index_from": 0, "start_char": 4},
    {"oov_char": None, "num_words": 15, "skip_top": 2},
    {"start_char": None, "index_from": 0, "oov_char": 0},
]


def expected_length(o: dict[str, Any], parts: list[list[list[int]]]) -> int:
    """dlcli's rectangle width: sequence_length, else maxlen, else the longest sequence."""
    return o["sequence_length"] or o["maxlen"] or max(len(x) for part in parts for x in part)


@pytest.fixture
def keras_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """imdb.npz and reuters.npz made as Keras made them (np.savez of object arrays), served from a mirror."""
    rng = np.random.default_rng(0)
    imdb = {"x_train": random_lists(rng, 30), "y_train": rng.integers(0, 2, 30),
            "x_test": random_lists(rng, 20), "y_test": rng.integers(0, 2, 20)}
    reuters = {"x": random_lists(rng, 50), "y": rng.integers(0, 46, 50)}
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, arrays in (("imdb", imdb), ("reuters", reuters)):
        np.savez(mirror / f"{name}.npz", **{k: object_array(v) if k.startswith("x") else v for k, v in arrays.items()})
        dataset = registry.datasets.get(name)
        file = dataset.info.remote[0]
        toy = dataclasses.replace(file, sha256=hashlib.sha256((mirror / file.filename).read_bytes()).hexdigest())
        monkeypatch.setattr(dataset, "info", dataclasses.replace(dataset.info, remote=(toy,)))
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(mirror))
    return {"imdb": imdb, "reuters": reuters}


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "keras")
def test_imdb_follows_keras_load_data_then_pads_in_front(keras_files: dict, options: dict) -> None:
    o = {**DEFAULTS, **options}
    x_train, y_train, x_test, y_test = keras_imdb(*keras_files["imdb"].values(), o)
    length = expected_length(o, [x_train, x_test])
    splits = load_dataset("imdb", options)
    np.testing.assert_array_equal(splits.x_train, pad_pre(x_train, length))
    np.testing.assert_array_equal(splits.x_test, pad_pre(x_test, length))
    np.testing.assert_array_equal(splits.y_train, y_train)
    np.testing.assert_array_equal(splits.y_test, y_test)
    assert splits.x_train.dtype == splits.y_train.dtype == np.int64


@pytest.mark.parametrize("options", [*OPTION_SETS, {"test_split": 0.5, "maxlen": 11}],
                         ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "keras")
def test_reuters_follows_keras_load_data_then_pads_in_front(keras_files: dict, options: dict) -> None:
    o = {**DEFAULTS, **options}
    x_train, y_train, x_test, y_test = keras_reuters(*keras_files["reuters"].values(), o)
    length = expected_length(o, [x_train, x_test])
    splits = load_dataset("reuters", options)
    np.testing.assert_array_equal(splits.x_train, pad_pre(x_train, length))
    np.testing.assert_array_equal(splits.x_test, pad_pre(x_test, length))
    np.testing.assert_array_equal(splits.y_train, y_train)
    np.testing.assert_array_equal(splits.y_test, y_test)


def test_default_split_sizes_and_truncation_keep_the_last_ids(keras_files: dict) -> None:
    splits = load_dataset("reuters", {"sequence_length": 2})
    assert splits.x_train.shape == (40, 2) and splits.x_test.shape == (10, 2)
    first = keras_reuters(*keras_files["reuters"].values(), DEFAULTS)[0][0]
    assert splits.x_train[0].tolist() == ([0] * (2 - len(first)) + first)[-2:]


@pytest.mark.parametrize("options, message", [
    ({"num_words": 0}, "num_words: dataset 'imdb' needs an integer from 1"),
    ({"maxlen": "50"}, "maxlen.*found '50'"),
    ({"seed": -1}, "seed"),
    ({"oov_char": True}, "oov_char"),
    ({"maxlen": 1}, "no sequence is shorter than maxlen = 1"),
])
def test_bad_options_are_refused_with_the_key(keras_files: dict, options: dict, message: str) -> None:
    with pytest.raises((SpecError, DataError), match=message):
        load_dataset("imdb", options)
    with pytest.raises(SpecError, match="test_split.*between 0 and 1"):
        load_dataset("reuters", {"test_split": 1.5})


def test_the_real_checksums_guard_the_real_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.savez(tmp_path / "imdb.npz", x_train=object_array([[1]]), y_train=np.zeros(1, np.int64))
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(tmp_path))
    with pytest.raises(DataError, match="fails its checksum"):
        load_dataset("imdb")


def npy_bytes(payload: bytes, count: int) -> bytes:
    """A .npy file of dtype object and shape (count,) whose pickle payload is `payload`."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False, "shape": (count,)})
    return buffer.getvalue() + payload


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_parses_to_the_same_lists(protocol: int) -> None:
    lists = [[1, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**40, -5], [], [7] * 2500]
    parsed = parse_object_array(pickle.dumps(object_array(lists), protocol=protocol), (3,), "test")
    assert isinstance(parsed, IntLists)
    assert parsed.lengths.tolist() == [9, 0, 2500]
    assert parsed.values.tolist() == [v for x in lists for v in x]


class _Exploit:
    """Unpickling this calls os.system: what a poisoned dataset file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


class _Eval:
    def __reduce__(self) -> tuple:
        return eval, ("__import__('os').getcwd()",)


@pytest.mark.parametrize("make", [
    lambda marker: pickle.dumps(_Exploit(marker)),  # the payload is the exploit itself
    lambda marker: pickle.dumps(object_array([[1, 2], _Exploit(marker)]), protocol=2),  # hidden in an element
    lambda marker: pickle.dumps(object_array([[1], [_Eval()]])),
    lambda marker: pickle.dumps(object_array([[1], [2.5]])),  # not code, but not an integer list either
])
def test_a_crafted_pickle_is_refused_without_running_it(tmp_path: Path, make: Any) -> None:
    marker = tmp_path / "pwned"
    archive = tmp_path / "imdb.npz"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("x_train.npy", npy_bytes(make(marker), 2))
    with pytest.raises(DataError, match="refused without running it"):
        read_keras_npz(archive)
    assert not marker.exists()


def test_a_truncated_pickle_is_a_data_error(tmp_path: Path) -> None:
    payload = pickle.dumps(object_array([[1, 2, 3], [4]]))
    with pytest.raises(DataError, match="malformed"):
        parse_object_array(payload[:-20], (2,), "test")
    archive = tmp_path / "broken.npz"
    archive.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        read_keras_npz(archive)


def test_numeric_members_load_as_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=object_array([[3, 4], [5]]), y=np.array([1, 0]), z=object_array([[9]])[:0])
    found = read_keras_npz(tmp_path / "a.npz")
    assert isinstance(found["x"], IntLists) and found["x"].values.tolist() == [3, 4, 5]
    assert found["y"].tolist() == [1, 0] and len(found["z"]) == 0


def test_options_are_checked_before_any_download(isolated_data_env: Path) -> None:
    with pytest.raises(SpecError, match="data.options.num_words"):
        load_dataset("imdb", {"num_words": -3})
    assert not isolated_data_env.exists()  # no mirror, and nothing fetched


# --- the parse is cached as plain arrays: later loads skip it, another file or a damaged cache rebuilds it ---

@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Each file read_keras_npz parses, in order (the cache's job is to keep this list short)."""
    from dlcli.data import catalog

    parsed: list[Path] = []

    def counting(path: Path) -> dict[str, Any]:
        parsed.append(Path(path))
        return read_keras_npz(path)

    monkeypatch.setattr(catalog, "read_keras_npz", counting)
    return parsed


def _assert_same_splits(first: Any, second: Any) -> None:
    for part in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, part), getattr(second, part), err_msg=part)
        assert getattr(first, part).dtype == getattr(second, part).dtype


@pytest.mark.parametrize("name", ["imdb", "reuters"])
def test_second_load_reads_the_cached_parse_and_gives_identical_arrays(
        keras_files: dict, parses: list[Path], isolated_data_env: Path, name: str) -> None:
    first = load_dataset(name)
    assert len(parses) == 1
    again = load_dataset(name)
    assert len(parses) == 1  # not parsed again
    _assert_same_splits(first, again)
    cached = sorted(p.name for p in (isolated_data_env / name).iterdir())
    assert len(cached) == 1 and cached[0].startswith(f"{name}.npz.parsed-") and cached[0].endswith(".npz")


def test_other_options_on_a_cached_parse_follow_keras(keras_files: dict, parses: list[Path]) -> None:
    load_dataset("imdb", {"num_words": 20})
    options = {"maxlen": 9, "sequence_length": 4, "num_words": 30}
    splits = load_dataset("imdb", options)
    assert len(parses) == 1
    o = {**DEFAULTS, **options}
    x_train, _, x_test, _ = keras_imdb(*keras_files["imdb"].values(), o)
    np.testing.assert_array_equal(splits.x_train, pad_pre(x_train, 4))
    np.testing.assert_array_equal(splits.x_test, pad_pre(x_test, 4))


def test_a_changed_source_file_is_parsed_again(keras_files: dict, parses: list[Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    before = load_dataset("reuters")
    lists = random_lists(np.random.default_rng(5), 50)
    np.savez(tmp_path / "mirror" / "reuters.npz", x=object_array(lists), y=np.arange(50) % 46)
    dataset = registry.datasets.get("reuters")
    file = dataclasses.replace(dataset.info.remote[0],
                               sha256=hashlib.sha256((tmp_path / "mirror" / "reuters.npz").read_bytes()).hexdigest())
    monkeypatch.setattr(dataset, "info", dataclasses.replace(dataset.info, remote=(file,)))
    after = load_dataset("reuters")
    assert len(parses) == 2
    x_train, y_train, _, _ = keras_reuters(lists, np.arange(50) % 46, DEFAULTS)
    np.testing.assert_array_equal(after.x_train, pad_pre(x_train, expected_length(DEFAULTS, [x_train])))
    np.testing.assert_array_equal(after.y_train, y_train)
    assert not np.array_equal(after.y_train, before.y_train)


@pytest.mark.parametrize("damage", [
    lambda data: data[:len(data) // 2],  # cut short
    lambda data: data[:-30] + bytes(b ^ 0x10 for b in data[-30:]),  # bit flips in the zip's directory
    lambda data: b"not a zip file at all",
    "inconsistent",  # a readable .npz whose lengths do not add up to its values
])
def test_a_damaged_cache_file_is_rebuilt_not_trusted(keras_files: dict, parses: list[Path],
                                                     isolated_data_env: Path, damage: Any) -> None:
    first = load_dataset("imdb")
    (cache,) = (isolated_data_env / "imdb").iterdir()
    if damage == "inconsistent":
        with np.load(cache) as stored:
            arrays = {k: stored[k] for k in stored.files}
        arrays["ragged/x_train/lengths"] = arrays["ragged/x_train/lengths"] + 1
        with open(cache, "wb") as handle:
            np.savez(handle, **arrays)
    else:
        cache.write_bytes(damage(cache.read_bytes()))
    again = load_dataset("imdb")
    assert len(parses) == 2
    _assert_same_splits(first, again)
    load_dataset("imdb")
    assert len(parses) == 2  # the rebuilt file is good again
    assert [p.name for p in (isolated_data_env / "imdb").iterdir()] == [cache.name]  # no temporary left behind
