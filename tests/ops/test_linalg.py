"""Matrix products and the fused affine op."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(3)


def _n(*shape: int) -> np.ndarray:
    return rng.normal(size=shape)


CASES = {
    "matmul": (ops.matmul, [_n(3, 4), _n(4, 5)]),
    "matmul_batched": (ops.matmul, [_n(2, 3, 4), _n(2, 4, 5)]),
    "matmul_batched_shared_rhs": (ops.matmul, [_n(2, 3, 4), _n(4, 5)]),
    "matmul_broadcast_lhs": (ops.matmul, [_n(3, 4), _n(2, 4, 5)]),
    "matmul_vector_rhs": (ops.matmul, [_n(3, 4), _n(4)]),
    "matmul_vector_lhs": (ops.matmul, [_n(4), _n(4, 5)]),
    "affine": (ops.affine, [_n(3, 4), _n(4, 5), _n(5)]),
    "affine_relu": (lambda x, w, b: ops.affine(x, w, b, "relu"), [_n(3, 4), _n(4, 5), _n(5) + 0.05]),
    "affine_sigmoid": (lambda x, w, b: ops.affine(x, w, b, "sigmoid"), [_n(3, 4), _n(4, 5), _n(5)]),
    "affine_tanh": (lambda x, w, b: ops.affine(x, w, b, "tanh"), [_n(3, 4), _n(4, 5), _n(5)]),
    "affine_sequence": (ops.affine, [_n(2, 3, 4), _n(4, 5), _n(5)]),
    # gelu's gradient needs the pre-activation, which the fused op keeps instead of its output
    "affine_gelu": (lambda x, w, b: ops.affine(x, w, b, "gelu"), [_n(3, 4), _n(4, 5), _n(5)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_linalg_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


def test_affine_skips_the_input_gradient_when_the_input_needs_none() -> None:
    x, w, b = Tensor(_n(3, 4)), Tensor(_n(4, 2), requires_grad=True), Tensor(_n(2), requires_grad=True)
    out = ops.affine(x, w, b, "relu")
    assert out.op.needs_grad == (False, True, True)
    assert out.op.backward(np.ones((3, 2)))[0] is None


def test_matmul_matches_numpy() -> None:
    a, b = _n(2, 3, 4).astype(np.float32), _n(4, 5).astype(np.float32)
    np.testing.assert_allclose((Tensor(a) @ Tensor(b)).data, a @ b, rtol=1e-6)
