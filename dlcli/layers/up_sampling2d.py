"""UpSampling2D: images enlarged by whole factors, nearest or bilinear, as Keras does."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from dlcli import ops, registry
from dlcli.layers.base import IMAGE, Layer, LayerSpec, Shape
from dlcli.layers.conv2d import Pair
from dlcli.tensor import Tensor


class UpSampling2DSpec(LayerSpec):
    """type = "up_sampling2d"."""

    type: Literal["up_sampling2d"] = "up_sampling2d"
    size: Pair = Field((2, 2), description="Factors for height and width: 2 or [2, 2].")
    interpolation: Literal["nearest", "bilinear"] = Field("nearest", description="nearest: each pixel repeated; "
                                                                                 "bilinear: half-pixel-centred "
                                                                                 "linear interpolation.")


@registry.layers.register("up_sampling2d", spec=UpSampling2DSpec)
class UpSampling2D(Layer):
    """Enlarges (height, width, channels) images by size: pixels repeated, or interpolated bilinearly."""

    spec: UpSampling2DSpec
    input_axes = IMAGE

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        size = self.spec.size
        return (in_shape[0] * size[0], in_shape[1] * size[1], in_shape[2])

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        return ops.up_sample2d(x, self.spec.size, self.spec.interpolation)
