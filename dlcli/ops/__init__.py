"""The op functions on tensors, and Tensor's operators (+, -, *, /, @, **, [], .sum(), ...) bound to them."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from dlcli.ops.activation import LogSoftmax, Relu, Sigmoid, Softmax, Tanh
from dlcli.ops.augment import AffineResample, FlipImages
from dlcli.ops.dropout import Dropout
from dlcli.ops.elementwise import (
    Abs, Add, Clip, Div, Exp, Log, Maximum, Minimum, Mul, Neg, Pow, Sqrt, Sub, Where,
)
from dlcli.ops.conv import Conv2D, ConvGeometry
from dlcli.ops.linalg import Affine, MatMul
from dlcli.ops.loss import CTCLoss, SigmoidBinaryCrossEntropy, SoftmaxCrossEntropy, SparseSoftmaxCrossEntropy
from dlcli.ops.normalization import BatchNormalization
from dlcli.ops.pool import AveragePool, MaxPool
from dlcli.ops.reduce import Max, Mean, Sum
from dlcli.ops.recurrent import GRU, LSTM, RecurrentOptions, SimpleRNN
from dlcli.ops.shape import Concatenate, Gather, GetItem, Reshape, TakeRows, Transpose
from dlcli.tensor import Tensor

__all__ = [
    "affine_resample", "average_pool1d", "average_pool2d", "batch_normalization", "flip_images", "max_pool1d",
    "max_pool2d",
    "abs", "add", "affine", "clip", "concatenate", "conv2d", "ctc_loss", "div", "dropout", "exp", "gather", "getitem",
    "log",
    "log_softmax", "matmul", "max", "maximum", "mean", "minimum", "mul", "neg", "pow", "relu", "reshape",
    "sigmoid", "sigmoid_binary_crossentropy", "softmax", "softmax_crossentropy", "sparse_softmax_crossentropy",
    "split", "sqrt", "sub", "sum", "take_rows", "tanh", "transpose", "where",
    "gru", "lstm", "simple_rnn",
]

TensorLike = Tensor | np.ndarray | float | int


def as_tensor(value: TensorLike, like: Tensor | None = None) -> Tensor:
    """A constant tensor for a number or an array; a number takes `like`'s dtype so float32 stays float32."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return Tensor(value)
    return Tensor(np.asarray(value, dtype=like.dtype if like is not None else np.float32))


def _pair(a: TensorLike, b: TensorLike) -> tuple[Tensor, Tensor]:
    ta = a if isinstance(a, Tensor) else None
    tb = b if isinstance(b, Tensor) else None
    return as_tensor(a, tb), as_tensor(b, ta)


def add(a: TensorLike, b: TensorLike) -> Tensor:
    """a + b, broadcasting."""
    return Add.apply(*_pair(a, b))


def sub(a: TensorLike, b: TensorLike) -> Tensor:
    """a - b, broadcasting."""
    return Sub.apply(*_pair(a, b))


def mul(a: TensorLike, b: TensorLike) -> Tensor:
    """a * b, broadcasting."""
    return Mul.apply(*_pair(a, b))


def div(a: TensorLike, b: TensorLike) -> Tensor:
    """a / b, broadcasting."""
    return Div.apply(*_pair(a, b))


def pow(a: TensorLike, b: TensorLike) -> Tensor:  # noqa: A001 - the op's name
    """a ** b, broadcasting."""
    return Pow.apply(*_pair(a, b))


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
    return Maximum.apply(*_pair(a, b))


