"""Conv2DTranspose: the transposed convolution of ch. 9's segmentation models, Keras' output sizes and kernel layout."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BeforeValidator, Field, model_validator

from dlcli import activations, ops, registry
from dlcli.initializers import initialize
from dlcli.layers.base import IMAGE, ActivationName, InitializerName, Layer, LayerSpec, Shape
from dlcli.layers.conv2d import Pair
from dlcli.ops.conv import transposed_geometry
from dlcli.tensor import Tensor


def _pair(value: object) -> object:
    return (value, value) if isinstance(value, int) else value


NonNegative = Annotated[int, Field(ge=0)]
OutputPadding = Annotated[tuple[NonNegative, NonNegative],
                          BeforeValidator(_pair, json_schema_input_type=NonNegative | tuple[NonNegative, NonNegative])]


class Conv2DTransposeSpec(LayerSpec):
    """type = "conv2d_transpose"."""

    type: Literal["conv2d_transpose"] = "conv2d_transpose"
    filters: int = Field(gt=0, description="Output channels.")
    kernel_size: Pair = Field(description="Window size: 3 or [3, 3].")
    strides: Pair = Field((1, 1), description="Up-sampling step: 2 doubles height and width (with padding = "
                                              '"same").')
    padding: Literal["valid", "same"] = Field("valid", description='same: the output is the input times strides; '
                                                                   'valid: (input - 1) * strides + max(kernel, '
                                                                   'strides) (Keras\' rules).')
    output_padding: OutputPadding | None = Field(None, description="Rows and columns added after the output, each "
                                                                     "below its stride (Keras' output_padding); "
                                                                     "default: as the padding says.")
    dilation_rate: Pair = Field((1, 1), description="Spacing between the window's taps.")
    activation: ActivationName = Field("linear", description="Applied to the output.")
    use_bias: bool = Field(True, description="Add a learned bias per filter.")
    kernel_initializer: InitializerName = Field("glorot_uniform", description="How the kernel starts.")
    bias_initializer: InitializerName = Field("zeros", description="How the bias starts.")

    @model_validator(mode="after")
    def _checks(self) -> Conv2DTransposeSpec:
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError("strides > 1 and dilation_rate > 1 cannot be combined (as in Keras)")
        if self.output_padding is not None and any(p >= s for p, s in zip(self.output_padding, self.strides)):
            raise ValueError(f"output_padding {list(self.output_padding)} must be less than strides "
                             f"{list(self.strides)} in each axis (as in Keras)")
        return self


@registry.layers.register("conv2d_transpose", spec=Conv2DTransposeSpec)
class Conv2DTranspose(Layer):
    """Transposed 2-D convolution (learned up-sampling): kernel (kh, kw, filters, channels), as in Keras."""

    spec: Conv2DTransposeSpec
    input_axes = IMAGE

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        s = self.spec
        height, width, channels = in_shape
        self.geometry, self.out_h, self.out_w = transposed_geometry(height, width, s.kernel_size, s.strides,
                                                                    s.dilation_rate, s.padding, s.output_padding)
        self.kernel = self.add_param("kernel", initialize(s.kernel_initializer, rng, (*s.kernel_size, s.filters,
                                                                                      channels)))
        self.bias = self.add_param("bias", initialize(s.bias_initializer, rng, (s.filters,))) if s.use_bias \
            else Tensor(np.zeros(s.filters, np.float32))
        self.fused, self.after = activations.fusion(s.activation)
        return (self.out_h, self.out_w, s.filters)

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        out = ops.conv2d_transpose(x, self.kernel, self.bias, self.geometry, self.out_h, self.out_w, self.fused)
        return out if self.after is None else self.after.apply(out)
