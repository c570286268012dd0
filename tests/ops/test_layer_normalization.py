"""The layer_normalization op: gradients over one or several axes, and the statistics it normalizes with."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(31)


def _case(shape: tuple[int, ...], axes: tuple[int, ...], epsilon: float = 1e-3):
    params = tuple(shape[a] for a in axes)
    inputs = [rng.normal(size=shape) * 3 + 1, rng.normal(size=params), rng.normal(size=params)]
    return (lambda x, g, b: ops.layer_normalization(x, g, b, axes, epsilon)), inputs


CASES = {
    "layer_normalization": _case((4, 6), (-1,)),
    "layer_normalization_sequence": _case((2, 3, 5), (-1,), epsilon=1e-6),
    "layer_normalization_two_axes": _case((2, 3, 4), (1, 2)),
    "layer_normalization_middle_axis": _case((2, 4, 3), (1,)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_normalization_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


def test_each_example_gets_zero_mean_and_unit_variance_before_gamma_and_beta() -> None:
    x = (rng.normal(size=(3, 7, 16)) * 50 + 1000).astype(np.float32)  # a large mean: float32 must not cancel
    out = ops.layer_normalization(Tensor(x), Tensor(np.ones(16, np.float32)), Tensor(np.zeros(16, np.float32)),
                                  epsilon=0.0).data
    np.testing.assert_allclose(out.mean(axis=-1), 0, atol=2e-5)
    np.testing.assert_allclose(out.var(axis=-1), 1, rtol=2e-5)
    assert out.dtype == np.float32
