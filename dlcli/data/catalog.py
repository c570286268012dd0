"""The dataset registry: what each dataset holds, where its files come from, and how it loads into arrays."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple

import numpy as np

from dlcli import registry
from dlcli.data.batches import check_finite, check_labels, check_lengths
from dlcli.data.array_cache import cached_arrays
from dlcli.data.csv_table import read_csv, read_table
from dlcli.data.download import Verify, cache_dir, fetch, local_copy
from dlcli.data.idx import read_idx
from dlcli.data.object_arrays import as_plain_arrays, from_plain_arrays, read_keras_npz
from dlcli.data.word_sequences import SEQUENCE_OPTIONS, imdb_arrays, reuters_arrays, sequence_options
from dlcli.errors import DataError, SpecError

Task = Literal["classification", "binary", "regression", "sequence"]
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
BUNDLED_ENV = "DLCLI_BUNDLED_DATASETS"
# how a user gets a missing or changed bundled file back: the files are package data (pyproject.toml)
_RESTORE = "reinstall dlcli (pip install --force-reinstall dlcli), or in a checkout: git checkout dlcli/data/bundled/"
PARSE_VERSION = 1  # of read_keras_npz's output: bump it when that changes, so cached parses are rebuilt


@dataclass(frozen=True)
class RemoteFile:
    """One downloaded file of a dataset: its name, canonical URL and sha256 (of the file or its content)."""

    filename: str
    url: str
    sha256: str
    verify: Verify = "file"


@dataclass(frozen=True)
class DatasetInfo:
    """What a registry dataset holds: task, classes, per-example input shape and dtype, size and files."""

    name: str
    doc: str
    task: Task
    num_classes: int | None
    input_shape: tuple[int | None, ...]  # None: a variable length (token sequences)
    dtype: str
    size_bytes: int  # approximate: the download, or the bundled files
    bundled: bool
    remote: tuple[RemoteFile, ...] = ()
    bundled_files: tuple[str, ...] = ()
    options: tuple[str, ...] = ()  # the keys [data.options] may set for it


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset's canonical train and test arrays, with its description."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: DatasetInfo = field(repr=False)


Loader = Callable[[DatasetInfo, dict[str, Any]], Arrays]


class Dataset:
    """A registry entry: a dataset's description and the loader that yields its arrays."""

    def __init__(self, info: DatasetInfo, loader: Loader) -> None:
        self.info, self._loader = info, loader
        self.__doc__ = info.doc  # the registry's one-line doc

    def load(self, options: dict[str, Any] | None = None) -> DatasetSplits:
        """The train and test arrays, checked for matching lengths, finite inputs and labels in range."""
        options = dict(options or {})
        for key in options:
            if key not in self.info.options:
                close = registry.suggest(key, self.info.options)
                hint = f" (did you mean {close}?)" if close else ""
                allowed = f"its options: {', '.join(self.info.options)}" if self.info.options else "it takes none"
                raise SpecError(f"data.options.{key}: dataset {self.info.name!r} has no option {key!r}{hint}; "
                                f"{allowed}")
        splits = DatasetSplits(*self._loader(self.info, options), info=self.info)
        for part in ("train", "test"):
            x, y = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
            check_lengths({f"x_{part}": x, f"y_{part}": y})
            check_finite(f"{self.info.name} x_{part}", x)
            if self.info.num_classes is not None:
                check_labels(f"{self.info.name} y_{part}", y, self.info.num_classes)
        return splits


class DatasetRow(NamedTuple):
    """One line of `dlcli datasets`."""

    name: str
    task: Task
    size_bytes: int
    bundled: bool
    cached: bool  # usable offline: bundled, or every file in the cache or the mirror


def _register(name: str, *, task: Task, num_classes: int | None, input_shape: tuple[int | None, ...],
              dtype: str, size_bytes: int, remote: tuple[RemoteFile, ...] = (), bundled: tuple[str, ...] = (),
              options: tuple[str, ...] = (), aliases: tuple[str, ...] = ()) -> Callable[[Loader], Loader]:
    """Decorator: register a loader as dataset `name` (and its `aliases`); its docstring's first line is the
    one-line doc."""

    def decorate(loader: Loader) -> Loader:
        doc = (loader.__doc__ or "").strip().splitlines()
        info = DatasetInfo(name, doc[0] if doc else "", task, num_classes, input_shape, dtype, size_bytes,
                           bool(bundled), remote, bundled, options)
        registry.datasets.register(name, aliases=aliases)(Dataset(info, loader))
        return loader

    return decorate


def dataset_info(name: str) -> DatasetInfo:
    """The description of dataset `name`; an unknown name raises UnknownNameError with a did-you-mean."""
    return registry.datasets.get(name).info


