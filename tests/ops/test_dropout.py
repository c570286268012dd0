"""Dropout: inverted scaling, seeded masks, gradients."""

from __future__ import annotations

import numpy as np

from dlcli import ops
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

CASES = {
    # a fresh generator with the same seed on every call: the same mask for analytic and numeric passes
    "dropout": (lambda a: ops.dropout(a, 0.4, np.random.default_rng(0)), [np.random.default_rng(6).normal(size=(4, 5))]),
}


def test_dropout_gradient_matches_finite_differences() -> None:
    fn, inputs = CASES["dropout"]
    check_op_gradients(fn, inputs)


def test_dropout_keeps_the_expected_fraction_and_scales_up() -> None:
    x = Tensor(np.ones((200, 500), np.float32))
    out = ops.dropout(x, 0.25, np.random.default_rng(1)).data
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    assert out.dtype == np.float32
    assert abs(out.mean() - 1.0) < 0.01


def test_dropout_masks_repeat_under_the_same_seed() -> None:
    x = Tensor(np.ones((8, 8), np.float32))
    a = ops.dropout(x, 0.5, np.random.default_rng(42)).data
    b = ops.dropout(x, 0.5, np.random.default_rng(42)).data
    c = ops.dropout(x, 0.5, np.random.default_rng(43)).data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
