"""The activation table: each activation by the name a spec writes (`activation = "relu"`), with its function on
arrays, its gradient from its output, and its code in the fused kernels.

Each row is also the op that applies the activation on its own (`Relu.apply(x)`, or `relu(x)` beside it). The
dense, conv2d and recurrent ops read the same rows (the function, the gradient, the kernel code), and
`fusion` is the one rule for what a dense or conv layer computes inside its own op; so an activation is
written once, and a new one is one class here. Rows are registered in `registry.activations`, which specs,
`dlcli list activations` and error hints read.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dlcli import registry
from dlcli.tensor import Array, Op, Tensor


class Activation(Op):
    """A row of the activation table, and the op that applies it: y = f(a), its backward computed from y alone.

    `function(a, out, axis)` is f on arrays (into `out` when given; `out` may be `a`); `gradient(y, d_y, axis)`
    is the gradient with respect to a, from the output y and the output's gradient. Elementwise rows ignore
    axis; softmax and log_softmax work along it. A row whose derivative cannot be read off its output (gelu,
    silu: not one-to-one) sets `from_input`: its `gradient` then takes the input a where others take y, and
    whoever applies it keeps a instead of y.
    """

    # the activation's code in the fused kernels (LINEAR, RELU, TANH, SIGMOID in kernels/recurrent.py; the
    # first three in kernels/conv.py); None: no kernel computes it
    code: ClassVar[int | None] = None
    from_input: ClassVar[bool] = False
    axis = -1

    @staticmethod
    def function(a: Array, out: Array | None = None, axis: int = -1) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def gradient(y: Array, d_y: Array, axis: int = -1) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, a: Array) -> Array:
        out = self.function(a, None, self.axis)
        self.kept = a if self.from_input else out  # what `gradient` reads (see from_input)
        return out

    def backward(self, d_out: Array) -> tuple[Array]:
        return (self.gradient(self.kept, d_out, self.axis),)


@registry.activations.register("linear")
class Linear(Activation):
    """Identity: x."""

    code = 0

    @staticmethod
    def function(a: Array, out: Array | None = None, axis: int = -1) -> Array:
        if out is None or out is a:
            return a
        out[...] = a
        return out

    @staticmethod
    def gradient(y: Array, d_y: Array, axis: int = -1) -> Array:
        return d_y


@registry.activations.register("relu")
class Relu(Activation):
    """Rectified linear unit: max(x, 0)."""

    code = 1

    @staticmethod
    def function(a: Array, out: Array | None = None, axis: int = -1) -> Array:
        return np.maximum(a, 0, out=out)

    @staticmethod
    def gradient(y: Array, d_y: Array, axis: int = -1) -> Array:
        return d_y * (y > 0)


@registry.activations.register("tanh")
class Tanh(Activation):
    """Hyperbolic tangent, in (-1, 1)."""

    code = 2

    @staticmethod
    def function(a: Array, out: Array | None = None, axis: int = -1) -> Array:
        return np.tanh(a, out=out)

    @staticmethod
    def gradient(y: Array, d_y: Array, axis: int = -1) -> Array:
        return d_y * (1 - y * y)


@registry.activations.register("sigmoid")
class Sigmoid(Activation):
    """Logistic function 1 / (1 + e^-x), for binary probabilities."""

    code = 3
    links_input = True  # binary_crossentropy works from the logits

    @staticmethod
    def function(a: Array, out: Array | None = None, axis: int = -1) -> Array:
        # exp(-log(1 + e^-a)): logaddexp never overflows, and four in-place passes beat the branchy two-case
        # formula (which needs about nine array passes)
        out = np.negative(a, out=out)
        np.logaddexp(0, out, out=out)
        np.negative(out, out=out)
        return np.exp(out, out=out)

    @staticmethod
    def gradient(y: Array, d_y: Array, axis: int = -1) -> Array:
        return d_y * y * (1 - y)


@registry.activations.register("softmax")
class Softmax(Activation):
    """Normalized exponentials over the last axis: class probabilities."""

    links_input = True  # the categorical crossentropies and ctc work from the logits

    def __init__(self, axis: int = -1) -> None:
        self.axis = axis

    @staticmethod
    def function(a: Array, out: Array | None = None, axis: int = -1) -> Array:
        # shifted by the maximum, so exp never overflows
        e = np.subtract(a, a.max(axis=axis, keepdims=True), out=out)
        np.exp(e, out=e)
        e /= e.sum(axis=axis, keepdims=True)
        return e

    @staticmethod
    def gradient(y: Array, d_y: Array, axis: int = -1) -> Array:
        return y * (d_y - (d_y * y).sum(axis=axis, keepdims=True))


@registry.activations.register("log_softmax")
class LogSoftmax(Activation):
    """Logarithm of softmax over the last axis, computed stably."""

    def __init__(self, axis: int = -1) -> None:
        self.axis = axis

    @staticmethod
    def function(a: Array, out: Array | None = None, axis: int = -1) -> Array:
        # a - max - log(sum(exp(a - max))): finite even for logits of +-1e4, never forming softmax's small values
        shifted = np.subtract(a, a.max(axis=axis, keepdims=True), out=out)
        shifted -= np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        return shifted

    @staticmethod
    def gradient(y: Array, d_y: Array, axis: int = -1) -> Array:
        return d_y - np.exp(y) * d_y.sum(axis=axis, keepdims=True)


@registry.activations.register("gelu")
class Gelu(Activation):
    """Gaussian error linear unit, exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))) (Keras' approximate=False)."""

    from_input = True

    @staticmethod
    def function(a: Array, out: Array | None = None, axis: int = -1) -> Array:
        from scipy.special import erfc  # here, so that specs validate without loading scipy

        # Phi(x) = erfc(-x / sqrt(2)) / 2: 1 + erf(x / sqrt(2)) loses every digit to cancellation for x << 0
        cdf = erfc(a * np.asarray(-_SQRT_HALF, a.dtype))
        cdf *= 0.5
        return np.multiply(a, cdf, out=out)

    @staticmethod
    def gradient(a: Array, d_y: Array, axis: int = -1) -> Array:
        from scipy.special import erfc

        # Phi(x) + x phi(x), phi the standard normal density
        cdf = 0.5 * erfc(a * np.asarray(-_SQRT_HALF, a.dtype))
        density = np.exp(-0.5 * a * a) * np.asarray(_INV_SQRT_2PI, a.dtype)
        return d_y * (cdf + a * density)


@registry.activations.register("gelu_approximate")
class GeluApproximate(Activation):
    """GELU by its tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (Keras' approximate=True)."""

    from_input = True

    @staticmethod
    def function(a: Array, out: Array | None = None, axis: int = -1) -> Array:
        inner = np.tanh(np.asarray(_SQRT_2_OVER_PI, a.dtype) * (a + np.asarray(0.044715, a.dtype) * a * a * a))
        inner += 1
        inner *= 0.5
        return np.multiply(a, inner, out=out)

    @staticmethod
    def gradient(a: Array, d_y: Array, axis: int = -1) -> Array:
        c = np.asarray(_SQRT_2_OVER_PI, a.dtype)
        t = np.tanh(c * (a + np.asarray(0.044715, a.dtype) * a * a * a))
        d_inner = c * (1 + np.asarray(3 * 0.044715, a.dtype) * a * a)
        return d_y * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * d_inner)