def load_dataset(name: str, options: dict[str, Any] | None = None) -> DatasetSplits:
    """The train and test arrays of registry dataset `name`, downloading (or finding) its files first."""
    return registry.datasets.get(name).load(options)


def list_datasets() -> list[DatasetRow]:
    """Every registry dataset, by name: task, approximate size, bundled or not, usable offline or not."""
    rows = []
    for entry in sorted(registry.datasets, key=lambda e: e.name):
        info = entry.target.info
        rows.append(DatasetRow(info.name, info.task, info.size_bytes, info.bundled, usable_offline(info.name)))
    return rows


def usable_offline(name: str) -> bool:
    """Whether registry dataset `name` loads without a download: bundled, or every file in the cache or mirror."""
    info = dataset_info(name)
    if info.bundled:
        return all((bundled_dir() / filename).is_file() for filename in info.bundled_files)
    return all(local_copy(info.name, file.filename) is not None for file in info.remote)


# --- bundled datasets: small tables installed with the package, in dlcli/data/bundled/ (see its README.md) ---

BUNDLED_SHA256 = {
    "digits.csv.gz": "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
    "iris.csv": "f13ffa8fdd56fd8e6c8d16d4081a3fbd3114bcd0aae4256c43205169cd9d1449",
    "wine_data.csv": "10e8a802908b34f86e5da8ce962f3c806694bc98450a18f61851af59f324bede",
    "breast_cancer.csv": "fed3eb72d0575ef6192293f5093c6e801b1476b577d0386bf4455504522172ed",
    "diabetes_data_raw.csv.gz": "7fc0ded571454b1982210d3bb43f0aca44eae01a0b8654a3b24022bdb6b38009",
    "diabetes_target.csv.gz": "8e53f65eb811df43c206f3534bb3af0e5fed213bc37ed6ba36310157d6023803",
    "boston_house_prices.csv": "04ea3ed0aa63691cfedf388349eafc1213e91e00f8e4d31747534692c0f1ce02",
}


def bundled_dir() -> Path:
    """The folder of bundled datasets: $DLCLI_BUNDLED_DATASETS, else bundled/ beside this module."""
    value = os.environ.get(BUNDLED_ENV)
    # package data, so a wheel, a plain install and an editable one (the checkout itself) all have it here
    return Path(value) if value else Path(__file__).resolve().parent / "bundled"


def bundled_file(filename: str) -> Path:
    """The path of a bundled file, after checking its sha256."""
    path = bundled_dir() / filename
    if not path.is_file():
        raise DataError(f"bundled dataset file {path} is missing: it is installed with dlcli; {_RESTORE}; or "
                        f"point {BUNDLED_ENV} at a folder holding {filename}")
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    if found != BUNDLED_SHA256[filename]:
        raise DataError(f"bundled dataset file {path} fails its checksum: expected sha256 "
                        f"{BUNDLED_SHA256[filename]}, found {found}; {_RESTORE}")
    return path


def keras_split(x: np.ndarray, y: np.ndarray, test_split: float = 0.2, seed: int = 113) -> Arrays:
    """Shuffle with RandomState(seed), then keep the last `test_split` as the test set (Keras' boston_housing)."""
    indices = np.arange(len(x))
    np.random.RandomState(seed).shuffle(indices)  # a private legacy generator, to match Keras' split exactly
    x, y = x[indices], y[indices]
    split_at = int(len(x) * (1 - test_split))
    return x[:split_at], y[:split_at], x[split_at:], y[split_at:]


