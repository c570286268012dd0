"""Conv1D: 1-D convolution over (steps, channels) sequences, run as a 2-D convolution of height 1."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BeforeValidator, Field, model_validator

from dlcli import ops, registry
from dlcli.layers.base import SEQUENCE, ActivationName, InitializerName, LayerSpec, Shape
from dlcli.layers.conv2d import Convolution
from dlcli.tensor import Tensor


def _single(value: object) -> object:
    """Keras takes 3 or (3,) for a 1-D size."""
    return value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value


PositiveInt = Annotated[int, Field(gt=0)]
# json_schema_input_type: the JSON Schema for editors (dlcli schema) says what a spec may write, 3 or [3]
Size = Annotated[int, Field(gt=0), BeforeValidator(_single, json_schema_input_type=PositiveInt | tuple[PositiveInt])]


class Conv1DSpec(LayerSpec):
    """type = "conv1d"."""

    type: Literal["conv1d"] = "conv1d"
    filters: int = Field(gt=0, description="Output channels.")
    kernel_size: Size = Field(description="Window size: 3 or [3].")
    strides: Size = Field(1, description="Step between windows: 1 or [1].")
    padding: Literal["valid", "same", "causal"] = Field("valid", description="valid: windows inside the input only; "
                                                                             "same: zero-padded so that stride 1 "
                                                                             "keeps the size; causal: padded at the "
                                                                             "start only, so no step sees a later "
                                                                             "one.")
    dilation_rate: Size = Field(1, description="Spacing between the window's taps (1: adjacent; more: a dilated "
                                               "convolution).")
    activation: ActivationName = Field("linear", description="Applied to the output.")
    use_bias: bool = Field(True, description="Add a learned bias per filter.")
    kernel_initializer: InitializerName = Field("glorot_uniform", description="How the kernel starts.")
    bias_initializer: InitializerName = Field("zeros", description="How the bias starts.")

    @model_validator(mode="after")
    def _strides_or_dilation(self) -> Conv1DSpec:
        if self.strides > 1 and self.dilation_rate > 1:
            raise ValueError("strides > 1 and dilation_rate > 1 cannot be combined (as in Keras)")
        return self


@registry.layers.register("conv1d", spec=Conv1DSpec)
class Conv1D(Convolution):
    """1-D convolution over (steps, channels): activation(conv(x, kernel) + bias); padding may be causal."""

    spec: Conv1DSpec
    input_axes = SEQUENCE

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        steps, channels = in_shape
        s = self.spec
        _, out_steps = self._build_2d(1, steps, channels, (1, s.kernel_size), (1, s.strides), (1, s.dilation_rate),
                                      s.padding, rng)
        # the checkpoint keeps Keras' 1-D layout (k, in, out); the op sees a (1, k, in, out) view of it
        self.params["kernel"].data = self.params["kernel"].data[0]
        return (out_steps, s.filters)

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        kernel = ops.reshape(self.kernel, (1, *self.kernel.shape))
        images = ops.reshape(x, (x.shape[0], 1, *x.shape[1:]))
        out = ops.conv2d(images, kernel, self.bias, self.geometry, self.fused)
        out = ops.reshape(out, (x.shape[0], *out.shape[2:]))
        # the activation after the reshape: a crossentropy reads a softmax's logits through the output's own op
        return self._activate(out)
