"""Layer: named weights, non-trainable state, a build step that infers shapes, and a call on tensors."""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from dlcli import registry
from dlcli.errors import SpecError
from dlcli.registry import StrictSpec, known_name
from dlcli.tensor import Tensor

Shape = tuple[int, ...]  # per-example shape: the batch axis is implicit
# the per-example axes of the inputs layers declare (Layer.input_axes)
SEQUENCE = ("steps", "channels")
IMAGE = ("height", "width", "channels")
ActivationName = Annotated[str, known_name(registry.activations)]
InitializerName = Annotated[str, known_name(registry.initializers)]


class LayerSpec(StrictSpec):
    """Keys every layer takes: its registered `type` and an optional `name`."""

    type: str
    name: str | None = Field(None, description="Names the layer's weights (<name>/kernel) and its summary row; "
                                               "default: its type, numbered as in Keras (dense, dense_1).")
    trainable: bool = Field(True, description="false freezes the layer: its weights keep their values and count as "
                                              "non-trainable, and a frozen batch_normalization normalizes with its "
                                              "moving statistics in training too (Keras 3).")

    @field_validator("name")
    @classmethod
    def _name_without_slash(cls, name: str | None) -> str | None:
        problem = layer_name_problem(name) if name is not None else None
        if problem:
            raise ValueError(problem)
        return name


def layer_name_problem(name: str) -> str | None:
    """What makes `name` unfit to name a layer, or None. Weights are saved as <layer name>/<weight>, so a '/' in a
    layer's name could give two weights one name in a checkpoint, and one would be lost (Keras 3 refuses it too)."""
    if "/" in name:
        return (f"{name!r} contains '/', which separates a layer's name from its weights' names (dense_1/kernel), "
                f"so two layers could save a weight under one name; write {name.replace('/', '_')!r}")
    return None


class Layer:
    """A building block of a model; its spec model is its whole configuration.

    Weights are created in `build`, once the input shape is known, and named `<layer name>/<weight>`
    as in Keras checkpoints. Trainable weights are tensors that require a gradient; state (moving
    statistics, adapted means) is plain arrays that only the layer itself updates.

    One protocol for every layer: a graph node builds it with `connect(in_shapes, rng)`, the per-example
    shapes of what feeds it in order, and calls it as `layer(*inputs, training=...)`. What a layer takes is
    declared, not coded: `arity` (main inputs) and `input_axes` (their per-example axes), which `connect`
    checks once, with one message for every layer, before `build` sees a shape.
    """

    spec: LayerSpec
    arity: ClassVar[int | None] = 1  # main inputs taken: 1, or None for two or more (merge layers)
    # the names of each main input's per-example axes, e.g. IMAGE; None: any rank
    input_axes: ClassVar[tuple[str, ...] | None] = None
    # True when a training forward pass changes the state (batch-norm moving statistics): data-parallel
    # ranks then average it after every step, so that all replicas stay equal
    state_moves_in_training: ClassVar[bool] = False
    # True when each output step is computed from the same input step alone (dense, activation, merges...):
    # the model then hands the input's mask (batch, time) on to the output, as Keras' supports_masking does,
    # so a ctc loss or a decoding after a dense layer still knows which steps are padding
    keeps_mask: ClassVar[bool] = False
    # the spec key that turns on extra_outputs (recurrent layers: return_state), named when a sequential model
    # refuses them
    ports_option: ClassVar[str] = ""

    def __init__(self, spec: LayerSpec, name: str | None = None) -> None:
        self.spec = spec
        self.name = name or spec.name or spec.type
        self.key = self.name  # where the spec declares it (model.layers[2]); the graph sets it, errors use it
        self.params: dict[str, Tensor] = {}
        self.state: dict[str, np.ndarray] = {}
        # False once frozen (the spec's trainable = false, or a [train] freeze pattern): see freeze()
        self.trainable = spec.trainable

    def add_param(self, weight: str, value: np.ndarray) -> Tensor:
        """Register a trainable weight, named `<layer>/<weight>`."""
        tensor = Tensor(value, requires_grad=True, name=f"{self.name}/{weight}")
        self.params[weight] = tensor
        return tensor

    def add_state(self, weight: str, value: np.ndarray) -> np.ndarray:
        """Register a non-trainable array (saved in checkpoints, never touched by an optimizer)."""
        self.state[weight] = value
        return value

    def connect(self, in_shapes: list[Shape], rng: np.random.Generator) -> Shape:
        """Check the per-example shapes of the tensors a graph node feeds this layer against what it declares,
        then build it; returns the (main) output's per-example shape."""
        for shape in in_shapes if self.arity is None else in_shapes[:self.arity]:
            check_rank(self, shape)
        return self.build(in_shapes[0], rng)

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        """Create weights for inputs of per-example shape `in_shape`; return the output's per-example shape."""
        return in_shape

    def __call__(self, *inputs: Tensor, training: bool = False) -> Tensor | tuple[Tensor, ...]:  # pragma: no cover
        """The layer on a batch of each input: its output, or (output, *extra outputs) (see extra_outputs)."""
        raise NotImplementedError

    def extra_outputs(self) -> dict[str, Shape]:
        """Outputs besides the main one (a recurrent layer's final states with return_state), by port name, with
        their per-example shapes once built; a graph node names them `<node>.<port>`. A layer with extra outputs
        returns (main, *extras) in this order."""
        return {}

    def extra_output_names(self) -> list[str]:
        """The ports of extra_outputs(), known before the layer is connected (the graph collects every node's
        port names first); a layer whose port shapes need its input shapes overrides it."""
        return list(self.extra_outputs())

    def extra_inputs(self) -> int:
        """How many inputs may follow the first (recurrent layers: the initial h, and c for lstm;
        multi_head_attention: the value, then the key)."""
        return 0

    def connect_sublayer(self, part: str, config: dict[str, Any] | LayerSpec, in_shapes: list[Shape],
                         rng: np.random.Generator) -> tuple[Layer, Shape]:
        """A layer inside this one (a block's attention, its dense projection), connected and built: it is named
        `<this layer>/<part>`, so its weights are this layer's `<part>/<weight>` in checkpoints and counts."""
        layer = create_layer(config, f"{self.name}/{part}")
        layer.key = f"{self.key} ({part})"
        out_shape = layer.connect(in_shapes, rng)
        self.params.update({f"{part}/{weight}": tensor for weight, tensor in layer.params.items()})
        self.state.update({f"{part}/{weight}": array for weight, array in layer.state.items()})
        return layer, out_shape

    def weights(self) -> dict[str, Tensor]:
        """Every weight by full name, frozen ones included (checkpoints hold them all)."""
        return {t.name: t for t in self.params.values()}  # type: ignore[misc]

    def trainable_weights(self) -> dict[str, Tensor]:
        """The weights an optimizer updates, by full name: those not frozen."""
        return {t.name: t for t in self.params.values() if t.requires_grad}  # type: ignore[misc]

    def freeze(self, weights: set[str] | None = None) -> None:
        """Freeze some weights (by name within the layer, e.g. "kernel"), or the whole layer: a frozen weight
        needs no gradient, so the optimizer never sees it and backward stops where only frozen weights lie."""
        for weight, tensor in self.params.items():
            if weights is None or weight in weights:
                tensor.requires_grad = False
        if weights is None or (self.params and not any(t.requires_grad for t in self.params.values())):
            self.trainable = False

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Non-trainable arrays by full name."""
        return {f"{self.name}/{k}": v for k, v in self.state.items()}

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, non-trainable) scalar counts, as Keras' summary gives them: frozen weights count as
        non-trainable, like the layer's state."""
        trainable = sum(t.size for t in self.params.values() if t.requires_grad)
        frozen = sum(t.size for t in self.params.values() if not t.requires_grad)
        return trainable, frozen + sum(int(np.size(v)) for v in self.state.values())