def _labelled_table(filename: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and integer labels of a scikit-learn style CSV: "n_samples,n_features,class names" first."""
    path = bundled_file(filename)
    # the checksum has vouched for the file, so its first line is known to start with two integers
    n_samples, n_features = map(int, path.read_text(encoding="utf-8").split("\n", 1)[0].split(",")[:2])
    table = read_table(path, skip_rows=1)
    if table.shape != (n_samples, n_features + 1):
        raise DataError(f"{path}: its first line promises {n_samples} rows of {n_features} features and a label, "
                        f"found a table of shape {table.shape}; {_RESTORE}")
    return table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)


# The bundled tables are split as Keras splits boston_housing: RandomState(113) shuffle, last 20% for test.

@_register("iris", task="classification", num_classes=3, input_shape=(4,), dtype="float32", size_bytes=2_734,
           bundled=("iris.csv",))
def _iris(info: DatasetInfo, options: dict[str, Any]) -> Arrays:
    """Iris flowers (Fisher 1936): 4 measurements, 3 species, 150 rows; bundled (UCI, CC BY 4.0)."""
    return keras_split(*_labelled_table("iris.csv"))


@_register("wine", task="classification", num_classes=3, input_shape=(13,), dtype="float32", size_bytes=11_157,
           bundled=("wine_data.csv",))
def _wine(info: DatasetInfo, options: dict[str, Any]) -> Arrays:
    """Wine cultivars: 13 chemical measurements, 3 classes, 178 rows; bundled (UCI, CC BY 4.0)."""
    return keras_split(*_labelled_table("wine_data.csv"))


@_register("breast_cancer", task="binary", num_classes=2, input_shape=(30,), dtype="float32", size_bytes=119_913,
           bundled=("breast_cancer.csv",))
def _breast_cancer(info: DatasetInfo, options: dict[str, Any]) -> Arrays:
    """Breast cancer Wisconsin: 30 features, 0 malignant / 1 benign, 569 rows; bundled (UCI, CC BY 4.0)."""
    return keras_split(*_labelled_table("breast_cancer.csv"))


@_register("digits", task="classification", num_classes=10, input_shape=(64,), dtype="float32",
           size_bytes=57_523, bundled=("digits.csv.gz",))
def _digits(info: DatasetInfo, options: dict[str, Any]) -> Arrays:
    """8x8 handwritten digits: 64 pixels valued 0-16, 10 classes, 1797 rows; bundled (UCI, CC BY 4.0)."""
    path = bundled_file("digits.csv.gz")
    table = read_table(path)
    if table.shape[1] != 65:
        raise DataError(f"{path}: expected 64 pixel columns and a label, found {table.shape[1]} columns")
    return keras_split(table[:, :64].astype(np.float32), table[:, 64].astype(np.int64))


@_register("diabetes", task="regression", num_classes=None, input_shape=(10,), dtype="float32", size_bytes=8_123,
           bundled=("diabetes_data_raw.csv.gz", "diabetes_target.csv.gz"))
def _diabetes(info: DatasetInfo, options: dict[str, Any]) -> Arrays:
    """Diabetes progression (Efron et al. 2004): 10 raw, unscaled features, 442 rows; bundled (BSD-3)."""
    x = read_table(bundled_file("diabetes_data_raw.csv.gz"), delimiter=None)
    y = read_table(bundled_file("diabetes_target.csv.gz"), delimiter=None)
    if x.shape != (442, 10) or y.shape != (442, 1):
        raise DataError(f"diabetes: expected 442 rows of 10 features and 442 targets, found {x.shape} and "
                        f"{y.shape}; {_RESTORE}")
    return keras_split(x.astype(np.float32), y[:, 0].astype(np.float32))


@_register("boston_housing", task="regression", num_classes=None, input_shape=(13,), dtype="float32",
           size_bytes=35_230, bundled=("boston_house_prices.csv",))
def _boston_housing(info: DatasetInfo, options: dict[str, Any]) -> Arrays:
    """Boston house prices (1978), 13 features, Keras' 404/102 split; column B encodes a racial statistic."""
    x, y = read_csv(bundled_file("boston_house_prices.csv"), features=None, target="MEDV")
    return keras_split(x, y)


# --- downloaded datasets ---

_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# MNIST mirrors re-compress the files, so the canonical part is the decompressed IDX content
_MNIST_SHA256 = ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                 "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                 "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                 "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2")
# of the .gz files as Zalando serves them (the same values as Keras' fashion_mnist.py and TFDS)
_FASHION_SHA256 = ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                   "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                   "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                   "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5")


def _idx_dataset(info: DatasetInfo) -> Arrays:
    """The four IDX files of an MNIST-format dataset, fetched, verified and read."""
    x_train, y_train, x_test, y_test = (
        read_idx(fetch(info.name, file.filename, file.url, file.sha256, file.verify)) for file in info.remote)
    for part, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{info.name} {part}: expected images (N, 28, 28) and N labels, found images of shape "
                            f"{x.shape} and labels of shape {y.shape}; delete the cached files and download again")
    return x_train, y_train, x_test, y_test


@_register("mnist", task="classification", num_classes=10, input_shape=(28, 28), dtype="uint8",
           size_bytes=11_594_722, remote=tuple(RemoteFile(name, _MNIST_URL + name, sha, "decompressed")
                                               for name, sha in zip(_IDX_FILES, _MNIST_SHA256)))
def _mnist(info: DatasetInfo, options: dict[str, Any]) -> Arrays:
    """MNIST handwritten digits (LeCun et al.): 28x28 uint8 images, 10 classes, 60000 train / 10000 test."""
    return _idx_dataset(info)


@_register("fashion_mnist", task="classification", num_classes=10, input_shape=(28, 28), dtype="uint8",
           size_bytes=30_878_645, remote=tuple(RemoteFile(name, _FASHION_URL + name, sha)
                                               for name, sha in zip(_IDX_FILES, _FASHION_SHA256)))
def _fashion_mnist(info: DatasetInfo, options: dict[str, Any]) -> Arrays:
    """Fashion-MNIST (Zalando, MIT): 28x28 uint8 clothing images, 10 classes, 60000 train / 10000 test."""
    return _idx_dataset(info)


