"""Elementwise arithmetic with NumPy broadcasting; gradients are summed back to each operand's shape."""

from __future__ import annotations

import numpy as np

from dlcli.tensor import Array, Op, Tensor

TensorLike = Tensor | np.ndarray | float | int


def unbroadcast(grad: Array, shape: tuple[int, ...]) -> Array:
    """Sum `grad` over the axes that broadcasting added or stretched, so it has `shape` again."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    summed = grad.sum(axis=axes, keepdims=True) if axes else grad
    return summed.reshape(shape)


class Add(Op):
    """a + b."""

    def forward(self, a: Array, b: Array) -> Array:
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, d_out: Array) -> tuple[Array, Array]:
        return unbroadcast(d_out, self.shapes[0]), unbroadcast(d_out, self.shapes[1])


class Sub(Op):
    """a - b."""

    def forward(self, a: Array, b: Array) -> Array:
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, d_out: Array) -> tuple[Array, Array | None]:
        d_b = unbroadcast(-d_out, self.shapes[1]) if self.needs_grad[1] else None
        return unbroadcast(d_out, self.shapes[0]), d_b


class Mul(Op):
    """a * b."""

    def forward(self, a: Array, b: Array) -> Array:
        self.a, self.b = a, b
        return a * b

    def backward(self, d_out: Array) -> tuple[Array | None, Array | None]:
        d_a = unbroadcast(d_out * self.b, self.a.shape) if self.needs_grad[0] else None
        d_b = unbroadcast(d_out * self.a, self.b.shape) if self.needs_grad[1] else None
        return d_a, d_b


class Div(Op):
    """a / b."""

    def forward(self, a: Array, b: Array) -> Array:
        self.a, self.b = a, b
        return a / b

    def backward(self, d_out: Array) -> tuple[Array | None, Array | None]:
        d_a = unbroadcast(d_out / self.b, self.a.shape) if self.needs_grad[0] else None
        d_b = unbroadcast(-d_out * self.a / (self.b * self.b), self.b.shape) if self.needs_grad[1] else None
        return d_a, d_b


class Neg(Op):
    """-a."""

    def forward(self, a: Array) -> Array:
        return -a

    def backward(self, d_out: Array) -> tuple[Array]:
        return (-d_out,)


class Pow(Op):
    """a ** b (b a tensor or a constant); the gradient in b needs a > 0."""

    def forward(self, a: Array, b: Array) -> Array:
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    def backward(self, d_out: Array) -> tuple[Array | None, Array | None]:
        d_a = d_b = None
        if self.needs_grad[0]:
            d_a = unbroadcast(d_out * self.b * self.a ** (self.b - 1), self.a.shape)
        if self.needs_grad[1]:
            d_b = unbroadcast(d_out * self.out * np.log(self.a), self.b.shape)
        return d_a, d_b


class Exp(Op):
    """e ** a."""

    def forward(self, a: Array) -> Array:
        self.out = np.exp(a)
        return self.out

    def backward(self, d_out: Array) -> tuple[Array]:
        return (d_out * self.out,)


class Log(Op):
    """Natural logarithm."""

    def forward(self, a: Array) -> Array:
        self.a = a
        return np.log(a)

    def backward(self, d_out: Array) -> tuple[Array]:
        return (d_out / self.a,)


class Sqrt(Op):
    """Square root."""

    def forward(self, a: Array) -> Array:
        self.out = np.sqrt(a)
        return self.out

    def backward(self, d_out: Array) -> tuple[Array]:
        return (d_out / (2 * self.out),)


class Abs(Op):
    """|a|; the gradient at 0 is 0, as in Keras and PyTorch."""

    def forward(self, a: Array) -> Array:
        self.a = a
        return np.abs(a)

    def backward(self, d_out: Array) -> tuple[Array]:
        return (d_out * np.sign(self.a),)


class _Pick(Op):
    """Elementwise choice between a and b; the gradient goes to whichever was picked (a, on a tie)."""

    def pick(self, a: Array, b: Array) -> tuple[Array, Array]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, a: Array, b: Array) -> Array:
        self.shapes = a.shape, b.shape
        out, self.a_wins = self.pick(a, b)
        return out

    def backward(self, d_out: Array) -> tuple[Array, Array]:
        return (unbroadcast(np.where(self.a_wins, d_out, 0), self.shapes[0]),
                unbroadcast(np.where(self.a_wins, 0, d_out), self.shapes[1]))


class Maximum(_Pick):
    """Elementwise max(a, b); a tie sends the gradient to a."""

    def pick(self, a: Array, b: Array) -> tuple[Array, Array]:
        return np.maximum(a, b), a >= b


class Minimum(_Pick):
    """Elementwise min(a, b); a tie sends the gradient to a."""

    def pick(self, a: Array, b: Array) -> tuple[Array, Array]:
        return np.minimum(a, b), a <= b


class Clip(Op):
    """a limited to [low, high]; the gradient passes only where a was inside (bounds included), as in TF."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def forward(self, a: Array) -> Array:
        self.inside = (a >= self.low) & (a <= self.high)
        return np.clip(a, self.low, self.high)

    def backward(self, d_out: Array) -> tuple[Array]:
        return (np.where(self.inside, d_out, 0).astype(d_out.dtype, copy=False),)


