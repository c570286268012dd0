"""Convolution as im2col + one GEMM, with the bias and the activation fused into the same op."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlcli import activations
from dlcli.activations import Activation, Linear
from dlcli.tensor import Array, Op, Tensor


@dataclass(frozen=True)
class ConvGeometry:
    """Sizes of one 2-D convolution: kernel, strides, dilation, padding and the output they give."""

    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    pad_top: int
    pad_left: int
    out_h: int
    out_w: int

    def args(self) -> tuple[int, ...]:
        """The kernels' trailing arguments."""
        return (self.kernel_h, self.kernel_w, self.stride_h, self.stride_w, self.dilation_h, self.dilation_w,
                self.pad_top, self.pad_left, self.out_h, self.out_w)


def output_size(size: int, kernel: int, stride: int, dilation: int, padding: str) -> tuple[int, int]:
    """(output size, padding before) along one axis, with Keras' rules ("same": extra padding goes after)."""
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        return (size - span) // stride + 1, 0
    if padding == "causal":  # conv1d: all padding before, so no output sees the future
        return (size - 1) // stride + 1, span - 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return out, total // 2


def geometry(in_h: int, in_w: int, kernel: tuple[int, int], strides: tuple[int, int], dilation: tuple[int, int],
             padding: str) -> ConvGeometry:
    """The geometry of a convolution over (in_h, in_w) images."""
    out_h, pad_top = output_size(in_h, kernel[0], strides[0], dilation[0], "valid" if padding == "causal" else padding)
    out_w, pad_left = output_size(in_w, kernel[1], strides[1], dilation[1], padding)
    return ConvGeometry(kernel[0], kernel[1], strides[0], strides[1], dilation[0], dilation[1], pad_top, pad_left,
                        out_h, out_w)


class Conv2D(Op):
    """activation(conv2d(x, kernel) + bias) for x (N, H, W, C) and a Keras kernel (kh, kw, C, F).

    The bias and the activation run in one kernel pass, by the activation's code in the table.
    """

    def __init__(self, geometry: ConvGeometry, activation: type[Activation] = Linear) -> None:
        self.geometry, self.code = geometry, activation.code

    def forward(self, x: Array, kernel: Array, bias: Array) -> Array:
        from dlcli.kernels import conv as kernels

        g = self.geometry
        n = x.shape[0]
        x = np.ascontiguousarray(x)
        self.x_shape, self.kernel = x.shape, kernel
        cols = np.empty((n * g.out_h * g.out_w, g.kernel_h * g.kernel_w * x.shape[3]), x.dtype)
        kernels.im2col(x, cols, *g.args())
        self.cols = cols
        out = cols @ kernel.reshape(-1, kernel.shape[-1])
        kernels.bias_activation(out, bias.astype(out.dtype, copy=False), self.code)
        self.out = out
        return out.reshape(n, g.out_h, g.out_w, -1)

    def backward(self, d_out: Array) -> tuple[Array | None, Array | None, Array | None]:
        from dlcli.kernels import conv as kernels

        out, kernel = self.out, self.kernel
        d_out = np.ascontiguousarray(d_out).reshape(out.shape)
        # the activation's gradient and the bias gradient's column sums in one pass
        d, d_bias = np.empty_like(d_out), np.empty(out.shape[1], d_out.dtype)
        kernels.activation_grad_and_bias_sum(d_out, out, d, d_bias, self.code)
        d_kernel = (self.cols.T @ d).reshape(kernel.shape) if self.needs_grad[1] else None
        d_x = None
        if self.needs_grad[0]:
            d_cols = d @ kernel.reshape(-1, kernel.shape[-1]).T
            d_x = np.empty(self.x_shape, d_cols.dtype)
            kernels.col2im(d_cols, d_x, *self.geometry.args())
        return d_x, d_kernel, d_bias if self.needs_grad[2] else None


def conv2d(x: Tensor, kernel: Tensor, bias: Tensor, geometry: ConvGeometry,
           activation: str | type[Activation] = "linear") -> Tensor:
    """activation(conv2d(x, kernel) + bias), channels-last x (N, H, W, C), kernel (kh, kw, C, F).

    activation is a name or a row of the activation table that `activations.fusable` accepts (linear, relu,
    tanh: the ones the conv kernels compute); apply any other after a linear conv2d.
    """
    row = activations.get(activation) if isinstance(activation, str) else activation
    if not activations.fusable(row):
        *others, last = activations.fusable_names()
        raise ValueError(f"conv2d computes {', '.join(others)} or {last} itself, not {activation!r}: apply it "
                         "after a linear conv2d")
    return Conv2D.apply(x, kernel, bias, geometry=geometry, activation=row)
