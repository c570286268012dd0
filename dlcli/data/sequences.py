"""mnist_sequences: rows of 1 to 5 MNIST digits in 28x140 images, for sequence recognition with CTC.

Built deterministically from MNIST (train from its train split, test from its test split): each digit is
trimmed to its inked columns, digits are placed left to right with gaps of 0-6 pixels, each shifted up or
down by up to 2 pixels, the row starting at a random offset. Labels are the digits, padded with -1 to 5;
a CTC output has 11 classes, the blank (10) last. The arrays are cached as a plain .npz after the first
build (a few seconds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcli.data.array_cache import cached_arrays

HEIGHT, WIDTH, MAX_DIGITS, MAX_GAP, JITTER = 28, 140, 5, 6, 2
TRAIN_COUNT, TEST_COUNT = 50_000, 10_000
SEEDS = {"train": 20_261_123, "test": 20_261_124}
VERSION = 1  # bump when the recipe changes, so cached files are rebuilt


def inked_columns(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last column holding ink, for every (N, 28, 28) image (a blank image gives 0 and 27)."""
    inked = images.max(axis=1) > 0
    first = inked.argmax(axis=1)
    last = images.shape[2] - 1 - inked[:, ::-1].argmax(axis=1)
    return first, np.maximum(last, first)


def compose(images: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """`count` sequence images (count, 28, 140) uint8 and their labels (count, 5) int64 padded with -1."""
    first, last = inked_columns(images)
    lengths = rng.integers(1, MAX_DIGITS + 1, count)
    picks = rng.integers(0, len(images), (count, MAX_DIGITS))
    gaps = rng.integers(0, MAX_GAP + 1, (count, MAX_DIGITS))
    shifts = rng.integers(-JITTER, JITTER + 1, (count, MAX_DIGITS))
    starts = rng.random(count)
    widths = last[picks] - first[picks] + 1
    used = np.arange(MAX_DIGITS) < lengths[:, None]
    # gaps go between digits; a row that would not fit in 140 pixels drops its trailing digits
    spans = np.cumsum(np.where(used, widths + np.concatenate([np.zeros((count, 1), int), gaps[:, 1:]], 1), 0), 1)
    lengths = np.minimum(lengths, (spans <= WIDTH).sum(axis=1))
    x = np.zeros((count, HEIGHT, WIDTH), np.uint8)
    y = np.full((count, MAX_DIGITS), -1, np.int64)
    for i in range(count):  # builds the dataset once, then it is cached: not a training hot path
        n = lengths[i]
        total = int(widths[i, :n].sum() + gaps[i, 1:n].sum())
        column = int(starts[i] * (WIDTH - total + 1))
        for k in range(n):
            digit = images[picks[i, k], :, first[picks[i, k]]:last[picks[i, k]] + 1]
            shifted = np.roll(digit, shifts[i, k], axis=0)
            if shifts[i, k] > 0:  # rows rolled in from the other edge are cleared
                shifted[:shifts[i, k]] = 0
            elif shifts[i, k] < 0:
                shifted[shifts[i, k]:] = 0
            region = x[i, :, column:column + digit.shape[1]]
            np.maximum(region, shifted, out=region)
            column += digit.shape[1] + (gaps[i, k + 1] if k + 1 < n else 0)
        y[i, :n] = labels[picks[i, :n]]
    return x, y


def build(mnist: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
    """The four arrays of mnist_sequences from MNIST's (x_train, y_train, x_test, y_test)."""
    x_train, y_train, x_test, y_test = mnist
    train = compose(x_train, y_train, TRAIN_COUNT, np.random.default_rng(SEEDS["train"]))
    test = compose(x_test, y_test, TEST_COUNT, np.random.default_rng(SEEDS["test"]))
    return (*train, *test)


def cached_build(cache: Path, mnist_loader) -> tuple[np.ndarray, ...]:  # type: ignore[no-untyped-def]
    """Load the built arrays from `cache`, or build them from MNIST and save them there (atomically)."""
    names = ("x_train", "y_train", "x_test", "y_test")
    arrays = cached_arrays(cache / f"mnist_sequences_v{VERSION}.npz",
                           lambda: dict(zip(names, build(mnist_loader()))),
                           valid=lambda found: all(k in found for k in names)
                           and found["x_train"].shape == (TRAIN_COUNT, HEIGHT, WIDTH))
    return tuple(arrays[k] for k in names)
