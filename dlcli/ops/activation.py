"""Activation functions as ops; sigmoid, tanh and softmax keep their output, whose derivative is cheap."""

from __future__ import annotations

import numpy as np

from dlcli.tensor import Array, Op


class Relu(Op):
    """max(a, 0)."""

    def forward(self, a: Array) -> Array:
        self.out = np.maximum(a, 0)
        return self.out

    def backward(self, d_out: Array) -> tuple[Array]:
        return (d_out * (self.out > 0),)


def stable_sigmoid(a: Array) -> Array:
    """1 / (1 + e^-a) as exp(-log(1 + e^-a)): logaddexp never overflows, and four in-place passes beat
    the branchy two-case formula (which needs about nine array passes)."""
    out = np.negative(a)
    np.logaddexp(0, out, out=out)
    np.negative(out, out=out)
    return np.exp(out, out=out)


class Sigmoid(Op):
    """1 / (1 + e^-a), stable for large |a|."""

    def forward(self, a: Array) -> Array:
        self.out = stable_sigmoid(a)
        return self.out

    def backward(self, d_out: Array) -> tuple[Array]:
        return (d_out * self.out * (1 - self.out),)


class Tanh(Op):
    """Hyperbolic tangent."""

    def forward(self, a: Array) -> Array:
        self.out = np.tanh(a)
        return self.out

    def backward(self, d_out: Array) -> tuple[Array]:
        return (d_out * (1 - self.out * self.out),)


def stable_softmax(a: Array, axis: int) -> Array:
    """softmax over `axis`, shifted by the max so exp never overflows."""
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def stable_log_softmax(a: Array, axis: int) -> Array:
    """log(softmax(a)) as a - max - log(sum(exp(a - max))): finite even for logits of +-1e4."""
    shifted = a - a.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


class Softmax(Op):
    """exp(a) / sum(exp(a)) over an axis (the last by default)."""

    def __init__(self, axis: int = -1) -> None:
        self.axis = axis

    def forward(self, a: Array) -> Array:
        self.out = stable_softmax(a, self.axis)
        return self.out

    def backward(self, d_out: Array) -> tuple[Array]:
        s = self.out
        return (s * (d_out - (d_out * s).sum(axis=self.axis, keepdims=True)),)


class LogSoftmax(Op):
    """log(softmax(a)) over an axis, computed without forming softmax's small values."""

    def __init__(self, axis: int = -1) -> None:
        self.axis = axis

    def forward(self, a: Array) -> Array:
        self.out = stable_log_softmax(a, self.axis)
        return self.out

    def backward(self, d_out: Array) -> tuple[Array]:
        return (d_out - np.exp(self.out) * d_out.sum(axis=self.axis, keepdims=True),)