def create_layer(config: dict[str, Any] | LayerSpec, name: str | None = None) -> Layer:
    """A layer from its spec (a validated model, or a plain dict with `type`)."""
    if isinstance(config, dict):
        entry = registry.layers.entry(config["type"])
        config = entry.spec.model_validate(config)
    else:
        entry = registry.layers.entry(config.type)
    return entry.target(config, name)


def check_rank(layer: Layer, in_shape: Shape) -> None:
    """SpecError for the layer's key unless each example has the axes the layer declares (`input_axes`)."""
    axes = layer.input_axes
    if axes is None or len(in_shape) == len(axes):
        return
    expected, found = ", ".join(("batch", *axes)), ", ".join(("batch", *map(str, in_shape)))
    example = _reshape_target(in_shape, len(axes))
    hint = f', e.g. type = "reshape", target_shape = {example}' if example else ""
    raise SpecError(f"{layer.key}: expected rank {len(axes) + 1} ({expected}), found rank {len(in_shape) + 1} "
                    f"({found}); add a reshape layer first{hint}")


def feature_axis(layer: Layer, axis: int, in_shape: Shape, kind: str = "feature") -> int:
    """`axis` as Keras counts it (the batch axis is 0, negative axes count from the end) turned into a position in
    (batch, *in_shape); SpecError naming `<key>.axis` for the batch axis or an axis the inputs do not have."""
    rank = len(in_shape) + 1
    if not -rank <= axis < rank or axis % rank == 0:
        choices = "1" if rank == 2 else f"one of 1..{rank - 1}"
        raise SpecError(f"{layer.key}.axis: {axis} is not a {kind} axis of inputs of rank {rank} "
                        f"(batch, {', '.join(map(str, in_shape))}); give {choices}, or -1 for the last axis (0 is the "
                        "batch axis)")
    return axis % rank


def _reshape_target(in_shape: Shape, rank: int) -> list[int] | None:
    """A per-example target shape of `rank` axes that fits: one trailing axis of 1 added (one channel, or one
    feature per step), a square one-channel image from a flat vector, or the last two axes merged."""
    if len(in_shape) == rank - 1:
        return [*in_shape, 1]
    side = math.isqrt(in_shape[0]) if len(in_shape) == 1 else 0
    if rank == 3 and side > 0 and side * side == in_shape[0]:
        return [side, side, 1]
    if len(in_shape) == rank + 1:
        return [*in_shape[:-2], in_shape[-2] * in_shape[-1]]
    return None
