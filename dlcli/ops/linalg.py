"""Matrix products on NumPy's @ (BLAS), and the fused affine map that dense layers run on."""

from __future__ import annotations

import numpy as np

from dlcli import activations
from dlcli.activations import Activation, Linear
from dlcli.ops.elementwise import TensorLike, as_tensor_pair, unbroadcast
from dlcli.tensor import Array, Op, Tensor


def _rows_times(a: Array, b: Array) -> Array:
    """a @ b for a (..., k) and a 2-D b (k, n) as one GEMM over a's rows: NumPy's matmul would call BLAS once per
    leading index (a (32, 64, 32) @ (32, 32) made 32 small calls, 100x slower on a busy machine)."""
    if a.ndim <= 2:
        return a @ b
    return (np.ascontiguousarray(a).reshape(-1, a.shape[-1]) @ b).reshape(*a.shape[:-1], b.shape[-1])


class MatMul(Op):
    """a @ b for 2-D matrices and batched stacks (leading axes broadcast as in NumPy)."""

    def forward(self, a: Array, b: Array) -> Array:
        self.a, self.b = a, b
        return _rows_times(a, b) if b.ndim == 2 else a @ b

    def backward(self, d_out: Array) -> tuple[Array | None, Array | None]:
        a, b = self.a, self.b
        if a.ndim == 1 or b.ndim == 1:
            return _vector_matmul_grads(a, b, d_out, self.needs_grad)
        if b.ndim == 2:  # stacked rows of a all meet the same b: one GEMM each way
            d_a = _rows_times(d_out, b.T) if self.needs_grad[0] else None
            d_b = a.reshape(-1, a.shape[-1]).T @ d_out.reshape(-1, d_out.shape[-1]) if self.needs_grad[1] else None
            return d_a, d_b
        d_a = unbroadcast(d_out @ np.swapaxes(b, -1, -2), a.shape) if self.needs_grad[0] else None
        d_b = unbroadcast(np.swapaxes(a, -1, -2) @ d_out, b.shape) if self.needs_grad[1] else None
        return d_a, d_b


def _vector_matmul_grads(
    a: Array, b: Array, d_out: Array, needs: tuple[bool, ...]
) -> tuple[Array | None, Array | None]:
    """Gradients of a @ b when either side is a vector: promote it to a matrix as NumPy does, then undo."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    d2 = d_out.reshape((a2 @ b2).shape)
    d_a = (d2 @ np.swapaxes(b2, -1, -2)) if needs[0] else None
    d_b = (np.swapaxes(a2, -1, -2) @ d2) if needs[1] else None
    if d_a is not None:
        d_a = unbroadcast(d_a, a2.shape).reshape(a.shape)
    if d_b is not None:
        d_b = unbroadcast(d_b, b2.shape).reshape(b.shape)
    return d_a, d_b


class Affine(Op):
    """activation(x @ W + b) in one op: one output array, activated in place, one backward.

    Fusing saves a Python op and two temporaries per dense layer. The activation is a row of the activation
    table: its function runs in place on the output, and its gradient comes from the output, which is all
    the backward keeps (the pre-activation, for a row that needs its input: gelu, silu).
    """

    def __init__(self, activation: type[Activation] = Linear) -> None:
        self.activation = activation

    def forward(self, x: Array, kernel: Array, bias: Array) -> Array:
        self.x, self.kernel = x, kernel
        out = _rows_times(x, kernel)
        out += bias
        if self.activation.from_input:
            self.kept = out
            return self.activation.function(out)
        self.kept = self.activation.function(out, out)
        return self.kept

    def backward(self, d_out: Array) -> tuple[Array | None, Array | None, Array | None]:
        d = self.activation.gradient(self.kept, d_out)
        x, kernel = self.x, self.kernel
        d_x = _rows_times(d, kernel.T) if self.needs_grad[0] else None
        d_kernel = d_bias = None
        if self.needs_grad[1]:
            if x.ndim == 2:
                d_kernel = x.T @ d
            else:  # (batch, ..., in): fold the leading axes into one
                d_kernel = x.reshape(-1, x.shape[-1]).T @ d.reshape(-1, d.shape[-1])
        if self.needs_grad[2]:
            d_bias = d.reshape(-1, d.shape[-1]).sum(axis=0)
        return d_x, d_kernel, d_bias


def matmul(a: TensorLike, b: TensorLike) -> Tensor:
    """a @ b (2-D or batched)."""
    return MatMul.apply(*as_tensor_pair(a, b))


def affine(x: Tensor, kernel: Tensor, bias: Tensor, activation: str | type[Activation] = "linear") -> Tensor:
    """activation(x @ kernel + bias) in one fused op; activation is a name or a row of the activation table.

    Any row computes here; a dense layer fuses only what `activations.fusion` says (sigmoid and softmax stay
    separate ops, so a crossentropy finds their logits).
    """
    row = activations.get(activation) if isinstance(activation, str) else activation
    return Affine.apply(x, kernel, bias) if row is Linear else Affine.apply(x, kernel, bias, activation=row)
