"""The op functions on tensors, each defined beside its op class in its family module, and Tensor's operators
(+, -, *, /, @, **, [], .sum(), ...) bound to them here, because tensor/ must not import ops."""

from __future__ import annotations

from dlcli.activations import log_softmax, relu, sigmoid, softmax, tanh
from dlcli.ops.attention import dot_product_attention, packed_self_attention
from dlcli.ops.augment import affine_resample, flip_images
from dlcli.ops.batch_normalization import batch_normalization
from dlcli.ops.conv import conv2d, conv2d_transpose, depthwise_conv2d
from dlcli.ops.dropout import dropout
from dlcli.ops.elementwise import (
    abs, add, as_tensor, clip, div, exp, log, maximum, minimum, mul, neg, pow, sqrt, sub, where,
)
from dlcli.ops.layer_normalization import layer_normalization
from dlcli.ops.linalg import affine, matmul
from dlcli.ops.loss import ctc_loss, sigmoid_binary_crossentropy, softmax_crossentropy, sparse_softmax_crossentropy
from dlcli.ops.pool import average_pool1d, average_pool2d, conv2d_max_pool2d, max_pool1d, max_pool2d
from dlcli.ops.recurrent import gru, lstm, simple_rnn
from dlcli.ops.reduce import max, mean, sum
from dlcli.ops.resize import up_sample2d, zero_pad2d
from dlcli.ops.self_attention import self_attention
from dlcli.ops.shape import concatenate, gather, getitem, reshape, split, take_rows, transpose
from dlcli.tensor import Tensor

__all__ = [
    "abs", "add", "affine", "affine_resample", "average_pool1d", "average_pool2d", "batch_normalization", "clip",
    "concatenate", "conv2d", "conv2d_max_pool2d", "conv2d_transpose", "ctc_loss", "depthwise_conv2d", "div",
    "dot_product_attention",
    "dropout", "exp", "flip_images", "gather", "getitem", "gru", "layer_normalization", "log", "log_softmax", "lstm",
    "matmul", "max", "max_pool1d", "max_pool2d", "maximum", "mean", "minimum", "mul", "neg", "packed_self_attention",
    "pow", "relu",
    "reshape", "self_attention", "sigmoid", "sigmoid_binary_crossentropy", "simple_rnn", "softmax",
    "softmax_crossentropy",
    "sparse_softmax_crossentropy", "split", "sqrt", "sub", "sum", "take_rows", "tanh", "transpose", "up_sample2d",
    "where", "zero_pad2d",
]


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
