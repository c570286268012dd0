"""PositionalEmbedding: the book's token plus position embedding (ch. 11), learned or sinusoidal positions."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from dlcli import registry
from dlcli.errors import SpecError
from dlcli.layers.base import InitializerName, Layer, LayerSpec, Shape
from dlcli.tensor import Tensor


class PositionalEmbeddingSpec(LayerSpec):
    """[[model.layers]] type = "positional_embedding"."""

    type: Literal["positional_embedding"] = "positional_embedding"
    sequence_length: int = Field(gt=0, description="The longest sequence: positions run from 0 to sequence_length "
                                                   "- 1.")
    input_dim: int = Field(gt=0, description="Vocabulary size: ids run from 0 to input_dim - 1.")
    output_dim: int = Field(gt=0, description="Width of each embedding vector.")
    positions: Literal["learned", "sinusoidal"] = Field(
        "learned", description='learned: a second embedding table, one row per position (the book\'s); '
                               'sinusoidal: fixed sines and cosines of the position (Vaswani et al.), no weights.')
    mask_zero: bool = Field(True, description="Id 0 is padding: the output's mask is False there (the book's "
                                              "compute_mask), so attention and losses skip it.")
    embeddings_initializer: InitializerName = Field("uniform", description="How the tables start.")


def sinusoidal_positions(length: int, width: int, max_wavelength: float = 10000.0) -> np.ndarray:
    """(length, width) position encodings: sin at even features, cos at odd ones, wavelengths 2 pi up to
    2 pi max_wavelength (Vaswani et al. 2017, as keras_hub's SinePositionEncoding interleaves them)."""
    positions = np.arange(length, dtype=np.float64)[:, None]
    timescales = max_wavelength ** (-(2 * (np.arange(width) // 2)) / width)
    angles = positions * timescales[None, :]
    return np.where(np.arange(width) % 2 == 0, np.sin(angles), np.cos(angles)).astype(np.float32)


@registry.layers.register("positional_embedding", spec=PositionalEmbeddingSpec)
class PositionalEmbedding(Layer):
    """Token ids (batch, steps) to token embeddings plus position embeddings (batch, steps, output_dim)."""

    spec: PositionalEmbeddingSpec

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        spec = self.spec
        if len(in_shape) != 1 or in_shape[0] > spec.sequence_length:
            raise SpecError(f"{self.key}: expects sequences of at most sequence_length = {spec.sequence_length} ids "
                            f"(batch, steps), found per-example shape {list(in_shape)}; raise sequence_length or "
                            "pad and cut the data to it")
        # the book's two Embedding layers: weights "<name>/token_embeddings/embeddings" and
        # "<name>/position_embeddings/embeddings"
        token = {"type": "embedding", "input_dim": spec.input_dim, "output_dim": spec.output_dim,
                 "embeddings_initializer": spec.embeddings_initializer, "mask_zero": spec.mask_zero}
        self.tokens, _ = self.connect_sublayer("token_embeddings", token, [in_shape], rng)
        self.position_ids = np.arange(in_shape[0])
        if spec.positions == "learned":
            position = {"type": "embedding", "input_dim": spec.sequence_length, "output_dim": spec.output_dim,
                        "embeddings_initializer": spec.embeddings_initializer}
            self.positions, _ = self.connect_sublayer("position_embeddings", position, [in_shape], rng)
        else:
            self.encoding = Tensor(sinusoidal_positions(in_shape[0], spec.output_dim))
        return (in_shape[0], spec.output_dim)

    @property
    def ids_from(self) -> str | None:
        """The key of the text_vectorization feeding it directly (set by the graph), which its token table's
        advice names."""
        return self.tokens.ids_from

    @ids_from.setter
    def ids_from(self, key: str | None) -> None:
        self.tokens.ids_from = key

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        tokens = self.tokens(x, training=training)
        if self.spec.positions == "learned":
            positions = self.positions(Tensor(self.position_ids), training=training)
        else:
            positions = self.encoding
        out = tokens + positions  # (steps, output_dim) broadcast over the batch
        out.mask = tokens.mask
        return out
