"""Keras' word-index datasets (imdb, reuters): its load_data options, applied to ragged arrays, then padded.

Keras' load_data returns lists of different lengths; a model needs one rectangular array, so the sequences
are padded with 0 (and cut, when sequence_length asks) at the front, as keras.utils.pad_sequences does by
default: to sequence_length if given, else to maxlen if given, else to the longest sequence. Every step
before that follows Keras' code exactly, including its quirks: maxlen drops sequences of maxlen tokens or
more (it keeps `len < maxlen`); without num_words the largest id itself becomes oov_char; skip_top applies
to start_char too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dlcli.data.object_arrays import IntLists
from dlcli.errors import DataError, SpecError

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# integer option: (smallest and largest allowed values, whether None is allowed)
_INT_OPTIONS: dict[str, tuple[int, int, bool]] = {
    "num_words": (1, 2**62, True), "skip_top": (0, 2**62, False), "maxlen": (1, 2**62, True),
    "seed": (0, 2**32 - 1, False),  # the range np.random.RandomState accepts
    "start_char": (0, 2**62, True), "oov_char": (0, 2**62, True), "index_from": (0, 2**62, False),
    "sequence_length": (1, 2**62, True),
}
SEQUENCE_OPTIONS = ("num_words", "skip_top", "maxlen", "seed", "start_char", "oov_char", "index_from",
                    "sequence_length")


@dataclass(frozen=True)
class SequenceOptions:
    """Keras' load_data options, plus dlcli's sequence_length (pad or cut at the front to that length)."""

    num_words: int | None = None
    skip_top: int = 0
    maxlen: int | None = None
    seed: int = 113
    start_char: int | None = 1
    oov_char: int | None = 2
    index_from: int = 3
    sequence_length: int | None = None
    test_split: float = 0.2


def sequence_options(dataset: str, options: dict[str, Any]) -> SequenceOptions:
    """Validated [data.options]; SpecError naming the key for a wrong type or range."""
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key == "test_split":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise SpecError(f"data.options.test_split: dataset {dataset!r} needs a fraction between 0 and 1 "
                                f"(exclusive), found {value!r}; Keras' default is 0.2")
            values[key] = float(value)
            continue
        smallest, largest, nullable = _INT_OPTIONS[key]
        if value is None and nullable:
            values[key] = None
        elif isinstance(value, bool) or not isinstance(value, int) or not smallest <= value <= largest:
            raise SpecError(f"data.options.{key}: dataset {dataset!r} needs an integer from {smallest} to "
                            f"{largest}, found {value!r}")
        else:
            values[key] = value
    return SequenceOptions(**values)


def _positions(lengths: np.ndarray) -> np.ndarray:
    """Each element's index within its own sequence, for ragged rows of these lengths."""
    return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _take(seqs: IntLists, order: np.ndarray) -> IntLists:
    """The sequences at `order`, in that order (one gather)."""
    lengths = seqs.lengths[order]
    return IntLists(seqs.values[np.repeat(seqs.starts()[order], lengths) + _positions(lengths)], lengths)


def _shuffled(rng: np.random.RandomState, seqs: IntLists, labels: np.ndarray) -> tuple[IntLists, np.ndarray]:
    indices = np.arange(len(seqs))
    rng.shuffle(indices)
    return _take(seqs, indices), labels[indices]


def _marked(seqs: IntLists, options: SequenceOptions) -> IntLists:
    """Ids shifted by index_from, with start_char in front of every sequence (an empty one too)."""
    values = seqs.values + options.index_from
    if options.start_char is None:
        return IntLists(values, seqs.lengths)
    return IntLists(np.insert(values, seqs.starts(), options.start_char), seqs.lengths + 1)


def _short(seqs: IntLists, labels: np.ndarray, maxlen: int | None) -> tuple[IntLists, np.ndarray]:
    """Keras' remove_long_seq: keep sequences shorter than maxlen (strictly)."""
    if not maxlen:
        return seqs, labels
    keep = np.flatnonzero(seqs.lengths < maxlen)
    return _take(seqs, keep), labels[keep]


def _limited(seqs: IntLists, num_words: int, options: SequenceOptions) -> IntLists:
    """Ids outside [skip_top, num_words) replaced by oov_char, or dropped when oov_char is None."""
    outside = (seqs.values < options.skip_top) | (seqs.values >= num_words)
    if options.oov_char is not None:
        return IntLists(np.where(outside, options.oov_char, seqs.values), seqs.lengths)
    rows = np.repeat(np.arange(len(seqs)), seqs.lengths)
    return IntLists(seqs.values[~outside], np.bincount(rows[~outside], minlength=len(seqs)).astype(np.int64))


