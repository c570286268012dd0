"""ONNX converters of issue 18's image layers: zero padding, cropping, up-sampling, depthwise and separable
convolutions, transposed convolutions.

The data stays channels-last (NHWC) where ONNX has a layout-free form (Pad, Slice, and up-sampling written as
dlcli computes it: pixels repeated by a broadcast, bilinear weights as two matrix products, so the numbers
match dlcli's rather than a runtime's Resize); the convolutions transpose in and out, as conv2d's converter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcli.export.onnx.builder import OnnxGraph, Value
from dlcli.export.onnx.converters import activate, as_float, converts
from dlcli.export.onnx.layers import channels_first, channels_last, onnx_pads
from dlcli.ops.resize import interpolation_matrix


@converts("zero_padding2d")
def _zero_padding2d(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    (top, bottom), (left, right) = layer.spec.padding
    pads = graph.ints([0, top, left, 0, 0, bottom, right, 0])  # begins, then ends, batch and channels untouched
    height, width, channels = x.shape
    return x.like(graph.node("Pad", [x.name, pads], hint), (height + top + bottom, width + left + right, channels))


@converts("cropping2d")
def _cropping2d(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = inputs[0]
    (top, bottom), (left, right) = layer.spec.cropping
    height, width, channels = x.shape
    out = graph.slice(x.name, [top, left], [height - bottom, width - right], [1, 2], hint)
    return x.like(out, (height - top - bottom, width - left - right, channels))


@converts("up_sampling2d")
def _up_sampling2d(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    (size_h, size_w), (height, width, channels) = layer.spec.size, x.shape
    out_h, out_w = height * size_h, width * size_w
    if layer.spec.interpolation == "nearest":  # each pixel repeated: a broadcast over two new axes of the factors
        spread = graph.reshape(x.name, [height, 1, width, 1, channels], hint)
        repeated = graph.node("Expand", [spread, graph.ints([1, 1, size_h, 1, size_w, 1])], hint)
        return x.like(graph.reshape(repeated, [out_h, out_w, channels], hint), (out_h, out_w, channels))
    # bilinear: dlcli's two products, rows (out_h, h) @ x (n, h, w * c), then columns (out_w, w) @ (n * out_h, w, c)
    rows = graph.constant(interpolation_matrix(height, size_h).astype("float32"), f"{hint}/rows")
    columns = graph.constant(interpolation_matrix(width, size_w).astype("float32"), f"{hint}/columns")
    tall = graph.node("MatMul", [rows, graph.reshape(x.name, [height, width * channels], hint)], hint)
    flat = graph.node("Reshape", [tall, graph.ints([-1, width, channels])], hint)
    wide = graph.node("MatMul", [columns, flat], hint)
    out = graph.node("Reshape", [wide, graph.ints([-1, out_h, out_w, channels])], hint)
    return x.like(out, (out_h, out_w, channels))


def _depthwise(graph: OnnxGraph, x: Value, kernel: np.ndarray, bias: np.ndarray | None, g: Any, hint: str) -> str:
    """The depthwise step as a grouped Conv, NHWC in and out: Keras' kernel (kh, kw, C, M) gives output channel
    c * M + m, which is ONNX's group c, so the ONNX weight is (C * M, 1, kh, kw) in that order."""
    kh, kw, channels, multiplier = kernel.shape
    weight = np.ascontiguousarray(kernel.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw))
    windows, strides, dilations = [g.kernel_h, g.kernel_w], [g.stride_h, g.stride_w], [g.dilation_h, g.dilation_w]
    pads = onnx_pads(x.shape[:-1], windows, strides, dilations, [g.pad_top, g.pad_left], [g.out_h, g.out_w])
    operands = [channels_first(graph, x.name, 2, hint), graph.constant(weight, f"{hint}/depthwise_kernel")]
    if bias is not None:
        operands.append(graph.constant(bias, f"{hint}/bias"))
    out = graph.node("Conv", operands, hint, kernel_shape=windows, strides=strides, dilations=dilations, pads=pads,
                     group=channels)
    return channels_last(graph, out, 2, hint)


@converts("depthwise_conv2d")
def _depthwise_conv2d(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    g = layer.geometry
    out = _depthwise(graph, x, layer.kernel.data, layer.bias.data, g, hint)
    return x.like(activate(graph, layer.spec.activation, out, hint), (g.out_h, g.out_w, layer.bias.shape[0]))


@converts("separable_conv2d")
def _separable_conv2d(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    g = layer.geometry
    depthwise = _depthwise(graph, x, layer.depthwise_kernel.data, None, g, hint)  # Keras' depthwise step: no bias
    # the pointwise step as dlcli computes it: a matrix product over the channels, then the bias
    pointwise = graph.constant(layer.pointwise_kernel.data[0, 0], f"{hint}/pointwise_kernel")
    out = graph.node("MatMul", [depthwise, pointwise], hint)
    out = graph.node("Add", [out, graph.constant(layer.bias.data, f"{hint}/bias")], hint)
    return x.like(activate(graph, layer.spec.activation, out, hint), (g.out_h, g.out_w, layer.spec.filters))


@converts("conv2d_transpose")
def _conv2d_transpose(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    """ConvTranspose with explicit pads: dlcli's geometry is the convolution it transposes (output back to input),
    whose padding before is ONNX's begin pad; the end pad trims the full output to dlcli's size, and where that
    size is beyond the full output (valid with strides above the kernel), output_padding adds the rows."""
    x = as_float(graph, inputs[0], hint)
    g, (height, width, _) = layer.geometry, x.shape
    windows, strides, dilations = [g.kernel_h, g.kernel_w], [g.stride_h, g.stride_w], [g.dilation_h, g.dilation_w]
    befores, outs = [g.pad_top, g.pad_left], [layer.out_h, layer.out_w]
    full = [(size - 1) * stride + (window - 1) * dilation + 1
            for size, stride, window, dilation in zip((height, width), strides, windows, dilations)]
    ends = [span - before - out for span, before, out in zip(full, befores, outs)]
    weight = np.ascontiguousarray(layer.kernel.data.transpose(3, 2, 0, 1))  # (kh, kw, F, C) -> (C, F, kh, kw)
    out = graph.node("ConvTranspose", [channels_first(graph, x.name, 2, hint),
                                       graph.constant(weight, f"{hint}/kernel"),
                                       graph.constant(layer.bias.data, f"{hint}/bias")], hint,
                     kernel_shape=windows, strides=strides, dilations=dilations,
                     pads=[*befores, *(max(end, 0) for end in ends)],
                     output_padding=[max(-end, 0) for end in ends])
    out = activate(graph, layer.spec.activation, channels_last(graph, out, 2, hint), hint)
    return x.like(out, (layer.out_h, layer.out_w, layer.spec.filters))
