"""Pooling layers, channels-last as in Keras: max and average over windows, and global pooling.

1-D layers take (batch, steps, channels), 2-D layers (batch, height, width, channels).
"""

from __future__ import annotations

from typing import Callable, ClassVar, Literal

import numpy as np
from pydantic import Field, PositiveInt

from dlcli import ops, registry
from dlcli.errors import SpecError
from dlcli.layers.base import IMAGE, SEQUENCE, Layer, LayerSpec, Shape
from dlcli.ops.pool import pool_output_size
from dlcli.tensor import Tensor



def _as_tuple(value: int | tuple[int, ...], length: int) -> tuple[int, ...]:
    return (value,) * length if isinstance(value, int) else tuple(value)


class Pooling1DSpec(LayerSpec):
    """Keys of the 1-D pooling layers."""

    pool_size: PositiveInt | tuple[PositiveInt] = Field(2, description="Window length: 2 or [2].")
    strides: PositiveInt | tuple[PositiveInt] | None = Field(None, description="Step between windows; default: "
                                                                               "pool_size, as in Keras.")
    padding: Literal["valid", "same"] = Field("valid", description="valid: windows inside the input only; same: "
                                                                   "padded so that no step is left out.")


class Pooling2DSpec(LayerSpec):
    """Keys of the 2-D pooling layers; pool_size and strides are one int for both axes or [height, width]."""

    pool_size: PositiveInt | tuple[PositiveInt, PositiveInt] = Field(2, description="Window size: 2 or [2, 2].")
    strides: PositiveInt | tuple[PositiveInt, PositiveInt] | None = Field(None, description="Step between windows; "
                                                                                            "default: pool_size, as "
                                                                                            "in Keras.")
    padding: Literal["valid", "same"] = Field("valid", description="valid: windows inside the input only; same: "
                                                                   "padded so that no pixel is left out.")


class Pooling(Layer):
    """Base of the window pooling layers: shape inference by Keras' rules, then one pooling op."""

    spec: Pooling1DSpec | Pooling2DSpec
    spatial_rank: ClassVar[int]  # the axes pooled: the input's (*spatial axes, channels) but the last
    pool: ClassVar[Callable[..., Tensor]]

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        self.pool_size = _as_tuple(self.spec.pool_size, self.spatial_rank)
        strides = self.spec.pool_size if self.spec.strides is None else self.spec.strides
        self.strides = _as_tuple(strides, self.spatial_rank)
        out_shape = []
        for axis, size, pool, stride in zip(self.input_axes, in_shape, self.pool_size, self.strides):
            out, _ = pool_output_size(size, pool, stride, self.spec.padding)
            if out < 1:
                raise SpecError(f'{self.key}: pool_size {pool} is larger than the input\'s {axis} ({size}) with '
                                f'padding = "valid"; use padding = "same" or a smaller pool_size')
            out_shape.append(out)
        return (*out_shape, in_shape[-1])

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        if self.spatial_rank == 1:
            return self.pool(x, self.pool_size[0], self.strides[0], self.spec.padding)
        return self.pool(x, self.pool_size, self.strides, self.spec.padding)


class MaxPooling1DSpec(Pooling1DSpec):
    """[[model.layers]] type = "max_pooling1d"."""

    type: Literal["max_pooling1d"] = "max_pooling1d"


@registry.layers.register("max_pooling1d", spec=MaxPooling1DSpec)
class MaxPooling1D(Pooling):
    """Maximum over windows of steps, per channel: (batch, steps, channels)."""

    spatial_rank, pool, input_axes = 1, staticmethod(ops.max_pool1d), SEQUENCE


class MaxPooling2DSpec(Pooling2DSpec):
    """[[model.layers]] type = "max_pooling2d"."""

    type: Literal["max_pooling2d"] = "max_pooling2d"


@registry.layers.register("max_pooling2d", spec=MaxPooling2DSpec)
class MaxPooling2D(Pooling):
    """Maximum over windows of pixels, per channel: (batch, height, width, channels)."""

    spatial_rank, pool, input_axes = 2, staticmethod(ops.max_pool2d), IMAGE


