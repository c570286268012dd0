"""ONNX converters of the layers without a time loop: core, dense, convolutions, pooling, normalizations, embedding,
merges, and the augmentation layers (the identity in inference, as dropout).

Every constant is computed as the layer computes it in inference, in float32 (batch normalization's scale and
shift from the moving statistics, normalization's floored standard deviation), so the file reproduces dlcli's
numbers rather than a textbook formula. ONNX convolutions and pools are channels-first: a Transpose goes in
and out of each (onnxruntime's optimizer cancels the pairs between consecutive layers).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from dlcli.export.onnx.builder import OnnxGraph, StepMask, Value
from dlcli.export.onnx.converters import activate, as_float, converts
from dlcli.ops.pool import pool_output_size


@converts("activation")
def _activation(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    return x.like(activate(graph, layer.spec.activation, x.name, hint))


@converts("dropout", "random_flip", "random_translation", "random_zoom", "random_rotation")
def _identity(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    return inputs[0]  # inference: dlcli hands the very input on, its mask included


@converts("flatten")
def _flatten(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = inputs[0]
    size = math.prod(x.shape)
    return x.like(graph.reshape(x.name, [size], hint), (size,))


@converts("reshape")
def _reshape(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = inputs[0]
    return x.like(graph.reshape(x.name, layer.target, hint), layer.target)


@converts("permute")
def _permute(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x, dims = inputs[0], layer.spec.dims
    return x.like(graph.transpose(x.name, [0, *dims], hint), tuple(x.shape[d - 1] for d in dims))


@converts("rescaling")
def _rescaling(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    out = graph.node("Mul", [x.name, graph.scalar(layer.spec.scale, "float32")], hint)
    if layer.spec.offset:
        out = graph.node("Add", [out, graph.scalar(layer.spec.offset, "float32")], hint)
    return x.like(out)


@converts("normalization")
def _normalization(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    shape = layer._broadcast_shape(len(x.shape) + 1)
    mean = layer.state["mean"].reshape(shape)
    std = np.maximum(np.sqrt(layer.state["variance"]), 1e-7).astype(np.float32).reshape(shape)
    centred = graph.node("Sub", [x.name, graph.constant(mean, f"{hint}/mean")], hint)
    return x.like(graph.node("Div", [centred, graph.constant(std, f"{hint}/std")], hint))


@converts("batch_normalization")
def _batch_normalization(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    channels = layer.moving_mean.shape[0]
    gamma = np.ones(channels, np.float32) if layer.gamma is None else layer.gamma.data
    beta = np.zeros(channels, np.float32) if layer.beta is None else layer.beta.data
    # the layer's own inference arithmetic, in float32: x * scale + shift from the moving statistics
    inv_std = (1.0 / np.sqrt(layer.moving_variance + np.float32(layer.spec.epsilon))).astype(np.float32)
    scale = gamma * inv_std
    shift = beta - scale * layer.moving_mean
    scale, shift = scale.reshape(layer.channel_shape), shift.reshape(layer.channel_shape)
    scaled = graph.node("Mul", [x.name, graph.constant(scale, f"{hint}/scale")], hint)
    return x.like(graph.node("Add", [scaled, graph.constant(shift, f"{hint}/shift")], hint))


@converts("dense")
def _dense(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    kernel = graph.constant(layer.kernel.data, f"{hint}/kernel")
    if layer.bias is not None and len(x.shape) == 1:
        out = graph.node("Gemm", [x.name, kernel, graph.constant(layer.bias.data, f"{hint}/bias")], hint)
    else:
        out = graph.node("MatMul", [x.name, kernel], hint)
        if layer.bias is not None:
            out = graph.node("Add", [out, graph.constant(layer.bias.data, f"{hint}/bias")], hint)
    out = activate(graph, layer.spec.activation, out, hint)
    return x.like(out, (*x.shape[:-1], layer.spec.units))


def onnx_pads(sizes: Sequence[int], windows: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
          befores: Sequence[int], outs: Sequence[int]) -> list[int]:
    """ONNX pads [begin..., end...]: dlcli's padding before each axis, and after it what the output needs
    (Keras' "same" puts the odd cell after; "valid" pads nothing and drops what is left, as ONNX floors)."""
    afters = [max((out - 1) * stride + (window - 1) * dilation + 1 - size - before, 0)
              for size, window, stride, dilation, before, out in zip(sizes, windows, strides, dilations, befores,
                                                                     outs)]
    return [*befores, *afters]


def channels_first(graph: OnnxGraph, x: str, spatial: int, hint: str) -> str:
    """(batch, *spatial, channels) to ONNX's (batch, channels, *spatial)."""
    return graph.transpose(x, [0, spatial + 1, *range(1, spatial + 1)], hint)


def channels_last(graph: OnnxGraph, x: str, spatial: int, hint: str) -> str:
    """ONNX's (batch, channels, *spatial) back to (batch, *spatial, channels)."""
    return graph.transpose(x, [0, *range(2, spatial + 2), 1], hint)


@converts("conv1d", "conv2d")
def _convolution(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    g, spatial = layer.geometry, len(x.shape) - 1
    kernel = layer.kernel.data  # Keras' layout: (kh, kw, in, out), or (k, in, out) for conv1d
    onnx_kernel = np.ascontiguousarray(np.moveaxis(kernel, (-1, -2), (0, 1)))  # (out, in, *window)
    if spatial == 1:  # the layer runs as a 2-D convolution of height 1: its width geometry is the sequence's
        windows, strides, dilations = [g.kernel_w], [g.stride_w], [g.dilation_w]
        befores, outs = [g.pad_left], [g.out_w]
    else:
        windows, strides, dilations = [g.kernel_h, g.kernel_w], [g.stride_h, g.stride_w], [g.dilation_h,
                                                                                           g.dilation_w]
        befores, outs = [g.pad_top, g.pad_left], [g.out_h, g.out_w]
    pads = onnx_pads(x.shape[:-1], windows, strides, dilations, befores, outs)
    out = graph.node("Conv", [channels_first(graph, x.name, spatial, hint),
                              graph.constant(onnx_kernel, f"{hint}/kernel"),
                              graph.constant(layer.bias.data, f"{hint}/bias")], hint,
                     kernel_shape=windows, strides=strides, dilations=dilations, pads=pads)
    out = activate(graph, layer.spec.activation, channels_last(graph, out, spatial, hint), hint)
    return x.like(out, (*outs, layer.spec.filters))


@converts("max_pooling1d", "max_pooling2d", "average_pooling1d", "average_pooling2d")
def _pooling(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    spatial, padding = layer.spatial_rank, layer.spec.padding
    sizes = x.shape[:spatial]
    geometry = [pool_output_size(size, pool, stride, padding)
                for size, pool, stride in zip(sizes, layer.pool_size, layer.strides)]
    outs, befores = [out for out, _ in geometry], [before for _, before in geometry]
    pads = onnx_pads(sizes, layer.pool_size, layer.strides, [1] * spatial, befores, outs)
    op = "MaxPool" if layer.spec.type.startswith("max") else "AveragePool"
    # AveragePool's count_include_pad = 0 (the default): a "same" window averages the cells inside, as dlcli
    out = graph.node(op, [channels_first(graph, x.name, spatial, hint)], hint, kernel_shape=list(layer.pool_size),
                     strides=list(layer.strides), pads=pads)
    return x.like(channels_last(graph, out, spatial, hint), (*outs, x.shape[-1]))


@converts("global_average_pooling1d", "global_average_pooling2d", "global_max_pooling1d", "global_max_pooling2d")
def _global_pooling(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    op = "ReduceMax" if "max" in layer.spec.type else "ReduceMean"
    axes = list(range(1, layer.spatial_rank + 1))
    keep = layer.spec.keepdims
    shape = (*(1,) * layer.spatial_rank, x.shape[-1]) if keep else (x.shape[-1],)
    return x.like(graph.reduce(op, x.name, axes, keep, hint), shape)


@converts("embedding")
def _embedding(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = inputs[0]
    ids = x.name if x.dtype in ("int32", "int64") else graph.cast(x.name, "int64", hint)  # Keras casts float ids
    dtype = x.dtype if x.dtype in ("int32", "int64") else "int64"
    table = graph.constant(layer.embeddings.data, f"{hint}/embeddings")
    out = Value(graph.gather(table, ids, 0, hint), (*x.shape, layer.spec.output_dim), "float32")
    if layer.spec.mask_zero:
        padding = graph.node("Equal", [ids, graph.scalar(0, dtype)], f"{hint}/mask")
        out = out.with_mask(StepMask(graph.node("Not", [padding], f"{hint}/mask"), x.shape[0]))
    return out


@converts("concatenate")
def _concatenate(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    axis = layer.batch_axis
    shape = list(inputs[0].shape)
    shape[axis - 1] = sum(value.shape[axis - 1] for value in inputs)
    return inputs[0].like(graph.node("Concat", [value.name for value in inputs], hint, axis=axis), tuple(shape))


def _fold(graph: OnnxGraph, op: str, inputs: list[Value], hint: str) -> str:
    """((a op b) op c) ...: pairwise in input order, as the merge layers fold, so float sums round alike."""
    out = inputs[0].name
    for value in inputs[1:]:
        out = graph.node(op, [out, value.name], hint)
    return out


@converts("add", "multiply", "maximum")
def _elementwise(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    op = {"add": "Add", "multiply": "Mul", "maximum": "Max"}[layer.spec.type]
    return inputs[0].like(_fold(graph, op, inputs, hint))


@converts("average")
def _average(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    total = _fold(graph, "Add", inputs, hint)
    return inputs[0].like(graph.node("Mul", [total, graph.scalar(1.0 / len(inputs), "float32")], hint))

