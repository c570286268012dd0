"""ONNX converters of the Transformer layers: layer normalization, positional embedding, multi-head attention and
the encoder block built of them.

Each follows the arithmetic of dlcli's op rather than a fused ONNX op: layer normalization as reductions over
any set of axes (opset 17's LayerNormalization takes only trailing axes), attention as Keras' projections, a
scaled product and a masked softmax in which a query with no key to attend to gets zeros, as in dlcli.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from dlcli.export.onnx.builder import OnnxGraph, Value
from dlcli.export.onnx.converters import as_float, converts


def layer_norm(graph: OnnxGraph, x: str, rank: int, axes: Sequence[int], gamma: np.ndarray, beta: np.ndarray,
               epsilon: float, hint: str) -> str:
    """gamma * (x - mean) / sqrt(variance + epsilon) + beta, mean and biased variance over `axes` (batch axis
    counted) of a rank-`rank` x; gamma and beta have those axes' shape."""
    mean = graph.reduce("ReduceMean", x, axes, True, hint)
    centred = graph.node("Sub", [x, mean], hint)
    variance = graph.reduce("ReduceMean", graph.node("Mul", [centred, centred], hint), axes, True, hint)
    std = graph.node("Sqrt", [graph.node("Add", [variance, graph.scalar(epsilon, "float32")], hint)], hint)
    normalized = graph.node("Div", [centred, std], hint)
    # the weights broadcast from the normalized axes: 1 along every other axis but the batch's
    shape = [1] * (rank - 1)
    for axis, size in zip(axes, gamma.shape):
        shape[axis - 1] = size
    scaled = graph.node("Mul", [normalized, graph.constant(gamma.reshape(shape), f"{hint}/gamma")], hint)
    return graph.node("Add", [scaled, graph.constant(beta.reshape(shape), f"{hint}/beta")], hint)


@converts("layer_normalization")
def _layer_normalization(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    out = layer_norm(graph, x.name, len(x.shape) + 1, layer.axes, layer.gamma.data.astype(np.float32),
                     layer.beta.data.astype(np.float32), layer.spec.epsilon, hint)
    return x.like(out)
