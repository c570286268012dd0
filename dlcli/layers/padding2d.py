"""ZeroPadding2D and Cropping2D: rows and columns added around images, or cut from their edges (Keras' forms)."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BeforeValidator, Field

from dlcli import ops, registry
from dlcli.errors import SpecError
from dlcli.layers.base import IMAGE, Layer, LayerSpec, Shape
from dlcli.tensor import Tensor

NonNegative = Annotated[int, Field(ge=0)]
Edges = tuple[tuple[NonNegative, NonNegative], tuple[NonNegative, NonNegative]]


def _edges(value: object) -> object:
    """Keras' three forms: 1 (every edge), [rows, columns] (symmetric), [[top, bottom], [left, right]]."""
    if isinstance(value, int):
        return ((value, value), (value, value))
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return ((value[0], value[0]), (value[1], value[1]))
    return value


EdgesInput = Annotated[Edges, BeforeValidator(_edges, json_schema_input_type=NonNegative | tuple[
    NonNegative, NonNegative] | Edges)]


class ZeroPadding2DSpec(LayerSpec):
    """type = "zero_padding2d"."""

    type: Literal["zero_padding2d"] = "zero_padding2d"
    padding: EdgesInput = Field(((1, 1), (1, 1)), description="Zeros added: 1 on every edge, [rows, columns] on "
                                                              "both sides, or [[top, bottom], [left, right]].")


@registry.layers.register("zero_padding2d", spec=ZeroPadding2DSpec)
class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around (height, width, channels) images."""

    spec: ZeroPadding2DSpec
    input_axes = IMAGE

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        (top, bottom), (left, right) = self.spec.padding
        return (in_shape[0] + top + bottom, in_shape[1] + left + right, in_shape[2])

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        rows, columns = self.spec.padding
        return ops.zero_pad2d(x, rows, columns)


class Cropping2DSpec(LayerSpec):
    """type = "cropping2d"."""

    type: Literal["cropping2d"] = "cropping2d"
    cropping: EdgesInput = Field(((0, 0), (0, 0)), description="Cut off: 1 on every edge, [rows, columns] on both "
                                                               "sides, or [[top, bottom], [left, right]].")


@registry.layers.register("cropping2d", spec=Cropping2DSpec)
class Cropping2D(Layer):
    """Cuts rows and columns off the edges of (height, width, channels) images."""

    spec: Cropping2DSpec
    input_axes = IMAGE

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        (top, bottom), (left, right) = self.spec.cropping
        height, width = in_shape[0] - top - bottom, in_shape[1] - left - right
        if height < 1 or width < 1:
            raise SpecError(f"{self.key}: cropping {[list(p) for p in self.spec.cropping]} leaves nothing of inputs "
                            f"of {in_shape[0]}x{in_shape[1]}; crop less")
        return (height, width, in_shape[2])

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        (top, bottom), (left, right) = self.spec.cropping
        return x[:, top:x.shape[1] - bottom, left:x.shape[2] - right]
