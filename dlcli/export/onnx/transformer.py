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
from dlcli.export.onnx.converters import CONVERTERS, as_float, converts


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


@converts("positional_embedding")
def _positional_embedding(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    tokens = CONVERTERS["embedding"](graph, layer.tokens, inputs, f"{hint}/token_embeddings")  # its mask too
    steps = inputs[0].shape[0]
    if layer.spec.positions == "learned":  # the position table's rows 0..steps-1, as the layer looks them up
        table = graph.constant(layer.positions.embeddings.data, f"{hint}/position_embeddings")
        positions = graph.gather(table, graph.ints(range(steps), f"{hint}/position_ids"), 0, hint)
    else:  # the fixed encoding the layer built for its sequence length
        positions = graph.constant(layer.encoding.data, f"{hint}/encoding")
    return tokens.like(graph.node("Add", [tokens.name, positions], hint)).with_mask(tokens.mask)


def _project(graph: OnnxGraph, layer: Any, part: str, x: Value, hint: str) -> str:
    """x (batch, steps, features) through Keras' `part` projection, kernel (features, heads, size), bias (heads,
    size): (batch, heads, steps, size)."""
    kernel = layer.kernels[part].data
    out = graph.node("MatMul", [x.name, graph.constant(kernel.reshape(kernel.shape[0], -1), f"{hint}/{part}/kernel")],
                     hint)
    if part in layer.biases:
        out = graph.node("Add", [out, graph.constant(layer.biases[part].data.reshape(-1), f"{hint}/{part}/bias")],
                         hint)
    return graph.transpose(graph.reshape(out, [x.shape[0], kernel.shape[1], kernel.shape[2]], hint), [0, 2, 1, 3],
                           hint)


def _attention_mask(graph: OnnxGraph, layer: Any, query: Value, value: Value, key: Value | None,
                    hint: str) -> str | None:
    """MultiHeadAttention.attention_mask in ONNX: (batch or 1, 1, queries, keys) bool, or None."""
    masks = []
    if query.mask is not None and query.mask.steps == query.shape[0]:
        masks.append(graph.unsqueeze(query.mask.name, [1, 3], f"{hint}/mask"))
    for source in (value, key):
        if source is not None and source.mask is not None and source.mask.steps == source.shape[0]:
            masks.append(graph.unsqueeze(source.mask.name, [1, 2], f"{hint}/mask"))
    if layer.spec.use_causal_mask:
        causal = np.tril(np.ones((query.shape[0], value.shape[0]), bool))[None, None]
        masks.append(graph.constant(causal, f"{hint}/causal_mask"))
    if not masks:
        return None
    combined = masks[0]
    for mask in masks[1:]:
        combined = graph.node("And", [combined, mask], f"{hint}/mask")
    return combined


def attend(graph: OnnxGraph, layer: Any, query: Value, value: Value, key: Value | None,
           hint: str) -> tuple[Value, str]:
    """A multi_head_attention layer's output (with the query's mask) and its attention probabilities (batch,
    heads, queries, keys); `key` None: the value is the key."""
    mask = _attention_mask(graph, layer, query, value, key, hint)
    scale = graph.scalar(1.0 / np.sqrt(layer.spec.key_dim), "float32")
    q = graph.node("Mul", [_project(graph, layer, "query", query, hint), scale], hint)  # scaled first, as Keras
    k = graph.transpose(_project(graph, layer, "key", value if key is None else key, hint), [0, 1, 3, 2], hint)
    v = _project(graph, layer, "value", value, hint)
    scores = graph.node("MatMul", [q, k], hint)
    if mask is None:
        probabilities = graph.node("Softmax", [scores], hint, axis=-1)
    else:  # a masked key gets exactly 0; a query with no key left gets zeros rather than softmax's uniform row
        low = graph.node("Where", [mask, scores, graph.scalar(-1e30, "float32")], hint)
        probabilities = graph.node("Mul", [graph.node("Softmax", [low], hint, axis=-1),
                                           graph.cast(mask, "float32", hint)], hint)
    attended = graph.transpose(graph.node("MatMul", [probabilities, v], hint), [0, 2, 1, 3], hint)
    merged = graph.reshape(attended, [query.shape[0], -1], hint)
    kernel = layer.kernels["attention_output"].data
    out = graph.node("MatMul", [merged, graph.constant(kernel.reshape(-1, kernel.shape[-1]),
                                                       f"{hint}/attention_output/kernel")], hint)
    if "attention_output" in layer.biases:
        out = graph.node("Add", [out, graph.constant(layer.biases["attention_output"].data,
                                                     f"{hint}/attention_output/bias")], hint)
    return Value(out, (query.shape[0], layer.output_features), "float32", query.mask), probabilities


@converts("multi_head_attention")
def _multi_head_attention(graph: OnnxGraph, layer: Any, inputs: list[Value],
                          hint: str) -> Value | tuple[Value, ...]:
    query = as_float(graph, inputs[0], hint)
    value = as_float(graph, inputs[1], hint) if len(inputs) > 1 else query
    key = as_float(graph, inputs[2], hint) if len(inputs) > 2 else None
    out, probabilities = attend(graph, layer, query, value, key, hint)
    if not layer.spec.return_attention_scores:
        return out
    heads = layer.spec.num_heads
    return out, Value(probabilities, (heads, query.shape[0], value.shape[0]), "float32")


@converts("transformer_encoder")
def _transformer_encoder(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    """The block as its __call__ composes its sublayers (dropout is the identity in inference)."""
    x = as_float(graph, inputs[0], hint)
    attended, _ = attend(graph, layer.attention, x, x, None, f"{hint}/attention")
    projected_in = _layer_normalization(graph, layer.norm_1, [x.like(graph.node("Add", [x.name, attended.name],
                                                                                 hint))], f"{hint}/layernorm_1")
    hidden = CONVERTERS["dense"](graph, layer.dense_1, [projected_in], f"{hint}/dense_proj/dense")
    projected = CONVERTERS["dense"](graph, layer.dense_2, [hidden], f"{hint}/dense_proj/dense_1")
    summed = x.like(graph.node("Add", [projected_in.name, projected.name], hint))
    return _layer_normalization(graph, layer.norm_2, [summed], f"{hint}/layernorm_2").with_mask(x.mask)
