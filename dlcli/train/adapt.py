"""Preprocessing layers that learn from the training data (normalization, text_vectorization), adapted before
training as Keras' adapt() does: on the values that reach them, a batch at a time."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from dlcli.graph import Model
from dlcli.tensor import no_grad
from dlcli.train.loop import Split, in_order, input_tensor


def adapt_preprocessing(model: Model, train: Split, batch_size: int = 1024) -> None:
    """Adapt normalization and text_vectorization layers on the training data as it reaches them (layers before
    them applied), a batch at a time: the layer takes the batches one by one, so a split larger than memory (an
    image folder, time-series windows, which gathered whole would be sequence_length times their table) is never
    held whole."""
    dtypes = {name: spec.dtype for name, spec in model.inputs.items()}
    for index, node in enumerate(model.nodes):
        if not getattr(node.layer, "needs_adapt", False):
            continue
        prefix = Model(model.inputs, model.nodes[:index], {node.inputs[0]: None}, model.sequential)  # type: ignore
        node.layer.adapt(_values_reaching(prefix, node.inputs[0], train, dtypes, batch_size))


def _values_reaching(prefix: Model, name: str, train: Split, dtypes: dict[str, str],
                     batch_size: int) -> Iterator[np.ndarray]:
    """The training data's values at node or input `name`, batch by batch, computed by `prefix` (inference mode)."""
    for batch in train.batches(in_order(len(train), batch_size)):
        with no_grad():
            tensors = {k: input_tensor(v, dtypes[k]) for k, v in batch.inputs.items()}
            values = tensors if name in tensors else prefix(tensors)
        yield values[name].data