def _keras_sequences(info: DatasetInfo) -> dict[str, Any]:
    """The arrays of a Keras word-index .npz, fetched and verified first: its pickled lists are parsed, not run.

    Parsing takes seconds (imdb holds millions of ids), so the parse is cached as plain arrays under the verified
    file's sha256 and PARSE_VERSION: another file, or another parser, is another cache file. The load_data
    options are applied to the arrays after the cache, so other options never meet a stale result.
    """
    file = info.remote[0]
    source = fetch(info.name, file.filename, file.url, file.sha256, file.verify)
    cache = cache_dir() / info.name / f"{file.filename}.parsed-{file.sha256}-v{PARSE_VERSION}.npz"
    plain = cached_arrays(cache, lambda: as_plain_arrays(read_keras_npz(source)),
                          valid=lambda arrays: from_plain_arrays(arrays) is not None)
    return from_plain_arrays(plain) or {}


@_register("imdb", task="binary", num_classes=2, input_shape=(None,), dtype="int64", size_bytes=17_464_789,
           remote=(RemoteFile("imdb.npz", _KERAS_URL + "imdb.npz",
                              "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"),),
           options=SEQUENCE_OPTIONS)
def _imdb(info: DatasetInfo, options: dict[str, Any]) -> Arrays:
    """IMDB movie reviews as word-index sequences, 0 negative / 1 positive, 25000 train / 25000 test."""
    checked = sequence_options(info.name, options)  # before the download and parse, which take a while
    return imdb_arrays(_keras_sequences(info), checked)


@_register("reuters", task="classification", num_classes=46, input_shape=(None,), dtype="int64",
           size_bytes=2_110_848,
           remote=(RemoteFile("reuters.npz", _KERAS_URL + "reuters.npz",
                              "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"),),
           options=(*SEQUENCE_OPTIONS, "test_split"))
def _reuters(info: DatasetInfo, options: dict[str, Any]) -> Arrays:
    """Reuters newswires as word-index sequences, 46 topics, 8982 train / 2246 test (Keras' split)."""
    checked = sequence_options(info.name, options)  # before the download and parse, which take a while
    return reuters_arrays(_keras_sequences(info), checked)


@_register("mnist_sequences", task="sequence", num_classes=None, input_shape=(28, 140), dtype="uint8",
           size_bytes=210_000_000)
def _mnist_sequences(info: DatasetInfo, options: dict[str, Any]) -> Arrays:
    """1-5 MNIST digits in 28x140 images, labels padded with -1 (built from MNIST once, then cached)."""
    from dlcli.data.sequences import cached_build

    mnist = registry.datasets.get("mnist")
    arrays = cached_build(cache_dir() / "mnist_sequences", lambda: _idx_dataset(mnist.info))
    return arrays[0], arrays[1], arrays[2], arrays[3]


# the archive's sha256 and size as TensorFlow Datasets records them (tensorflow_datasets/datasets/imdb_reviews/
# checksums.tsv: 84125825 bytes), the same value other projects pin (scikit-learn-style fetchers, Julia's
# MLDatasets)
_ACL_IMDB = RemoteFile("aclImdb_v1.tar.gz", "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                       "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe")


@_register("acl_imdb", task="binary", num_classes=2, input_shape=(1,), dtype="string", size_bytes=84_125_825,
           remote=(_ACL_IMDB,), aliases=("aclImdb",))
def _acl_imdb(info: DatasetInfo, options: dict[str, Any]) -> Arrays:
    """IMDB reviews as raw text (Maas et al. 2011, aclImdb), neg 0 / pos 1, 25000 train / 25000 test."""
    from dlcli.data.archives import unpacked
    from dlcli.data.folders import list_folder
    from dlcli.data.prefetch import default_threads
    from dlcli.data.text_files import TextRows, read_texts

    archive = fetch(info.name, _ACL_IMDB.filename, _ACL_IMDB.url, _ACL_IMDB.sha256)
    root = unpacked(archive, cache_dir() / info.name / f"unpacked-{_ACL_IMDB.sha256[:16]}") / "aclImdb"
    parts = []
    for part in ("train", "test"):  # train/unsup holds the unlabelled reviews: not a class
        listing = list_folder(root / part, (".txt",), ["neg", "pos"], follow_links=False, kind="text")
        texts, bad = read_texts(listing.files, default_threads())
        if bad:
            raise DataError(f"{bad[0][0]}: {bad[0][1]}; the unpacked archive under {root} is damaged: delete "
                            f"{root.parent} to unpack it again")
        parts += [TextRows([text or "" for text in texts]), listing.labels]
    return parts[0], parts[1], parts[2], parts[3]