class Where(Op):
    """condition ? a : b, with a boolean condition array that has no gradient."""

    def forward(self, condition: Array, a: Array, b: Array) -> Array:
        self.condition = condition.astype(bool, copy=False)
        self.shapes = a.shape, b.shape
        return np.where(self.condition, a, b)

    def backward(self, d_out: Array) -> tuple[None, Array, Array]:
        zero = np.zeros((), d_out.dtype)
        return (None, unbroadcast(np.where(self.condition, d_out, zero), self.shapes[0]),
                unbroadcast(np.where(self.condition, zero, d_out), self.shapes[1]))


def as_tensor(value: TensorLike, like: Tensor | None = None) -> Tensor:
    """A constant tensor for a number or an array; a number takes `like`'s dtype so float32 stays float32."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return Tensor(value)
    return Tensor(np.asarray(value, dtype=like.dtype if like is not None else np.float32))


def as_tensor_pair(a: TensorLike, b: TensorLike) -> tuple[Tensor, Tensor]:
    """Both operands of a binary op as tensors; a number takes the other operand's dtype."""
    ta = a if isinstance(a, Tensor) else None
    tb = b if isinstance(b, Tensor) else None
    return as_tensor(a, tb), as_tensor(b, ta)


def add(a: TensorLike, b: TensorLike) -> Tensor:
    """a + b, broadcasting."""
    return Add.apply(*as_tensor_pair(a, b))


def sub(a: TensorLike, b: TensorLike) -> Tensor:
    """a - b, broadcasting."""
    return Sub.apply(*as_tensor_pair(a, b))


def mul(a: TensorLike, b: TensorLike) -> Tensor:
    """a * b, broadcasting."""
    return Mul.apply(*as_tensor_pair(a, b))


def div(a: TensorLike, b: TensorLike) -> Tensor:
    """a / b, broadcasting."""
    return Div.apply(*as_tensor_pair(a, b))


def pow(a: TensorLike, b: TensorLike) -> Tensor:  # noqa: A001 - the op's name
    """a ** b, broadcasting."""
    return Pow.apply(*as_tensor_pair(a, b))


def neg(a: Tensor) -> Tensor:
    """-a."""
    return Neg.apply(a)


def exp(a: Tensor) -> Tensor:
    """e ** a."""
    return Exp.apply(a)


def log(a: Tensor) -> Tensor:
    """Natural logarithm."""
    return Log.apply(a)


def sqrt(a: Tensor) -> Tensor:
    """Square root."""
    return Sqrt.apply(a)


def abs(a: Tensor) -> Tensor:  # noqa: A001 - the op's name
    """|a|."""
    return Abs.apply(a)


def maximum(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise max."""
    return Maximum.apply(*as_tensor_pair(a, b))


def minimum(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise min."""
    return Minimum.apply(*as_tensor_pair(a, b))


def clip(a: Tensor, low: float, high: float) -> Tensor:
    """a limited to [low, high]."""
    return Clip.apply(a, low=low, high=high)


def where(condition: np.ndarray | Tensor, a: TensorLike, b: TensorLike) -> Tensor:
    """condition ? a : b."""
    cond = condition if isinstance(condition, Tensor) else Tensor(np.asarray(condition))
    return Where.apply(cond, *as_tensor_pair(a, b))
