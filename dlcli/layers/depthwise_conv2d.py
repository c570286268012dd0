"""DepthwiseConv2D: each input channel convolved with its own depth_multiplier kernels, Keras' options and weights."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from dlcli import activations, ops, registry
from dlcli.errors import SpecError
from dlcli.initializers import initialize
from dlcli.layers.base import IMAGE, ActivationName, InitializerName, Layer, LayerSpec, Shape
from dlcli.layers.conv2d import Pair
from dlcli.ops.conv import ConvGeometry, geometry
from dlcli.tensor import Tensor


class DepthwiseConv2DSpec(LayerSpec):
    """type = "depthwise_conv2d"."""

    type: Literal["depthwise_conv2d"] = "depthwise_conv2d"
    kernel_size: Pair = Field(description="Window size: 3 or [3, 3].")
    strides: Pair = Field((1, 1), description="Step between windows: 1 or [1, 1].")
    padding: Literal["valid", "same"] = Field("valid", description="valid: windows inside the input only; same: "
                                                                   "zero-padded so that stride 1 keeps the size.")
    depth_multiplier: int = Field(1, gt=0, description="Output channels per input channel.")
    dilation_rate: Pair = Field((1, 1), description="Spacing between the window's taps.")
    activation: ActivationName = Field("linear", description="Applied to the output.")
    use_bias: bool = Field(True, description="Add a learned bias per output channel.")
    depthwise_initializer: InitializerName = Field("glorot_uniform", description="How the kernel starts.")
    bias_initializer: InitializerName = Field("zeros", description="How the bias starts.")

    @model_validator(mode="after")
    def _strides_or_dilation(self) -> DepthwiseConv2DSpec:
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError("strides > 1 and dilation_rate > 1 cannot be combined (as in Keras)")
        return self


def depthwise_geometry(layer: Layer, in_shape: Shape, kernel: tuple[int, int], strides: tuple[int, int],
                       dilation: tuple[int, int], padding: str) -> ConvGeometry:
    """The geometry of a depthwise step over (height, width, channels) inputs; a kernel that does not fit is the
    layer's SpecError."""
    g = geometry(in_shape[0], in_shape[1], kernel, strides, dilation, padding)
    if g.out_h <= 0 or g.out_w <= 0:
        raise SpecError(f"{layer.key}: a {kernel[0]}x{kernel[1]} kernel (dilation {list(dilation)}) does not fit "
                        f"inputs of {in_shape[0]}x{in_shape[1]} with padding = \"valid\"; use padding = \"same\" or "
                        "a smaller kernel")
    return g


@registry.layers.register("depthwise_conv2d", spec=DepthwiseConv2DSpec)
class DepthwiseConv2D(Layer):
    """Per-channel 2-D convolution: kernel (kh, kw, channels, depth_multiplier), output channels*depth_multiplier."""

    spec: DepthwiseConv2DSpec
    input_axes = IMAGE

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        s = self.spec
        self.geometry = depthwise_geometry(self, in_shape, s.kernel_size, s.strides, s.dilation_rate, s.padding)
        channels = in_shape[2]
        # Keras' weights: "<name>/kernel" (kh, kw, channels, depth_multiplier), "<name>/bias" (channels * multiplier)
        self.kernel = self.add_param("kernel", initialize(s.depthwise_initializer, rng,
                                                          (*s.kernel_size, channels, s.depth_multiplier)))
        width = channels * s.depth_multiplier
        self.bias = self.add_param("bias", initialize(s.bias_initializer, rng, (width,))) if s.use_bias \
            else Tensor(np.zeros(width, np.float32))
        return (self.geometry.out_h, self.geometry.out_w, width)

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        return activations.apply(self.spec.activation, ops.depthwise_conv2d(x, self.kernel, self.bias, self.geometry))
