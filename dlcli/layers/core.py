"""Core layers without weights: activation, dropout, flatten, reshape, rescaling."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from dlcli import activations, ops, registry
from dlcli.errors import SpecError
from dlcli.layers.base import ActivationName, Layer, LayerSpec, Shape
from dlcli.tensor import Tensor


class ActivationSpec(LayerSpec):
    """[[model.layers]] type = "activation"."""

    type: Literal["activation"] = "activation"
    activation: ActivationName = Field(description="The activation function applied to the input.")


@registry.layers.register("activation", spec=ActivationSpec)
class Activation(Layer):
    """Applies an activation function by name."""

    keeps_mask = True
    spec: ActivationSpec

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        return activations.apply(self.spec.activation, x)


class DropoutSpec(LayerSpec):
    """[[model.layers]] type = "dropout"."""

    type: Literal["dropout"] = "dropout"
    rate: float = Field(ge=0.0, lt=1.0, description="Fraction of inputs set to zero in training.")


@registry.layers.register("dropout", spec=DropoutSpec)
class Dropout(Layer):
    """Inverted dropout in training (seeded by the run); identity in inference."""

    keeps_mask = True
    spec: DropoutSpec

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        self.rng = rng  # the run's generator: its state is saved with the checkpoint
        return in_shape

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        return ops.dropout(x, self.spec.rate, self.rng) if training else x


class FlattenSpec(LayerSpec):
    """[[model.layers]] type = "flatten"."""

    type: Literal["flatten"] = "flatten"


@registry.layers.register("flatten", spec=FlattenSpec)
class Flatten(Layer):
    """Flattens each example to one axis."""

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        return (math.prod(in_shape),)

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        return ops.reshape(x, (x.shape[0], -1))


class ReshapeSpec(LayerSpec):
    """[[model.layers]] type = "reshape"."""

    type: Literal["reshape"] = "reshape"
    target_shape: tuple[int, ...] = Field(description="Per-example shape; one entry may be -1.")

    @field_validator("target_shape")
    @classmethod
    def _valid_dims(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if any(d == 0 or d < -1 for d in shape) or shape.count(-1) > 1:
            raise ValueError(f"dimensions must be positive, with at most one -1; got {list(shape)}")
        return shape


@registry.layers.register("reshape", spec=ReshapeSpec)
class Reshape(Layer):
    """Gives each example a new shape with the same number of values."""

    spec: ReshapeSpec

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        target, size = list(self.spec.target_shape), math.prod(in_shape)
        known = math.prod(d for d in target if d != -1)
        if -1 in target and size % known == 0:
            target[target.index(-1)] = size // known
        if math.prod(target) != size:
            raise SpecError(f"{self.key}: cannot reshape {list(in_shape)} ({size} values) "
                            f"into {list(self.spec.target_shape)}")
        self.target = tuple(target)
        return self.target

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        return ops.reshape(x, (x.shape[0], *self.target))


class PermuteSpec(LayerSpec):
    """[[model.layers]] type = "permute"."""

    type: Literal["permute"] = "permute"
    dims: tuple[int, ...] = Field(description="The new order of the example's axes, counting from 1 (Keras).")

    @field_validator("dims")
    @classmethod
    def _a_permutation(cls, dims: tuple[int, ...]) -> tuple[int, ...]:
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"must be a permutation of 1..{len(dims)} (axes count from 1, the batch axis is 0), "
                             f"got {list(dims)}")
        return dims


@registry.layers.register("permute", spec=PermuteSpec)
class Permute(Layer):
    """Reorders each example's axes, e.g. dims = [2, 1, 3] turns (height, width, c) into (width, height, c)."""

    spec: PermuteSpec

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        if len(self.spec.dims) != len(in_shape):
            raise SpecError(f"{self.key}: dims {list(self.spec.dims)} name {len(self.spec.dims)} axes, but each "
                            f"example has {len(in_shape)} ({list(in_shape)})")
        return tuple(in_shape[d - 1] for d in self.spec.dims)

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        return ops.transpose(x, (0, *self.spec.dims))


class RescalingSpec(LayerSpec):
    """[[model.layers]] type = "rescaling"."""

    type: Literal["rescaling"] = "rescaling"
    scale: float = Field(description="The output is input * scale + offset (1/255 maps bytes to [0, 1]).")
    offset: float = Field(0.0, description="Added after scaling.")


@registry.layers.register("rescaling", spec=RescalingSpec)
class Rescaling(Layer):
    """x * scale + offset, e.g. scale = 1/255 for pixels."""

    keeps_mask = True
    spec: RescalingSpec

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        if x.dtype.kind in "uib":  # raw uint8 pixels become float32 here
            x = Tensor(x.data.astype(np.float32))
        scaled = x * self.spec.scale
        return scaled + self.spec.offset if self.spec.offset else scaled