@registry.activations.register("silu", aliases=("swish",))
class Silu(Activation):
    """Sigmoid linear unit x * sigmoid(x), also called swish (Keras' silu and swish)."""

    from_input = True

    @staticmethod
    def function(a: Array, out: Array | None = None, axis: int = -1) -> Array:
        return np.multiply(a, Sigmoid.function(a), out=out)

    @staticmethod
    def gradient(a: Array, d_y: Array, axis: int = -1) -> Array:
        s = Sigmoid.function(a)
        return d_y * s * (1 + a * (1 - s))


_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
_SQRT_2_OVER_PI = 0.7978845608028654


def relu(a: Tensor) -> Tensor:
    """max(a, 0)."""
    return Relu.apply(a)


def sigmoid(a: Tensor) -> Tensor:
    """1 / (1 + e^-a); the result names its logits for the crossentropies (see `logits_of`)."""
    return Sigmoid.apply(a)


def tanh(a: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return Tanh.apply(a)


def softmax(a: Tensor, axis: int = -1) -> Tensor:
    """Normalized exponentials over an axis; over the last axis the result names its logits (see `logits_of`)."""
    return Softmax.apply(a) if axis == -1 else Softmax.apply(a, axis=axis)


def log_softmax(a: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(a)), stable."""
    return LogSoftmax.apply(a) if axis == -1 else LogSoftmax.apply(a, axis=axis)


def get(name: str) -> type[Activation]:
    """The row of the activation registered as `name`."""
    return registry.activations.get(name)


def apply(name: str, x: Tensor) -> Tensor:
    """x through the activation registered as `name`."""
    row = get(name)
    return x if row is Linear else row.apply(x)


def fusable(row: type[Activation]) -> bool:
    """Whether a dense or conv op computes this activation in its own pass: the fused kernels have a code for it,
    and no crossentropy reads its output back for the logits (sigmoid and softmax stay separate ops)."""
    return row.code is not None and not row.links_input


def fusable_names() -> list[str]:
    """The names of the activations a dense or conv op computes itself, in the table's order."""
    return [entry.name for entry in registry.activations if fusable(entry.target)]


def fusion(name: str) -> tuple[type[Activation], type[Activation] | None]:
    """(what a dense or conv op computes itself, the activation to apply after it, or None): the one fusion rule."""
    row = get(name)
    return (row, None) if fusable(row) else (Linear, row)


def logits_of(output: Tensor, name: str) -> Tensor | None:
    """The input of the activation `name` (over the last axis) that made `output`, or None when something else did.

    A crossentropy given probabilities that a softmax or sigmoid just made works from their logits, as Keras
    does with `_keras_logits`: the value is exact and the gradient p - y. The link is the output's own op,
    which these two activations keep even where nothing is recorded (see Op.links_input).
    """
    op = output.op
    if type(op) is not get(name) or op.axis not in (-1, output.ndim - 1):
        return None
    return op.inputs[0]
