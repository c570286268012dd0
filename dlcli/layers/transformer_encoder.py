"""TransformerEncoder: the book's ch. 11 encoder block as one layer.

attention -> residual -> layer norm -> dense projection (dense_dim, relu; then embed_dim) -> residual ->
layer norm, exactly as the book builds it: the attention is MultiHeadAttention(num_heads, key_dim =
embed_dim) of the input over itself, with the input's padding mask (key_dim may be set smaller); layer
norms have Keras' defaults. The
same block written out as graph nodes is specs/text_transformer_graph.toml. `dropout` (not in the book:
default 0) drops attention and projection outputs before each residual sum, as keras.io's TransformerBlock.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from dlcli import ops, registry
from dlcli.errors import SpecError
from dlcli.layers.base import SEQUENCE, ActivationName, Layer, LayerSpec, Shape
from dlcli.tensor import Tensor


class TransformerEncoderSpec(LayerSpec):
    """[[model.layers]] type = "transformer_encoder"."""

    type: Literal["transformer_encoder"] = "transformer_encoder"
    embed_dim: int = Field(gt=0, description="The input's features (the embedding width).")
    dense_dim: int = Field(gt=0, description="Width of the dense projection's hidden layer.")
    num_heads: int = Field(gt=0, description="Number of attention heads.")
    key_dim: int | None = Field(None, gt=0, description="Each head's query and key size; default: embed_dim, as the "
                                                        "book's block (embed_dim / num_heads keeps the attention's "
                                                        "width at embed_dim, as PyTorch's MultiheadAttention).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of the attention and projection outputs "
                                                            "dropped in training, before each residual sum (0: the "
                                                            "book's block).")
    activation: ActivationName = Field("relu", description="The dense projection's hidden activation.")


@registry.layers.register("transformer_encoder", spec=TransformerEncoderSpec)
class TransformerEncoder(Layer):
    """The book's Transformer encoder block: self-attention and a dense projection, each with residual and layer norm."""

    spec: TransformerEncoderSpec
    input_axes = SEQUENCE
    keeps_mask = True

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        spec = self.spec
        if in_shape[-1] != spec.embed_dim:
            raise SpecError(f"{self.key}: embed_dim = {spec.embed_dim}, but its input has {in_shape[-1]} features "
                            f"(per-example shape {list(in_shape)}); the residual sums need them equal")
        self.attention, _ = self.connect_sublayer("attention", {
            "type": "multi_head_attention", "num_heads": spec.num_heads, "key_dim": spec.key_dim or spec.embed_dim},
            [in_shape], rng)
        self.dense_1, hidden = self.connect_sublayer("dense_proj/dense", {
            "type": "dense", "units": spec.dense_dim, "activation": spec.activation}, [in_shape], rng)
        self.dense_2, _ = self.connect_sublayer("dense_proj/dense_1", {"type": "dense", "units": spec.embed_dim},
                                                [hidden], rng)
        self.norm_1, _ = self.connect_sublayer("layernorm_1", {"type": "layer_normalization"}, [in_shape], rng)
        self.norm_2, _ = self.connect_sublayer("layernorm_2", {"type": "layer_normalization"}, [in_shape], rng)
        self.rng = rng
        return in_shape

    def _dropped(self, x: Tensor, training: bool) -> Tensor:
        return ops.dropout(x, self.spec.dropout, self.rng) if training else x

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        attended = self._dropped(self.attention(x, training=training), training)
        projected_in = self.norm_1(x + attended, training=training)
        hidden = self.dense_1(projected_in, training=training)
        projected = self._dropped(self.dense_2(hidden, training=training), training)
        out = self.norm_2(projected_in + projected, training=training)
        out.mask = x.mask
        return out
