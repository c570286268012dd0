"""ONNX converters of issue 18's image layers: zero padding, cropping, up-sampling, depthwise and separable
convolutions, transposed convolutions.

The data stays channels-last (NHWC) where ONNX has a layout-free form (Pad, Slice, and up-sampling written as
dlcli computes it: pixels repeated by a broadcast, bilinear weights as two matrix products, so the numbers
match dlcli's rather than a runtime's Resize); the convolutions transpose in and out, as conv2d's converter.
"""

from __future__ import annotations

from typing import Any

from dlcli.export.onnx.builder import OnnxGraph, Value
from dlcli.export.onnx.converters import as_float, converts
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