def _num_words(name: str, parts: list[IntLists], options: SequenceOptions) -> int:
    """num_words, or (as Keras) the largest id of all sequences, which then itself counts as out of range."""
    if options.num_words:
        return options.num_words
    sizes = [part.values.size for part in parts]
    if not any(sizes):
        raise DataError(f"{name}: no word ids are left to find the vocabulary size from; give num_words")
    return int(max(part.values.max() for part in parts if part.values.size))


def padded(seqs: IntLists, length: int) -> np.ndarray:
    """An int64 (sequences, length) array: each sequence's last `length` ids, right-aligned, zeros in front
    (keras.utils.pad_sequences with padding="pre", truncating="pre")."""
    kept = np.minimum(seqs.lengths, length)
    rows = np.repeat(np.arange(len(seqs)), kept)
    within = _positions(kept)
    source = np.repeat(seqs.starts() + seqs.lengths - kept, kept) + within
    out = np.zeros((len(seqs), length), np.int64)
    out[rows, np.repeat(length - kept, kept) + within] = seqs.values[source]
    return out


def _rectangular(parts: list[IntLists], options: SequenceOptions) -> list[np.ndarray]:
    length = options.sequence_length or options.maxlen or max(int(part.lengths.max(initial=0)) for part in parts)
    return [padded(part, max(length, 1)) for part in parts]


def _ragged(arrays: dict[str, Any], key: str, name: str) -> IntLists:
    found = arrays.get(key)
    if not isinstance(found, IntLists):
        raise DataError(f"{name}: the file holds no sequence array {key!r} (it holds {', '.join(sorted(arrays))}); "
                        f"delete it and download it again")
    return found


def _labels(arrays: dict[str, Any], key: str, name: str, count: int) -> np.ndarray:
    found = arrays.get(key)
    if not isinstance(found, np.ndarray) or found.ndim != 1 or found.dtype.kind not in "iu" or len(found) != count:
        raise DataError(f"{name}: expected {count} integer labels in array {key!r}, found "
                        f"{getattr(found, 'shape', None)} of {getattr(found, 'dtype', type(found).__name__)}; delete "
                        f"the file and download it again")
    return found.astype(np.int64)


def imdb_arrays(arrays: dict[str, Any], options: SequenceOptions) -> Arrays:
    """Keras' imdb.load_data on the arrays of imdb.npz, padded into rectangles."""
    x_train, x_test = _ragged(arrays, "x_train", "imdb"), _ragged(arrays, "x_test", "imdb")
    y_train = _labels(arrays, "y_train", "imdb", len(x_train))
    y_test = _labels(arrays, "y_test", "imdb", len(x_test))
    rng = np.random.RandomState(options.seed)  # Keras' legacy generator: one stream, train shuffled first
    x_train, y_train = _shuffled(rng, x_train, y_train)
    x_test, y_test = _shuffled(rng, x_test, y_test)
    x_train, y_train = _short(_marked(x_train, options), y_train, options.maxlen)
    x_test, y_test = _short(_marked(x_test, options), y_test, options.maxlen)
    if not len(x_train) or not len(x_test):
        raise DataError(f"imdb: no sequence is shorter than maxlen = {options.maxlen}; raise maxlen")
    num_words = _num_words("imdb", [x_train, x_test], options)
    train, test = _rectangular([_limited(x_train, num_words, options), _limited(x_test, num_words, options)],
                               options)
    return train, y_train, test, y_test


def reuters_arrays(arrays: dict[str, Any], options: SequenceOptions) -> Arrays:
    """Keras' reuters.load_data on the arrays of reuters.npz (split after shuffling), padded into rectangles."""
    xs = _ragged(arrays, "x", "reuters")
    labels = _labels(arrays, "y", "reuters", len(xs))
    xs, labels = _shuffled(np.random.RandomState(options.seed), xs, labels)
    xs, labels = _short(_marked(xs, options), labels, options.maxlen)
    if not len(xs):
        raise DataError(f"reuters: no sequence is shorter than maxlen = {options.maxlen}; raise maxlen")
    xs = _limited(xs, _num_words("reuters", [xs], options), options)
    split_at = int(len(xs) * (1 - options.test_split))
    train, test = _take(xs, np.arange(split_at)), _take(xs, np.arange(split_at, len(xs)))
    x_train, x_test = _rectangular([train, test], options)
    return x_train, labels[:split_at], x_test, labels[split_at:]
