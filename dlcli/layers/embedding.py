"""Embedding: integer ids to rows of a learned table, whose gradient touches only the rows looked up."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from dlcli import ops, registry
from dlcli.errors import DataError
from dlcli.initializers import initialize
from dlcli.layers.base import InitializerName, Layer, LayerSpec, Shape
from dlcli.tensor import Array, Tensor


class EmbeddingSpec(LayerSpec):
    """[[model.layers]] type = "embedding"."""

    type: Literal["embedding"] = "embedding"
    input_dim: int = Field(gt=0, description="Vocabulary size: ids run from 0 to input_dim - 1.")
    output_dim: int = Field(gt=0, description="Width of each embedding vector.")
    embeddings_initializer: InitializerName = Field("uniform", description="How the table starts.")
    mask_zero: bool = Field(False, description="Id 0 is padding: the output's mask is False there, as in Keras "
                                               "(so 0 is reserved and input_dim is the vocabulary size + 1).")


@registry.layers.register("embedding", spec=EmbeddingSpec)
class Embedding(Layer):
    """Turns integer ids (batch, ...) into learned vectors (batch, ..., output_dim); sparse gradient."""

    spec: EmbeddingSpec
    # the key of the text_vectorization that makes the ids, when it feeds this layer directly (the graph sets it):
    # an id too large for the table is then its vocabulary's doing, which max_tokens caps
    ids_from: str | None = None

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        # the checkpoint name follows Keras: "<layer name>/embeddings"
        table_shape = (self.spec.input_dim, self.spec.output_dim)
        self.embeddings = self.add_param("embeddings", initialize(self.spec.embeddings_initializer, rng, table_shape))
        return (*in_shape, self.spec.output_dim)

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        ids = self._ids(x.data)
        # the table's gradient is SparseRows: optimizers then update only the rows this batch looked up
        out = ops.take_rows(self.embeddings, ids)
        if self.spec.mask_zero:
            out.mask = ids != 0
        return out

    def _ids(self, x: Array) -> Array:
        """x as integer ids, each checked to lie in [0, input_dim); anything else is a DataError."""
        where = f"{self.key} (embedding {self.name!r})"
        if x.dtype.kind in "iu":
            ids = x
        elif x.dtype.kind == "f":  # a float32 model input holding ids: Keras casts them too
            ids = x.astype(np.int64)
            if not np.array_equal(ids, x):
                raise DataError(f"{where}: expected integer ids, found non-integer values of dtype {x.dtype}; "
                                'declare the input as input = { shape = [...], dtype = "int32" }')
        else:
            raise DataError(f"{where}: expected integer ids, found dtype {x.dtype}")
        if ids.size == 0:
            return ids
        # two reductions: cheap next to the lookup itself, and they find the offending value
        low, high, size = int(ids.min()), int(ids.max()), self.spec.input_dim
        if low < 0:
            raise DataError(f"{where}: found id {low}, but ids must lie in 0..{size - 1} (input_dim = {size}); "
                            "negative ids are not valid, check how the data was encoded and padded")
        if high >= size:
            fewer = (f"cap the vocabulary of {self.ids_from} (text_vectorization): max_tokens = {size}, which counts "
                     "its padding and OOV entries") if self.ids_from is not None else \
                "give the data fewer distinct ids (imdb and reuters: data.options.num_words)"
            raise DataError(f"{where}: found id {high}, but ids must lie in 0..{size - 1} (input_dim = {size}); "
                            f"set input_dim to at least {high + 1}, or {fewer}")
        return ids
