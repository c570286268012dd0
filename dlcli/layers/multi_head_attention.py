"""MultiHeadAttention with Keras' options, weight layout and masks.

Weights follow Keras' EinsumDense layout: `<layer>/query/kernel` (query features, heads, key_dim) and
`query/bias` (heads, key_dim); `key/...` likewise from the key's features; `value/kernel` (value features,
heads, value_dim); `attention_output/kernel` (heads, value_dim, output features) and its bias. The
attention mask is Keras': the query's step mask (batch, queries, 1) AND the value's (and key's) step mask
(batch, 1, keys) AND, with use_causal_mask, the lower triangle; the output carries the query's mask on.
In a graph a node takes `inputs = [query, value]` or `[query, value, key]`; one input is self-attention
(query = value = key, what Keras writes as layer(x, x)). With return_attention_scores the probabilities are
the port `<node>.attention_scores` (batch, heads, queries, keys), like the recurrent layers' state ports.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from dlcli import ops, registry
from dlcli.errors import SpecError
from dlcli.initializers import initialize
from dlcli.layers.base import SEQUENCE, InitializerName, Layer, LayerSpec, Shape, check_rank
from dlcli.tensor import Tensor
from dlcli.tensor.mask import mask_covers

PROJECTIONS = ("query", "key", "value")


class MultiHeadAttentionSpec(LayerSpec):
    """[[model.layers]] type = "multi_head_attention"."""

    type: Literal["multi_head_attention"] = "multi_head_attention"
    num_heads: int = Field(gt=0, description="Number of attention heads.")
    key_dim: int = Field(gt=0, description="Size of each head's query and key projections.")
    value_dim: int | None = Field(None, gt=0, description="Size of each head's value projection; default: key_dim.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of the attention probabilities dropped in "
                                                            "training (Keras' dropout).")
    use_bias: bool = Field(True, description="Add learned biases to the projections.")
    output_shape: int | None = Field(None, gt=0, description="Features of the output; default: the query's.")
    use_causal_mask: bool = Field(False, description="Each query attends only to keys at its own step or before "
                                                     "(a decoder's self-attention).")
    return_attention_scores: bool = Field(False, description="Also give the attention probabilities, as the port "
                                                             "<node>.attention_scores of a graph node.")
    kernel_initializer: InitializerName = Field("glorot_uniform", description="How the projection kernels start.")
    bias_initializer: InitializerName = Field("zeros", description="How the biases start.")


@registry.layers.register("multi_head_attention", spec=MultiHeadAttentionSpec)
class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product attention of a query sequence over a value (and key) sequence, Keras' weights."""

    spec: MultiHeadAttentionSpec
    input_axes = SEQUENCE
    ports_option = "return_attention_scores"

    def extra_inputs(self) -> int:
        return 2

    def connect(self, in_shapes: list[Shape], rng: np.random.Generator) -> Shape:
        """query, or query and value, or query, value and key: each (steps, features)."""
        if len(in_shapes) > 3:
            raise SpecError(f"{self.key}.inputs: multi_head_attention takes [query, value] or [query, value, key], "
                            f"got {len(in_shapes)} inputs")
        for shape in in_shapes:
            check_rank(self, shape)
        query, value = in_shapes[0], in_shapes[min(1, len(in_shapes) - 1)]
        key = in_shapes[2] if len(in_shapes) == 3 else value
        if key[0] != value[0]:
            raise SpecError(f"{self.key}.inputs: the key and the value must have the same number of steps, got "
                            f"{key[0]} and {value[0]}")
        self.steps = (query[0], value[0])
        return self._build_weights(query[1], key[1], value[1], rng)

    def _build_weights(self, query: int, key: int, value: int, rng: np.random.Generator) -> Shape:
        spec = self.spec
        heads, value_dim = spec.num_heads, spec.value_dim or spec.key_dim
        self.output_features = spec.output_shape or query
        shapes = {"query": ((query, heads, spec.key_dim), (heads, spec.key_dim)),
                  "key": ((key, heads, spec.key_dim), (heads, spec.key_dim)),
                  "value": ((value, heads, value_dim), (heads, value_dim)),
                  "attention_output": ((heads, value_dim, self.output_features), (self.output_features,))}
        self.kernels, self.biases = {}, {}
        for part, (kernel_shape, bias_shape) in shapes.items():  # Keras' weight order
            self.kernels[part] = self.add_param(f"{part}/kernel", initialize(spec.kernel_initializer, rng,
                                                                            kernel_shape))
            if spec.use_bias:
                self.biases[part] = self.add_param(f"{part}/bias", initialize(spec.bias_initializer, rng, bias_shape))
        self.rng = rng  # the run's generator, for dropout: its state is saved with the checkpoint
        return (self.steps[0], self.output_features)

    def extra_outputs(self) -> dict[str, Shape]:
        if not self.spec.return_attention_scores:
            return {}
        return {"attention_scores": (self.spec.num_heads, *self.steps)}

    def extra_output_names(self) -> list[str]:
        return ["attention_scores"] if self.spec.return_attention_scores else []  # steps are known once connected

    def _packed(self, parts: tuple[str, ...], features: int) -> tuple[Tensor, Tensor | None]:
        """The kernels of the projections `parts` side by side, (features, heads * their sizes summed), [first |
        second | ...], and their biases likewise (None without biases): one matrix product does them all."""
        kernels = [ops.reshape(self.kernels[part], (features, -1)) for part in parts]
        kernel = kernels[0] if len(parts) == 1 else ops.concatenate(kernels, axis=1)
        if not self.biases:
            return kernel, None
        biases = [ops.reshape(self.biases[part], (-1,)) for part in parts]
        return kernel, biases[0] if len(parts) == 1 else ops.concatenate(biases, axis=0)

    def _project(self, part: str, x: Tensor) -> Tensor:
        """x (batch, steps, features) through one projection: (batch, steps, heads, its size)."""
        kernel, bias = self._packed((part,), x.shape[-1])
        projected = x @ kernel if bias is None else ops.affine(x, kernel, bias)
        return ops.reshape(projected, (*x.shape[:2], self.spec.num_heads, -1))

    def attention_mask(self, query: Tensor, value: Tensor, key: Tensor | None) -> np.ndarray | None:
        """Keras' attention mask (batch or 1, queries, keys) from the inputs' step masks and use_causal_mask."""
        masks = []
        if mask_covers(query.mask, query.shape):
            masks.append(np.asarray(query.mask, bool)[:, :, None])
        for source in (value, key):
            if source is not None and mask_covers(source.mask, source.shape):
                masks.append(np.asarray(source.mask, bool)[:, None, :])
        if self.spec.use_causal_mask:
            masks.append(np.tril(np.ones((query.shape[1], value.shape[1]), bool))[None])
        if not masks:
            return None
        combined = masks[0]
        for mask in masks[1:]:
            combined = combined & mask
        return np.broadcast_to(combined, (combined.shape[0], query.shape[1], value.shape[1]))

    def __call__(self, query: Tensor, value: Tensor | None = None, key: Tensor | None = None,
                 training: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        value = query if value is None else value
        mask = self.attention_mask(query, value, key)
        key = value if key is None else key
        spec, scale = self.spec, 1.0 / math.sqrt(self.spec.key_dim)
        keep = None
        if training and spec.dropout > 0:
            keep = (self.rng.random((query.shape[0], spec.num_heads, query.shape[1], value.shape[1]),
                                    dtype=np.float32) >= spec.dropout) * np.asarray(1.0 / (1.0 - spec.dropout),
                                                                                    np.float32)
        value_dim = spec.value_dim or spec.key_dim
        kernel = self.kernels["attention_output"]
        out_kernel, out_bias = ops.reshape(kernel, (-1, kernel.shape[-1])), self.biases.get("attention_output")
        if query is value and key is value:  # self-attention: the three projections as one matrix product
            qkv_kernel, qkv_bias = self._packed(PROJECTIONS, query.shape[-1])
            out, scores = ops.self_attention(query, qkv_kernel, qkv_bias, out_kernel, out_bias, spec.num_heads,
                                             spec.key_dim, value_dim, scale, mask, keep)
        else:
            q, k, v = (self._project(part, x) for part, x in zip(PROJECTIONS, (query, key, value)))
            attended, scores = ops.dot_product_attention(q, k, v, scale, mask, keep)
            merged = ops.reshape(attended, (*attended.shape[:2], -1))
            out = merged @ out_kernel if out_bias is None else ops.affine(merged, out_kernel, out_bias)
        out.mask = query.mask  # Keras hands the query's mask on
        return (out, scores) if self.spec.return_attention_scores else out
