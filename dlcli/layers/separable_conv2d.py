"""SeparableConv2D: a depthwise convolution, then a pointwise (1x1) one, with Keras' two kernels."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from dlcli import activations, ops, registry
from dlcli.initializers import initialize
from dlcli.layers.base import IMAGE, ActivationName, InitializerName, Layer, LayerSpec, Shape
from dlcli.layers.conv2d import Pair
from dlcli.layers.depthwise_conv2d import depthwise_geometry
from dlcli.tensor import Tensor


class SeparableConv2DSpec(LayerSpec):
    """type = "separable_conv2d"."""

    type: Literal["separable_conv2d"] = "separable_conv2d"
    filters: int = Field(gt=0, description="Output channels (of the pointwise step).")
    kernel_size: Pair = Field(description="Depthwise window size: 3 or [3, 3].")
    strides: Pair = Field((1, 1), description="Step between depthwise windows: 1 or [1, 1].")
    padding: Literal["valid", "same"] = Field("valid", description="valid: windows inside the input only; same: "
                                                                   "zero-padded so that stride 1 keeps the size.")
    depth_multiplier: int = Field(1, gt=0, description="Depthwise output channels per input channel.")
    dilation_rate: Pair = Field((1, 1), description="Spacing between the depthwise window's taps.")
    activation: ActivationName = Field("linear", description="Applied to the output.")
    use_bias: bool = Field(True, description="Add a learned bias per filter.")
    depthwise_initializer: InitializerName = Field("glorot_uniform", description="How the depthwise kernel starts.")
    pointwise_initializer: InitializerName = Field("glorot_uniform", description="How the pointwise kernel starts.")
    bias_initializer: InitializerName = Field("zeros", description="How the bias starts.")

    @model_validator(mode="after")
    def _strides_or_dilation(self) -> SeparableConv2DSpec:
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError("strides > 1 and dilation_rate > 1 cannot be combined (as in Keras)")
        return self


@registry.layers.register("separable_conv2d", spec=SeparableConv2DSpec)
class SeparableConv2D(Layer):
    """Depthwise then pointwise convolution (Xception's): far fewer weights than a conv2d of the same window."""

    spec: SeparableConv2DSpec
    input_axes = IMAGE

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        s = self.spec
        self.geometry = depthwise_geometry(self, in_shape, s.kernel_size, s.strides, s.dilation_rate, s.padding)
        channels = in_shape[2]
        width = channels * s.depth_multiplier
        # Keras' weights: depthwise_kernel (kh, kw, channels, multiplier), pointwise_kernel (1, 1, channels *
        # multiplier, filters), bias (filters)
        self.depthwise_kernel = self.add_param("depthwise_kernel", initialize(
            s.depthwise_initializer, rng, (*s.kernel_size, channels, s.depth_multiplier)))
        self.pointwise_kernel = self.add_param("pointwise_kernel", initialize(
            s.pointwise_initializer, rng, (1, 1, width, s.filters)))
        self.bias = self.add_param("bias", initialize(s.bias_initializer, rng, (s.filters,))) if s.use_bias \
            else Tensor(np.zeros(s.filters, np.float32))
        self.no_bias = Tensor(np.zeros(width, np.float32))  # Keras' depthwise step has none
        self.fused, self.after = activations.fusion(s.activation)
        return (self.geometry.out_h, self.geometry.out_w, s.filters)

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        depthwise = ops.depthwise_conv2d(x, self.depthwise_kernel, self.no_bias, self.geometry)
        pointwise = ops.reshape(self.pointwise_kernel, self.pointwise_kernel.shape[2:])
        out = ops.affine(depthwise, pointwise, self.bias, self.fused)  # a 1x1 convolution is a matrix product
        return out if self.after is None else self.after.apply(out)
