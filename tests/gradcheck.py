"""Finite-difference gradient checks in float64, shared by the op, layer and loss tests."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from dlcli.tensor import SparseRows, Tensor


def numeric_grad(loss: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of loss at x, one entry at a time; x itself is left untouched."""
    grad, step = np.zeros_like(x), np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step[i] = eps
        grad[i] = (loss(x + step) - loss(x - step)) / (2 * eps)
        step[i] = 0.0
    return grad


def dense_grad(t: Tensor) -> np.ndarray | None:
    """t.grad as a dense array: a SparseRows gradient (an embedding table's) is densified."""
    return t.grad.to_dense() if isinstance(t.grad, SparseRows) else t.grad


def check_op_gradients(fn: Callable[..., Tensor], inputs: Sequence[np.ndarray], rtol: float = 1e-5,
                       atol: float = 1e-8, seed: int = 0) -> None:
    """Gradients of sum(fn(*inputs) * w), for random w, against central differences, for every float input.

    Integer or boolean inputs are passed as constants (indices, labels, conditions).
    """
    w = None
    tensors = [Tensor(a.copy(), requires_grad=a.dtype.kind == "f") for a in inputs]
    out = fn(*tensors)
    w = np.random.default_rng(seed).normal(size=out.shape)
    (out * Tensor(w)).sum().backward()
    for i, a in enumerate(inputs):
        if a.dtype.kind != "f":
            continue

        def loss(v: np.ndarray, i: int = i) -> float:
            args = [Tensor(v if j == i else b) for j, b in enumerate(inputs)]
            return float((fn(*args).data * w).sum())

        expected = numeric_grad(loss, a)
        grad = dense_grad(tensors[i])
        assert grad is not None, f"input {i} got no gradient"
        assert grad.shape == a.shape, f"input {i}: gradient shape {grad.shape} != {a.shape}"
        np.testing.assert_allclose(grad, expected, rtol=rtol, atol=atol, err_msg=f"input {i}")


def check_param_gradients(forward: Callable[[], Tensor], params: Sequence[Tensor], rtol: float = 1e-5,
                          atol: float = 1e-8, seed: int = 0) -> None:
    """Gradients of sum(forward() * w) with respect to float64 parameter tensors, against central differences."""
    for p in params:
        p.grad = None
    out = forward()
    w = np.random.default_rng(seed).normal(size=out.shape)
    (out * Tensor(w)).sum().backward()
    for p in params:
        original = p.data.copy()

        def loss(v: np.ndarray, p: Tensor = p) -> float:
            p.data[...] = v
            return float((forward().data * w).sum())

        expected = numeric_grad(loss, original)
        p.data[...] = original
        grad = dense_grad(p)
        assert grad is not None, f"{p.name} got no gradient"
        np.testing.assert_allclose(grad, expected, rtol=rtol, atol=atol, err_msg=str(p.name))