class AveragePooling1DSpec(Pooling1DSpec):
    """[[model.layers]] type = "average_pooling1d"."""

    type: Literal["average_pooling1d"] = "average_pooling1d"


@registry.layers.register("average_pooling1d", spec=AveragePooling1DSpec)
class AveragePooling1D(Pooling):
    """Mean over windows of steps, per channel (with "same", over the steps inside the input)."""

    spatial_rank, pool, input_axes = 1, staticmethod(ops.average_pool1d), SEQUENCE


class AveragePooling2DSpec(Pooling2DSpec):
    """[[model.layers]] type = "average_pooling2d"."""

    type: Literal["average_pooling2d"] = "average_pooling2d"


@registry.layers.register("average_pooling2d", spec=AveragePooling2DSpec)
class AveragePooling2D(Pooling):
    """Mean over windows of pixels, per channel (with "same", over the pixels inside the image)."""

    spatial_rank, pool, input_axes = 2, staticmethod(ops.average_pool2d), IMAGE


class GlobalPoolingSpec(LayerSpec):
    """Keys of the global pooling layers."""

    keepdims: bool = Field(False, description="Keep the pooled axes, as size 1 (Keras' keepdims).")


class GlobalPooling(Layer):
    """Base of the global pooling layers: one reduction over every spatial axis."""

    spec: GlobalPoolingSpec
    spatial_rank: ClassVar[int]
    reduce: ClassVar[Callable[..., Tensor]]

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        return (*(1,) * self.spatial_rank, in_shape[-1]) if self.spec.keepdims else (in_shape[-1],)

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        return self.reduce(x, axis=tuple(range(1, self.spatial_rank + 1)), keepdims=self.spec.keepdims)


class GlobalAveragePooling1DSpec(GlobalPoolingSpec):
    """[[model.layers]] type = "global_average_pooling1d"."""

    type: Literal["global_average_pooling1d"] = "global_average_pooling1d"


@registry.layers.register("global_average_pooling1d", spec=GlobalAveragePooling1DSpec)
class GlobalAveragePooling1D(GlobalPooling):
    """Mean over all steps, per channel: (batch, steps, channels) -> (batch, channels)."""

    spatial_rank, reduce, input_axes = 1, staticmethod(ops.mean), SEQUENCE


class GlobalAveragePooling2DSpec(GlobalPoolingSpec):
    """[[model.layers]] type = "global_average_pooling2d"."""

    type: Literal["global_average_pooling2d"] = "global_average_pooling2d"


@registry.layers.register("global_average_pooling2d", spec=GlobalAveragePooling2DSpec)
class GlobalAveragePooling2D(GlobalPooling):
    """Mean over all pixels, per channel: (batch, height, width, channels) -> (batch, channels)."""

    spatial_rank, reduce, input_axes = 2, staticmethod(ops.mean), IMAGE


class GlobalMaxPooling1DSpec(GlobalPoolingSpec):
    """[[model.layers]] type = "global_max_pooling1d"."""

    type: Literal["global_max_pooling1d"] = "global_max_pooling1d"


@registry.layers.register("global_max_pooling1d", spec=GlobalMaxPooling1DSpec)
class GlobalMaxPooling1D(GlobalPooling):
    """Maximum over all steps, per channel: (batch, steps, channels) -> (batch, channels)."""

    spatial_rank, reduce, input_axes = 1, staticmethod(ops.max), SEQUENCE


class GlobalMaxPooling2DSpec(GlobalPoolingSpec):
    """[[model.layers]] type = "global_max_pooling2d"."""

    type: Literal["global_max_pooling2d"] = "global_max_pooling2d"


@registry.layers.register("global_max_pooling2d", spec=GlobalMaxPooling2DSpec)
class GlobalMaxPooling2D(GlobalPooling):
    """Maximum over all pixels, per channel: (batch, height, width, channels) -> (batch, channels)."""

    spatial_rank, reduce, input_axes = 2, staticmethod(ops.max), IMAGE
