"""Bidirectional: a recurrent layer run forward and backward in time, the two outputs merged (Keras' wrapper)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field

from dlcli import ops, registry
from dlcli.layers.base import Layer, LayerSpec, Shape, create_layer
from dlcli.layers.recurrent import GRUSpec, LSTMSpec, Recurrent, SimpleRNNSpec
from dlcli.tensor import Tensor

WRAPPABLE = ("simple_rnn", "lstm", "gru")


def _recurrent_only(value: Any) -> Any:
    """A clear message for a layer bidirectional cannot wrap, instead of the union's list of every layer."""
    kind = value.get("type") if isinstance(value, dict) else None
    if isinstance(kind, str) and kind not in WRAPPABLE:
        raise ValueError(f'bidirectional wraps a recurrent layer: type = "simple_rnn", "lstm" or "gru", '
                         f"got {kind!r}")
    if isinstance(value, dict) and value.get("return_state") is True:
        raise ValueError("bidirectional gives one output: return_state is not supported inside it; wrap nothing, "
                         "or drop return_state")
    return value


RecurrentConfig = Annotated[SimpleRNNSpec | LSTMSpec | GRUSpec, Field(discriminator="type"),
                            BeforeValidator(_recurrent_only)]


class BidirectionalSpec(LayerSpec):
    """type = "bidirectional"."""

    type: Literal["bidirectional"] = "bidirectional"
    layer: RecurrentConfig = Field(description='The recurrent layer to run both ways, e.g. { type = "lstm", '
                                               'units = 32 }.')
    merge_mode: Literal["concat", "sum", "mul", "ave"] = Field("concat", description="How the forward and backward "
                                                                                     "outputs combine: concatenated, "
                                                                                     "summed, multiplied or "
                                                                                     "averaged.")


@registry.layers.register("bidirectional", spec=BidirectionalSpec)
class Bidirectional(Layer):
    """Runs a recurrent layer forward and backward in time and merges the two outputs (concat, sum, mul, ave)."""

    spec: BidirectionalSpec

    def __init__(self, spec: BidirectionalSpec, name: str | None = None) -> None:
        super().__init__(spec, name)
        inner = spec.layer.name or spec.layer.type
        # Keras names the copies forward_<inner> and backward_<inner>: weights "<name>/forward_lstm/kernel"
        self.forward_layer = self._copy(f"forward_{inner}")
        self.backward_layer = self._copy(f"backward_{inner}")
        # the backward copy runs from the last step to the first (with a mask, from each sequence's last valid
        # step) and writes each output at its own step, so its sequence needs no flipping back
        self.backward_layer.reverse = True

    def _copy(self, inner: str) -> Recurrent:
        layer = create_layer(self.spec.layer, f"{self.name}/{inner}")
        assert isinstance(layer, Recurrent)
        # Keras forces zero outputs at masked steps when the wrapper returns sequences
        layer.zero_output_for_mask = self.spec.layer.return_sequences
        return layer

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        for layer in (self.forward_layer, self.backward_layer):
            layer.key = f"{self.key}.layer"
            out_shape = layer.connect([in_shape], rng)  # the wrapped layer checks the input's rank
            prefix = layer.name.removeprefix(f"{self.name}/")
            self.params.update({f"{prefix}/{weight}": tensor for weight, tensor in layer.params.items()})
        if self.spec.merge_mode == "concat":
            return (*out_shape[:-1], 2 * out_shape[-1])
        return out_shape

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        forward, backward = self.forward_layer(x, training=training), self.backward_layer(x, training=training)
        mode = self.spec.merge_mode
        if mode == "concat":
            out = ops.concatenate([forward, backward], axis=-1)
        elif mode == "sum":
            out = forward + backward
        elif mode == "mul":
            out = forward * backward
        else:
            out = (forward + backward) * 0.5
        out.mask = forward.mask
        return out