def minimum(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise min."""
    return Minimum.apply(*_pair(a, b))


def clip(a: Tensor, low: float, high: float) -> Tensor:
    """a limited to [low, high]."""
    return Clip.apply(a, low=low, high=high)


def where(condition: np.ndarray | Tensor, a: TensorLike, b: TensorLike) -> Tensor:
    """condition ? a : b."""
    cond = condition if isinstance(condition, Tensor) else Tensor(np.asarray(condition))
    return Where.apply(cond, *_pair(a, b))


def matmul(a: TensorLike, b: TensorLike) -> Tensor:
    """a @ b (2-D or batched)."""
    return MatMul.apply(*_pair(a, b))


def affine(x: Tensor, kernel: Tensor, bias: Tensor, activation: str = "linear") -> Tensor:
    """activation(x @ kernel + bias) in one fused op; activation is linear, relu, sigmoid or tanh."""
    return Affine.apply(x, kernel, bias, activation=activation)


def conv2d(x: Tensor, kernel: Tensor, bias: Tensor, geometry: ConvGeometry, activation: str = "linear") -> Tensor:
    """activation(conv2d(x, kernel) + bias), channels-last x (N, H, W, C), kernel (kh, kw, C, F)."""
    return Conv2D.apply(x, kernel, bias, geometry=geometry, activation=activation)


def sum(a: Tensor, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum over axes."""
    return Sum.apply(a, axis=axis, keepdims=keepdims)


def mean(a: Tensor, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    """Mean over axes."""
    return Mean.apply(a, axis=axis, keepdims=keepdims)


def max(a: Tensor, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Maximum over axes."""
    return Max.apply(a, axis=axis, keepdims=keepdims)


def reshape(a: Tensor, shape: Sequence[int]) -> Tensor:
    """The same values in a new shape."""
    return Reshape.apply(a, shape=tuple(shape))


def transpose(a: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    """Axes permuted (reversed by default)."""
    return Transpose.apply(a, axes=None if axes is None else tuple(axes))


def concatenate(tensors: Sequence[Tensor], axis: int = -1) -> Tensor:
    """Tensors joined along an axis."""
    return Concatenate.apply(*tensors, axis=axis)


def getitem(a: Tensor, index: Any) -> Tensor:
    """a[index]: slices, integers, integer or boolean arrays."""
    if isinstance(index, Tensor):
        index = index.data
    return GetItem.apply(a, index=index)


def split(a: Tensor, sections: int | Sequence[int], axis: int = -1) -> list[Tensor]:
    """a cut along `axis` into equal parts (an int) or at the given indices, as np.split does."""
    size = a.shape[axis]
    if isinstance(sections, int):
        if size % sections:
            raise ValueError(f"axis of size {size} does not split into {sections} equal parts")
        bounds = list(range(0, size + 1, size // sections))
    else:
        bounds = [0, *sections, size]
    axis = axis % a.ndim
    lead = (slice(None),) * axis
    return [getitem(a, (*lead, slice(lo, hi))) for lo, hi in zip(bounds[:-1], bounds[1:])]


def gather(a: Tensor, indices: np.ndarray, axis: int = 0) -> Tensor:
    """np.take(a, indices, axis): rows (or entries along `axis`) picked by integer indices."""
    return Gather.apply(a, Tensor(np.asarray(indices)), axis=axis)


def take_rows(table: Tensor, ids: np.ndarray | Tensor) -> Tensor:
    """table[ids]: rows of a 2-D table at integer ids of any shape; the table's gradient is SparseRows."""
    return TakeRows.apply(table, ids if isinstance(ids, Tensor) else Tensor(np.asarray(ids)))


def _recurrent(op: type, x: Tensor, kernel: Tensor, recurrent_kernel: Tensor, bias: Tensor | None,
               options: RecurrentOptions, mask: np.ndarray | None, input_dropout: np.ndarray | None,
               recurrent_dropout: np.ndarray | None, initial_state: Sequence[Tensor] = (),
               with_cell: bool = False) -> Tensor:
    inputs = (x, kernel, recurrent_kernel) if bias is None else (x, kernel, recurrent_kernel, bias)
    return op.apply(*inputs, *initial_state, options=options, mask=mask, input_dropout=input_dropout,
                    recurrent_dropout=recurrent_dropout, has_bias=bias is not None,
                    initial_states=len(initial_state), with_cell=with_cell)


def simple_rnn(x: Tensor, kernel: Tensor, recurrent_kernel: Tensor, bias: Tensor | None = None,
               options: RecurrentOptions = RecurrentOptions(), mask: np.ndarray | None = None,
               input_dropout: np.ndarray | None = None, recurrent_dropout: np.ndarray | None = None,
               initial_state: Sequence[Tensor] = ()) -> Tensor:
    """A simple RNN over x (N, T, F): kernel (F, U), recurrent_kernel (U, U), bias (U,), Keras' layout.

    mask (N, T) is True where a step holds data (masked steps keep the state); input_dropout (1, N, F) and
    recurrent_dropout (1, N, U) are scaled keep-masks used at every step; initial_state: [h0 (N, U)], else zeros.
    Returns (N, U) or (N, T, U).
    """
    return _recurrent(SimpleRNN, x, kernel, recurrent_kernel, bias, options, mask, input_dropout, recurrent_dropout,
                      initial_state)


def lstm(x: Tensor, kernel: Tensor, recurrent_kernel: Tensor, bias: Tensor | None = None,
         options: RecurrentOptions = RecurrentOptions(), mask: np.ndarray | None = None,
         input_dropout: np.ndarray | None = None, recurrent_dropout: np.ndarray | None = None,
         initial_state: Sequence[Tensor] = (), with_cell: bool = False) -> Tensor:
    """An LSTM over x (N, T, F): kernel (F, 4U), recurrent_kernel (U, 4U), bias (4U,), gates i, f, c, o.

    Masks as for simple_rnn, with one dropout mask per gate (4, N, ...) or, for the input, one for all (1, N, F).
    initial_state: [h0, c0], else zeros. with_cell appends the final cell state as one more step of the output
    ((N, T + 1, U) with return_sequences, else (N, 2, U)).
    """
    return _recurrent(LSTM, x, kernel, recurrent_kernel, bias, options, mask, input_dropout, recurrent_dropout,
                      initial_state, with_cell)


def gru(x: Tensor, kernel: Tensor, recurrent_kernel: Tensor, bias: Tensor | None = None,
        options: RecurrentOptions = RecurrentOptions(), mask: np.ndarray | None = None,
        input_dropout: np.ndarray | None = None, recurrent_dropout: np.ndarray | None = None,
        initial_state: Sequence[Tensor] = ()) -> Tensor:
    """A GRU over x (N, T, F): kernel (F, 3U), recurrent_kernel (U, 3U), gates z, r, h; bias (2, 3U) with
    options.reset_after (input and recurrent bias, PyTorch's GRU), else (3U,). Masks as for lstm (3 gates);
    initial_state: [h0 (N, U)], else zeros."""
    return _recurrent(GRU, x, kernel, recurrent_kernel, bias, options, mask, input_dropout, recurrent_dropout,
                      initial_state)


def _two(value: int | Sequence[int]) -> tuple[int, int]:
    """A (height, width) pair from one int for both or from a pair."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def max_pool2d(x: Tensor, pool_size: int | Sequence[int] = 2, strides: int | Sequence[int] | None = None,
               padding: str = "valid") -> Tensor:
    """Channels-last images (N, H, W, C): the maximum of each window; strides default to pool_size."""
    return MaxPool.apply(x, pool_size=_two(pool_size), strides=_two(pool_size if strides is None else strides),
                         padding=padding)


def max_pool1d(x: Tensor, pool_size: int = 2, strides: int | None = None, padding: str = "valid") -> Tensor:
    """Channels-last sequences (N, steps, C): the maximum of each window; strides default to pool_size."""
    return MaxPool.apply(x, pool_size=(1, pool_size), strides=(1, strides or pool_size), padding=padding)


def average_pool2d(x: Tensor, pool_size: int | Sequence[int] = 2, strides: int | Sequence[int] | None = None,
                   padding: str = "valid") -> Tensor:
    """Channels-last images (N, H, W, C): the mean of each window ("same": of its cells inside the image)."""
    return AveragePool.apply(x, pool_size=_two(pool_size),
                             strides=_two(pool_size if strides is None else strides), padding=padding)


def average_pool1d(x: Tensor, pool_size: int = 2, strides: int | None = None, padding: str = "valid") -> Tensor:
    """Channels-last sequences (N, steps, C): the mean of each window ("same": of its cells inside)."""
    return AveragePool.apply(x, pool_size=(1, pool_size), strides=(1, strides or pool_size), padding=padding)


def batch_normalization(x: Tensor, gamma: Tensor, beta: Tensor, axis: int = -1,
                        epsilon: float = 1e-3) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """Training-mode batch normalization over every axis but `axis`: (output, batch mean, biased batch variance).

    gamma and beta have one entry per channel; the statistics are returned for a layer's moving averages.
    """
    moments: list[np.ndarray] = []  # the op fills it: Op.apply hands back only the output
    out = BatchNormalization.apply(x, gamma, beta, axis=axis, epsilon=epsilon, moments=moments)
    return out, moments[0], moments[1]


def relu(a: Tensor) -> Tensor:
    """max(a, 0)."""
    return Relu.apply(a)


def sigmoid(a: Tensor) -> Tensor:
    """1 / (1 + e^-a); the result remembers its logits for the crossentropies."""
    out = Sigmoid.apply(a)
    out.logits, out.logits_kind = a, "sigmoid"
    return out


def tanh(a: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return Tanh.apply(a)


def softmax(a: Tensor, axis: int = -1) -> Tensor:
    """Normalized exponentials over an axis; over the last axis the result remembers its logits."""
    out = Softmax.apply(a, axis=axis)
    if axis in (-1, a.ndim - 1):
        out.logits, out.logits_kind = a, "softmax"
    return out


def log_softmax(a: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(a)), stable."""
    return LogSoftmax.apply(a, axis=axis)


def dropout(a: Tensor, rate: float, rng: np.random.Generator) -> Tensor:
    """Inverted dropout with a mask from `rng`; rate 0 returns a unchanged."""
    return a if rate <= 0 else Dropout.apply(a, rate=rate, rng=rng)


def flip_images(images: Tensor, horizontal: np.ndarray, vertical: np.ndarray) -> Tensor:
    """Channels-last images (N, H, W, C), image n reversed along width if horizontal[n], height if vertical[n]."""
    return FlipImages.apply(images, horizontal=np.asarray(horizontal, bool), vertical=np.asarray(vertical, bool))


def affine_resample(images: Tensor, matrices: np.ndarray, interpolation: str = "bilinear",
                    fill_mode: str = "reflect", fill_value: float = 0.0) -> Tensor:
    """Channels-last images (N, H, W, C), each output pixel (x, y) of image n read at matrices[n] @ (x, y, 1).

    interpolation is nearest or bilinear; fill_mode (constant, reflect, nearest, wrap) says what lies outside.
    """
    return AffineResample.apply(images, matrices=matrices, interpolation=interpolation, fill_mode=fill_mode,
                                fill_value=fill_value)


# weights (optional, for the three below): each position's share of the loss, summing to 1; None is the mean
def softmax_crossentropy(logits: Tensor, targets: np.ndarray, weights: np.ndarray | None = None) -> Tensor:
    """Mean crossentropy of softmax(logits) against one-hot (or soft) targets; gradient p - y."""
    return SoftmaxCrossEntropy.apply(logits, Tensor(targets), weights=weights)


def sparse_softmax_crossentropy(logits: Tensor, labels: np.ndarray, weights: np.ndarray | None = None) -> Tensor:
    """Mean crossentropy of softmax(logits) against integer labels; gradient p - onehot."""
    return SparseSoftmaxCrossEntropy.apply(logits, Tensor(labels), weights=weights)


def sigmoid_binary_crossentropy(logits: Tensor, targets: np.ndarray, weights: np.ndarray | None = None) -> Tensor:
    """Mean binary crossentropy of sigmoid(logits) against 0/1 (or soft) targets; gradient s - y."""
    return SigmoidBinaryCrossEntropy.apply(logits, Tensor(targets), weights=weights)


def ctc_loss(logits: Tensor, labels: np.ndarray, input_lengths: np.ndarray | None = None, blank: int = -1) -> Tensor:
    """Per-sequence CTC loss (batch,) of softmax(logits) (batch, time, classes) against label sequences.

    labels (batch, max_length) are padded with -1; input_lengths (batch,) count each sequence's steps (all
    by default); blank -1 is the last class. The gradient is softmax minus the posterior class occupancy.
    """
    classes = logits.shape[-1]
    if not -classes <= blank < classes:
        raise ValueError(f"blank {blank} is not one of the {classes} classes")
    return CTCLoss.apply(logits, Tensor(np.asarray(labels)), input_lengths=input_lengths, blank=blank % classes)


def _bind_operators() -> None:
    """Give Tensor its operators; done here because tensor/ must not import ops."""
    T = Tensor
    T.__add__ = add
    T.__radd__ = lambda self, other: add(other, self)
    T.__sub__ = sub
    T.__rsub__ = lambda self, other: sub(other, self)
    T.__mul__ = mul
    T.__rmul__ = lambda self, other: mul(other, self)
    T.__truediv__ = div
    T.__rtruediv__ = lambda self, other: div(other, self)
    T.__pow__ = pow
    T.__rpow__ = lambda self, other: pow(other, self)
    T.__matmul__ = matmul
    T.__rmatmul__ = lambda self, other: matmul(other, self)
    T.__neg__ = neg
    T.__getitem__ = getitem
    T.sum, T.mean, T.max = sum, mean, max
    T.reshape = lambda self, *shape: reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)
    T.transpose = lambda self, *axes: transpose(self, axes or None)
    T.T = property(lambda self: transpose(self))
    T.exp, T.log, T.sqrt, T.abs = exp, log, sqrt, abs
    T.clip = clip
    T.relu, T.sigmoid, T.tanh, T.softmax, T.log_softmax = relu, sigmoid, tanh, softmax, log_softmax


_bind_operators()
