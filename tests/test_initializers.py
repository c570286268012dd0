"""Initializers: Keras' scales, seeded draws, shapes and dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlcli import registry
from dlcli.initializers import fans, initialize

SHAPE = (400, 300)


@pytest.mark.parametrize("name", registry.initializers.names())
def test_initializer_is_seeded_float32_and_shaped(name: str) -> None:
    a = initialize(name, np.random.default_rng(3), SHAPE)
    b = initialize(name, np.random.default_rng(3), SHAPE)
    assert a.shape == SHAPE and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name,expected_std", [
    ("glorot_uniform", math.sqrt(2 / 700)),  # uniform in +-sqrt(6/700): std = limit / sqrt(3)
    ("glorot_normal", math.sqrt(2 / 700)),
    ("he_uniform", math.sqrt(2 / 400)),
    ("he_normal", math.sqrt(2 / 400)),
    ("lecun_normal", math.sqrt(1 / 400)),
])
def test_variance_scaling_std(name: str, expected_std: float) -> None:
    values = initialize(name, np.random.default_rng(0), SHAPE)
    assert values.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(values.mean()) < 0.01 * expected_std * 10


def test_uniform_limits_and_truncation() -> None:
    limit = math.sqrt(6 / 700)
    values = initialize("glorot_uniform", np.random.default_rng(0), SHAPE)
    assert values.max() <= limit and values.min() >= -limit
    normal = initialize("he_normal", np.random.default_rng(0), SHAPE)
    assert np.abs(normal).max() <= 2 * math.sqrt(2 / 400) / 0.87962566103423978 + 1e-6


def test_orthogonal_has_orthonormal_columns_or_rows() -> None:
    tall = initialize("orthogonal", np.random.default_rng(0), (6, 3)).astype(np.float64)
    np.testing.assert_allclose(tall.T @ tall, np.eye(3), atol=1e-6)
    wide = initialize("orthogonal", np.random.default_rng(0), (3, 6)).astype(np.float64)
    np.testing.assert_allclose(wide @ wide.T, np.eye(3), atol=1e-6)


def test_constant_initializers() -> None:
    assert not initialize("zeros", np.random.default_rng(0), (2, 2)).any()
    assert (initialize("ones", np.random.default_rng(0), (2, 2)) == 1).all()


def test_fans_of_conv_kernels_count_the_receptive_field() -> None:
    assert fans((3, 3, 16, 32)) == (144, 288)
    assert fans((10,)) == (10, 10)
