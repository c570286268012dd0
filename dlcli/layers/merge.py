"""Merge layers: several inputs joined into one (concatenate) or combined elementwise (add, multiply, ...)."""

from __future__ import annotations

from typing import Callable, ClassVar, Literal, Sequence

import numpy as np
from pydantic import Field

from dlcli import ops, registry
from dlcli.errors import SpecError
from dlcli.layers.base import Layer, LayerSpec, Shape, feature_axis
from dlcli.tensor import Tensor


class Merge(Layer):
    """Base of the layers that take two or more inputs."""

    keeps_mask = True
    arity: ClassVar[int | None] = None

    def connect(self, in_shapes: list[Shape], rng: np.random.Generator) -> Shape:
        if len(in_shapes) < 2:
            raise SpecError(f"{self.key}: {self.spec.type} needs at least two inputs, got {len(in_shapes)}")
        return self.merged_shape(in_shapes)

    def merged_shape(self, in_shapes: list[Shape]) -> Shape:
        """Elementwise merges need one shape for all inputs (per example)."""
        if any(shape != in_shapes[0] for shape in in_shapes):
            shapes = ", ".join(str(list(s)) for s in in_shapes)
            raise SpecError(f"{self.key}: {self.spec.type} needs inputs of one shape, got {shapes}; "
                            "use concatenate to join different widths")
        return in_shapes[0]


class ConcatenateSpec(LayerSpec):
    """type = "concatenate"."""

    type: Literal["concatenate"] = "concatenate"
    axis: int = Field(-1, description="The axis to join along, counting the batch axis as 0 (Keras); -1: the last.")


@registry.layers.register("concatenate", spec=ConcatenateSpec)
class Concatenate(Merge):
    """Joins inputs along an axis (the last by default); the other axes must agree."""

    spec: ConcatenateSpec

    def merged_shape(self, in_shapes: list[Shape]) -> Shape:
        rank = len(in_shapes[0])
        if any(len(s) != rank for s in in_shapes):
            raise SpecError(f"{self.key}: concatenate needs inputs of one rank, got shapes "
                            f"{', '.join(str(list(s)) for s in in_shapes)}")
        axis = feature_axis(self, self.spec.axis, in_shapes[0]) - 1  # the spec's axis counts the batch
        others = {tuple(d for i, d in enumerate(s) if i != axis) for s in in_shapes}
        if len(others) > 1:
            raise SpecError(f"{self.key}: concatenate along axis {self.spec.axis} needs the other axes to agree, "
                            f"got shapes {', '.join(str(list(s)) for s in in_shapes)}")
        self.batch_axis = axis + 1
        return tuple(sum(s[i] for s in in_shapes) if i == axis else d for i, d in enumerate(in_shapes[0]))

    def __call__(self, *xs: Tensor, training: bool = False) -> Tensor:
        return ops.concatenate(xs, axis=self.batch_axis)


def _fold(xs: Sequence[Tensor], combine: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = combine(out, x)
    return out


class AddSpec(LayerSpec):
    """type = "add"."""

    type: Literal["add"] = "add"


@registry.layers.register("add", spec=AddSpec)
class Add(Merge):
    """Elementwise sum of inputs of one shape (residual connections)."""

    def __call__(self, *xs: Tensor, training: bool = False) -> Tensor:
        return _fold(xs, ops.add)


class MultiplySpec(LayerSpec):
    """type = "multiply"."""

    type: Literal["multiply"] = "multiply"


@registry.layers.register("multiply", spec=MultiplySpec)
class Multiply(Merge):
    """Elementwise product of inputs of one shape (gating)."""

    def __call__(self, *xs: Tensor, training: bool = False) -> Tensor:
        return _fold(xs, ops.mul)


class AverageSpec(LayerSpec):
    """type = "average"."""

    type: Literal["average"] = "average"


@registry.layers.register("average", spec=AverageSpec)
class Average(Merge):
    """Elementwise mean of inputs of one shape."""

    def __call__(self, *xs: Tensor, training: bool = False) -> Tensor:
        return _fold(xs, ops.add) * (1.0 / len(xs))


class MaximumSpec(LayerSpec):
    """type = "maximum"."""

    type: Literal["maximum"] = "maximum"


@registry.layers.register("maximum", spec=MaximumSpec)
class Maximum(Merge):
    """Elementwise maximum of inputs of one shape."""

    def __call__(self, *xs: Tensor, training: bool = False) -> Tensor:
        return _fold(xs, ops.maximum)
