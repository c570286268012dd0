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


def winograd_takes(g: ConvGeometry) -> bool:
    """Whether the Winograd F(m x m, 3x3) convolutions compute this one: a 3x3 kernel, stride 1, no dilation."""
    return (g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.dilation_h, g.dilation_w) == (3, 3, 1, 1, 1, 1)


# conv2d's algorithm names of the Winograd paths -> output tile side m of F(m x m, 3x3)
WINOGRAD_TILES = {"winograd": 2, "winograd_3x3": 3, "winograd_4x4": 4}


def winograd_tile(algorithm: str, g: ConvGeometry, channels: int) -> int | None:
    """The output tile side m of the Winograd F(m x m, 3x3) this algorithm takes on this shape, or None for
    im2col ("auto": see winograd_fits)."""
    if algorithm == "auto":
        return winograd_fits(g, channels)
    return WINOGRAD_TILES.get(algorithm)


def multiplications_per_output(tile: int, out_h: int, out_w: int) -> float:
    """Multiplications per output and channel pair of Winograd F(tile x tile, 3x3) on an (out_h, out_w) output,
    counting the tiles' outputs past its edge (im2col: 9)."""
    return (tile + 2) ** 2 * -(-out_h // tile) * -(-out_w // tile) / (out_h * out_w)


def winograd_fits(g: ConvGeometry, channels: int) -> int | None:
    """The Winograd tile conv2d's "auto" (the default) takes, or None for im2col: for winograd_takes with at
    least 16 input channels and an output of at least 3x3, the tile of F(2x2), F(3x3), F(4x4) with the fewest
    multiplications per output (multiplications_per_output: the padding of a tile that overhangs the output
    counts), when that is at most 4.5 (half of im2col's 9).

    Measured here (batch 64, relu, alternating in one process, one thread, forward/backward ms;
    benchmarks/conv_layers.py, one run on a shared machine): the MNIST convnet's 13x13x32 -> 64 layer (11x11
    output; F(4x4): 2.68 multiplications, F(3x3) 3.31, F(2x2) 4.76) took 1.71/2.82 by F(4x4), 1.88/3.16 by
    F(3x3), 3.01/4.55 by F(2x2), 2.84/6.30 by im2col; its 5x5x64 -> 128 layer (3x3 output: one F(3x3) tile,
    2.78; F(4x4) 4.0, F(2x2) 7.1) 0.37/0.74 by F(3x3), 0.56/1.09 by F(4x4), 0.77/1.50 by F(2x2), 0.73/1.41 by
    im2col (so F(3x3) stays ahead of im2col there); its 1-channel first layer 3-5x slower by Winograd. Float32 error
    against a float64 convolution, relative to its largest value (outputs, input and kernel gradients):
    F(2x2) 1e-7 to 1e-6, F(3x3) 6e-7 to 4e-6, F(4x4) 6e-7 to 7e-6 (its transforms multiply by up to 8 and
    divide by up to 24): within 1e-5, what float32 convolutions give."""
    if not winograd_takes(g) or channels < 16 or min(g.out_h, g.out_w) < 3:
        return None
    cost, tile = min((multiplications_per_output(m, g.out_h, g.out_w), m) for m in (2, 3, 4))
    return tile if cost <= 4.5 else None


class Conv2D(Op):
    """activation(conv2d(x, kernel) + bias) for x (N, H, W, C) and a Keras kernel (kh, kw, C, F).

    The bias and the activation run in one kernel pass, by the activation's code in the table. algorithm
    "im2col" is one GEMM over the patches, "winograd" the F(2x2, 3x3) transforms and 16 GEMMs, "winograd_3x3"
    F(3x3, 3x3) (25 GEMMs), "winograd_4x4" F(4x4, 3x3) (36 GEMMs; 3x3 stride-1 kernels only), "auto" the
    Winograd tile winograd_fits picks, or im2col.
    """

    def __init__(self, geometry: ConvGeometry, activation: type[Activation] = Linear, algorithm: str = "auto") -> None:
        self.geometry, self.code, self.algorithm = geometry, activation.code, algorithm

    def forward(self, x: Array, kernel: Array, bias: Array) -> Array:
        g = self.geometry
        self.tile = winograd_tile(self.algorithm, g, x.shape[3])
        if self.tile is not None:
            from dlcli.kernels import winograd

            self.x_shape = x.shape
            out, self.planes, self.kernel_planes = winograd.forward(
                np.ascontiguousarray(x), kernel, bias.astype(x.dtype, copy=False), self.code, g.pad_top, g.pad_left,
                g.out_h, g.out_w, self.tile)
            self.out, self.cols, self.direct = out.reshape(-1, out.shape[3]), None, None
            return out
        return self._im2col_forward(x, kernel, bias)

    def _winograd_backward(self, d_out: Array) -> tuple[Array | None, Array | None, Array | None]:
        """The Winograd path's backward: the activation's gradient and the bias sum run in its blocks."""
        from dlcli.kernels import winograd

        g = self.geometry
        d_x, d_kernel, d_bias = winograd.backward(
            np.reshape(d_out, (self.x_shape[0], g.out_h, g.out_w, -1)), self.out, self.code, self.planes,
            self.kernel_planes, self.x_shape, g.pad_top, g.pad_left, self.needs_grad[0], self.needs_grad[1], self.tile)
        return d_x, d_kernel, d_bias if self.needs_grad[2] else None

    def _im2col_forward(self, x: Array, kernel: Array, bias: Array) -> Array:
        from dlcli.kernels import conv as kernels

        g = self.geometry
        n = x.shape[0]
        x = np.ascontiguousarray(x)
        self.x_shape, self.kernel, self.direct = x.shape, kernel, None
        if x.shape[3] == 1:  # a first layer on grey images: the patches by kernel tap, a transposed view
            cols = np.empty((g.kernel_h * g.kernel_w, n * g.out_h * g.out_w), x.dtype).T
            kernels.im2col_by_tap(x, cols.T, *g.args())
            if not (self.needs_grad[0] if self.needs_grad else True):
                # no input gradient wanted: the backward reads the (padded) image directly, in one fused pass
                padded = kernels.padded(x, *g.args())
                self.direct = padded.reshape(padded.shape[:3])
        else:
            cols = np.empty((n * g.out_h * g.out_w, g.kernel_h * g.kernel_w * x.shape[3]), x.dtype)
            kernels.im2col(x, cols, *g.args())
        self.cols = None if self.direct is not None else cols
        out = cols @ kernel.reshape(-1, kernel.shape[-1])
        if self.code != kernels.LINEAR or bias.any():  # a linear conv without bias (before a batch norm) is done
            kernels.bias_activation(out, bias.astype(out.dtype, copy=False), self.code)
        self.out = out
        return out.reshape(n, g.out_h, g.out_w, -1)

    def _one_channel_backward(self, d_out: Array) -> tuple[None, Array | None, Array | None]:
        """The kernel's and the bias's gradients of a 1-channel convolution whose input needs none, in one pass
        over d_out and out that reads the image directly (kernels/conv_one_channel.py): no cols kept, no GEMM."""
        from dlcli.kernels import conv_one_channel

        g, n = self.geometry, self.x_shape[0]
        d_kernel, d_bias = conv_one_channel.weight_gradients(
            self.direct, np.ascontiguousarray(d_out).reshape(n, g.out_h, g.out_w, -1),
            self.out.reshape(n, g.out_h, g.out_w, -1), None, self.code, *g.args()[:6], None, g.out_h, g.out_w)
        return None, d_kernel if self.needs_grad[1] else None, d_bias if self.needs_grad[2] else None

    def backward(self, d_out: Array) -> tuple[Array | None, Array | None, Array | None]:
        from dlcli.kernels import conv as kernels

        if self.direct is not None:
            return self._one_channel_backward(d_out)
        if self.cols is None:
            return self._winograd_backward(d_out)
        out, g = self.out, self.geometry
        d_out = np.ascontiguousarray(d_out).reshape(out.shape)
        # the activation's gradient and the bias gradient's column sums in one pass
        d, d_bias = np.empty_like(d_out), np.empty(out.shape[1], d_out.dtype)
        kernels.activation_grad_and_bias_sum(d_out, out, d, d_bias, self.code)
        kernel = self.kernel
        d_kernel = (self.cols.T @ d).reshape(kernel.shape) if self.needs_grad[1] else None
        d_x = None
        if self.needs_grad[0]:
            d_cols = d @ kernel.reshape(-1, kernel.shape[-1]).T
            d_x = np.empty(self.x_shape, d_cols.dtype)
            kernels.col2im(d_cols, d_x, *g.args())
        return d_x, d_kernel, d_bias if self.needs_grad[2] else None


def conv2d(x: Tensor, kernel: Tensor, bias: Tensor, geometry: ConvGeometry,
           activation: str | type[Activation] = "linear", algorithm: str = "auto") -> Tensor:
    """activation(conv2d(x, kernel) + bias), channels-last x (N, H, W, C), kernel (kh, kw, C, F).

    activation is a name or a row of the activation table that `activations.fusable` accepts (linear, relu,
    tanh: the ones the conv kernels compute); apply any other after a linear conv2d. algorithm: "auto",
    "im2col" or "winograd" (see Conv2D); the same inputs give the same outputs on every run.
    """
    if algorithm in WINOGRAD_TILES and not winograd_takes(geometry):
        raise ValueError("the Winograd convolution takes 3x3 kernels with stride 1 and no dilation")
    row = activations.get(activation) if isinstance(activation, str) else activation
    if not activations.fusable(row):
        *others, last = activations.fusable_names()
        raise ValueError(f"conv2d computes {', '.join(others)} or {last} itself, not {activation!r}: apply it "
                         "after a linear conv2d")
    return Conv2D.apply(x, kernel, bias, geometry=geometry, activation=row, algorithm=algorithm)


def transposed_size(size: int, kernel: int, stride: int, dilation: int, padding: str,
                    output_padding: int | None) -> tuple[int, int]:
    """(output size, rows cropped before it) of a transposed convolution along one axis, by Keras' rules.

    The full transposed output is (size - 1) * stride + span long (span: the dilated kernel). Keras 3 keeps
    the window JAX computes: "valid" (size - 1) * stride + max(span, stride), or that + output_padding less
    the default; "same" size * stride, or (size - 1) * stride + span % 2 + output_padding; the crop before
    it comes from the same left padding (keras/src/backend/common/backend_utils.py).
    """
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        return (size - 1) * stride + span + extra, 0
    pad = stride + span - 2 if output_padding is None else span + span % 2 - 2 + output_padding
    left = min(pad // 2 + pad % 2, span - 1)
    length = size * stride if output_padding is None else (size - 1) * stride + span % 2 + output_padding
    return length, span - 1 - left


def transposed_geometry(in_h: int, in_w: int, kernel: tuple[int, int], strides: tuple[int, int],
                        dilation: tuple[int, int], padding: str,
                        output_padding: tuple[int, int] | None) -> tuple[ConvGeometry, int, int]:
    """(the geometry of the convolution this one transposes, output height, output width).

    That convolution runs from the (out_h, out_w) output back to the (in_h, in_w) input, so the transposed
    one is its backward pass: col2im forward, im2col backward.
    """
    out_h, top = transposed_size(in_h, kernel[0], strides[0], dilation[0], padding,
                                 None if output_padding is None else output_padding[0])
    out_w, left = transposed_size(in_w, kernel[1], strides[1], dilation[1], padding,
                                  None if output_padding is None else output_padding[1])
    return ConvGeometry(kernel[0], kernel[1], strides[0], strides[1], dilation[0], dilation[1], top, left,
                        in_h, in_w), out_h, out_w


class Conv2DTranspose(Op):
    """activation(conv2d_transpose(x, kernel) + bias) for x (N, H, W, C) and a Keras kernel (kh, kw, F, C).

    The backward pass of a convolution with the same kernel: one GEMM into columns, then col2im adds each
    column into the output pixels it covers; its own backward is im2col and two GEMMs. Bias and activation
    run in one kernel pass, as in Conv2D.
    """

    def __init__(self, geometry: ConvGeometry, out_h: int, out_w: int, activation: type[Activation] = Linear) -> None:
        self.geometry, self.out_h, self.out_w, self.code = geometry, out_h, out_w, activation.code

    def forward(self, x: Array, kernel: Array, bias: Array) -> Array:
        from dlcli.kernels import conv as kernels

        n, filters = x.shape[0], kernel.shape[2]
        self.x, self.kernel = np.ascontiguousarray(x).reshape(-1, x.shape[3]), kernel
        cols = self.x @ kernel.reshape(-1, kernel.shape[3]).T  # (N*H*W, kh*kw*F)
        out = np.empty((n, self.out_h, self.out_w, filters), cols.dtype)
        kernels.col2im(cols, out, *self.geometry.args())
        self.out = out.reshape(-1, filters)
        kernels.bias_activation(self.out, bias.astype(out.dtype, copy=False), self.code)
        self.x_shape = x.shape
        return out

    def backward(self, d_out: Array) -> tuple[Array | None, Array | None, Array | None]:
        from dlcli.kernels import conv as kernels

        out, kernel, g = self.out, self.kernel, self.geometry
        d_out = np.ascontiguousarray(d_out).reshape(out.shape)
        d, d_bias = np.empty_like(d_out), np.empty(out.shape[1], d_out.dtype)
        kernels.activation_grad_and_bias_sum(d_out, out, d, d_bias, self.code)
        d_cols = np.empty((len(self.x), g.kernel_h * g.kernel_w * out.shape[1]), d.dtype)
        kernels.im2col(d.reshape(self.x_shape[0], self.out_h, self.out_w, -1), d_cols, *g.args())
        flat_kernel = kernel.reshape(-1, kernel.shape[3])
        d_x = (d_cols @ flat_kernel).reshape(self.x_shape) if self.needs_grad[0] else None
        d_kernel = (d_cols.T @ self.x).reshape(kernel.shape) if self.needs_grad[1] else None
        return d_x, d_kernel, d_bias if self.needs_grad[2] else None


class DepthwiseConv2D(Op):
    """depthwise_conv2d(x, kernel) + bias: each input channel c convolved with its own kernel[..., c, :].

    x (N, H, W, C), Keras kernel (kh, kw, C, M) and bias (C*M); output channel c*M + m, as Keras orders them.
    im2col gives each output position its (kh*kw, C) patch; the products then run as one vectorized pass per
    kernel tap, over every position, channel and multiplier at once (a GEMM would multiply across channels).
    """

    def __init__(self, geometry: ConvGeometry) -> None:
        self.geometry = geometry

    def forward(self, x: Array, kernel: Array, bias: Array) -> Array:
        from dlcli.kernels import conv as kernels

        g = self.geometry
        n, channels = x.shape[0], x.shape[3]
        taps, multiplier = g.kernel_h * g.kernel_w, kernel.shape[3]
        cols = np.empty((n * g.out_h * g.out_w, taps * channels), x.dtype)
        kernels.im2col(np.ascontiguousarray(x), cols, *g.args())
        self.cols, self.kernel, self.x_shape = cols.reshape(-1, taps, channels), kernel.reshape(taps, channels, -1), \
            x.shape
        out = np.empty((len(cols), channels, multiplier), np.result_type(x, kernel))
        out[...] = bias.reshape(channels, multiplier)
        for tap in range(taps):
            out += self.cols[:, tap, :, None] * self.kernel[tap]
        return out.reshape(n, g.out_h, g.out_w, channels * multiplier)

    def backward(self, d_out: Array) -> tuple[Array | None, Array | None, Array | None]:
        from dlcli.kernels import conv as kernels

        cols, kernel = self.cols, self.kernel
        d = np.ascontiguousarray(d_out).reshape(len(cols), kernel.shape[1], kernel.shape[2])
        d_x = d_kernel = None
        if self.needs_grad[0]:
            d_cols = np.einsum("pcm,kcm->pkc", d, kernel, optimize=True)
            d_x = np.empty(self.x_shape, d_cols.dtype)
            kernels.col2im(np.ascontiguousarray(d_cols).reshape(len(cols), -1), d_x, *self.geometry.args())
        if self.needs_grad[1]:
            d_kernel = np.einsum("pkc,pcm->kcm", cols, d, optimize=True).reshape(
                self.geometry.kernel_h, self.geometry.kernel_w, kernel.shape[1], kernel.shape[2])
        d_bias = d.sum(axis=0).reshape(-1) if self.needs_grad[2] else None
        return d_x, d_kernel, d_bias


def conv2d_transpose(x: Tensor, kernel: Tensor, bias: Tensor, geometry: ConvGeometry, out_h: int, out_w: int,
                     activation: str | type[Activation] = "linear") -> Tensor:
    """activation(conv2d_transpose(x, kernel) + bias), x (N, H, W, C), kernel (kh, kw, F, C); `geometry` the
    convolution it transposes (see transposed_geometry); activation fusable as for conv2d."""
    row = activations.get(activation) if isinstance(activation, str) else activation
    if not activations.fusable(row):
        raise ValueError(f"conv2d_transpose computes {', '.join(activations.fusable_names())} itself, not "
                         f"{activation!r}: apply it after a linear conv2d_transpose")
    return Conv2DTranspose.apply(x, kernel, bias, geometry=geometry, out_h=out_h, out_w=out_w, activation=row)


def depthwise_conv2d(x: Tensor, kernel: Tensor, bias: Tensor, geometry: ConvGeometry) -> Tensor:
    """Depthwise convolution: x (N, H, W, C), kernel (kh, kw, C, M), bias (C*M) -> (N, out_h, out_w, C*M)."""
    return DepthwiseConv2D.apply(x, kernel, bias, geometry=geometry)
