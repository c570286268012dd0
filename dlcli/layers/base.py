"""Layer: named weights, non-trainable state, a build step that infers shapes, and a call on tensors."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field

from dlcli import registry
from dlcli.registry import StrictSpec, known_name
from dlcli.tensor import Tensor

Shape = tuple[int, ...]  # per-example shape: the batch axis is implicit
ActivationName = Annotated[str, known_name(registry.activations)]
InitializerName = Annotated[str, known_name(registry.initializers)]


class LayerSpec(StrictSpec):
    """Keys every layer takes: its registered `type` and an optional `name`."""

    type: str
    name: str | None = Field(None, description="Names the layer's weights (<name>/kernel) and its summary row; "
                                               "default: its type, numbered as in Keras (dense, dense_1).")


class Layer:
    """A building block of a model; its spec model is its whole configuration.

    Weights are created in `build`, once the input shape is known, and named `<layer name>/<weight>`
    as in Keras checkpoints. Trainable weights are tensors that require a gradient; state (moving
    statistics, adapted means) is plain arrays that only the layer itself updates.
    """

    spec: LayerSpec
    arity: ClassVar[int | None] = 1  # inputs taken: 1, or None for two or more (merge layers)
    # True when a training forward pass changes the state (batch-norm moving statistics): data-parallel
    # ranks then average it after every step, so that all replicas stay equal
    state_moves_in_training: ClassVar[bool] = False
    # True when each output step is computed from the same input step alone (dense, activation, merges...):
    # the model then hands the input's mask (batch, time) on to the output, as Keras' supports_masking does,
    # so a ctc loss or a decoding after a dense layer still knows which steps are padding
    keeps_mask: ClassVar[bool] = False

    def __init__(self, spec: LayerSpec, name: str | None = None) -> None:
        self.spec = spec
        self.name = name or spec.name or spec.type
        self.key = self.name  # where the spec declares it (model.layers[2]); the graph sets it, errors use it
        self.params: dict[str, Tensor] = {}
        self.state: dict[str, np.ndarray] = {}

    def add_param(self, weight: str, value: np.ndarray) -> Tensor:
        """Register a trainable weight, named `<layer>/<weight>`."""
        tensor = Tensor(value, requires_grad=True, name=f"{self.name}/{weight}")
        self.params[weight] = tensor
        return tensor

    def add_state(self, weight: str, value: np.ndarray) -> np.ndarray:
        """Register a non-trainable array (saved in checkpoints, never touched by an optimizer)."""
        self.state[weight] = value
        return value

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        """Create weights for inputs of per-example shape `in_shape`; return the output's per-example shape."""
        return in_shape

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_outputs(self) -> dict[str, Shape]:
        """Outputs besides the main one (a recurrent layer's final states with return_state), by port name, with
        their per-example shapes once built; a graph node names them `<node>.<port>`. Called with `extra` after
        the main output, the layer returns (main, *extras) in this order."""
        return {}

    def state_inputs(self) -> int:
        """How many inputs may follow the first as its initial state (recurrent layers: h, and c for lstm)."""
        return 0

    def weights(self) -> dict[str, Tensor]:
        """Trainable weights by full name."""
        return {t.name: t for t in self.params.values()}  # type: ignore[misc]

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Non-trainable arrays by full name."""
        return {f"{self.name}/{k}": v for k, v in self.state.items()}

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, non-trainable) scalar counts, as Keras' summary gives them."""
        return sum(t.size for t in self.params.values()), sum(int(np.size(v)) for v in self.state.values())


def create_layer(config: dict[str, Any] | LayerSpec, name: str | None = None) -> Layer:
    """A layer from its spec (a validated model, or a plain dict with `type`)."""
    if isinstance(config, dict):
        entry = registry.layers.entry(config["type"])
        config = entry.spec.model_validate(config)
    else:
        entry = registry.layers.entry(config.type)
    return entry.target(config, name)
