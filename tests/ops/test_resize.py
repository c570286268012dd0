"""The up_sample2d and zero_pad2d ops: gradients, and bilinear weights that sum to one."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
from dlcli.ops.resize import interpolation_matrix
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(51)

CASES = {
    "up_sample2d_nearest": (lambda x: ops.up_sample2d(x, (2, 3)), [rng.normal(size=(2, 3, 2, 2))]),
    "up_sample2d_bilinear": (lambda x: ops.up_sample2d(x, (3, 2), "bilinear"), [rng.normal(size=(2, 2, 4, 3))]),
    "zero_pad2d": (lambda x: ops.zero_pad2d(x, (1, 0), (2, 3)), [rng.normal(size=(2, 3, 2, 2))]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_resize_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


@pytest.mark.parametrize("size,scale", [(1, 3), (4, 2), (5, 3)])
def test_interpolation_weights_sum_to_one_and_keep_constants(size: int, scale: int) -> None:
    matrix = interpolation_matrix(size, scale)
    assert matrix.shape == (size * scale, size) and (matrix >= 0).all()
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
