"""mnist_sequences: digit rows built deterministically, labels padded with -1, cached after the first build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlcli.data.sequences import HEIGHT, MAX_DIGITS, WIDTH, cached_build, compose, inked_columns
from tests.mirror import mnist_mirror


def _fake_digits() -> tuple[np.ndarray, np.ndarray]:
    """Ten 28x28 'digits': digit d is a solid bar d+1 pixels wide starting at column 5."""
    images = np.zeros((10, 28, 28), np.uint8)
    for d in range(10):
        images[d, 4:24, 5:6 + d] = 255
    return images, np.arange(10)


def test_inked_columns_find_the_bar() -> None:
    images, _ = _fake_digits()
    first, last = inked_columns(images)
    assert first.tolist() == [5] * 10 and last.tolist() == [5 + d for d in range(10)]


def test_compose_places_each_labelled_digit_once() -> None:
    images, labels = _fake_digits()
    x, y = compose(images, labels, 300, np.random.default_rng(0))
    assert x.shape == (300, HEIGHT, WIDTH) and y.shape == (300, MAX_DIGITS) and x.dtype == np.uint8
    lengths = (y >= 0).sum(axis=1)
    assert lengths.min() >= 1 and lengths.max() == MAX_DIGITS
    assert all((row[n:] == -1).all() for row, n in zip(y, lengths))  # padding only at the end
    # every digit d is a bar d+1 wide, so the inked columns of a row add up to sum(label + 1) when bars don't touch
    inked = (x.max(axis=1) > 0).sum(axis=1)
    expected = np.where(y >= 0, y + 1, 0).sum(axis=1)
    assert (inked <= expected).all() and np.mean(inked == expected) > 0.5  # gaps of 0 may merge two bars


def test_compose_is_deterministic_under_a_seed() -> None:
    images, labels = _fake_digits()
    a = compose(images, labels, 50, np.random.default_rng(7))
    b = compose(images, labels, 50, np.random.default_rng(7))
    c = compose(images, labels, 50, np.random.default_rng(8))
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_built_from_mnist_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(mnist_mirror()))
    from dlcli import registry
    from dlcli.data.catalog import _idx_dataset

    mnist = registry.datasets.get("mnist")
    calls = []

    def loader():  # type: ignore[no-untyped-def]
        calls.append(1)
        return _idx_dataset(mnist.info)

    x_train, y_train, x_test, y_test = cached_build(tmp_path, loader)
    assert x_train.shape == (50_000, 28, 140) and x_test.shape == (10_000, 28, 140)
    counts = np.bincount((y_train >= 0).sum(axis=1), minlength=6)[1:]
    assert counts.min() > 9000  # lengths 1..5 about equally often
    again = cached_build(tmp_path, loader)
    assert len(calls) == 1 and np.array_equal(again[3], y_test)
