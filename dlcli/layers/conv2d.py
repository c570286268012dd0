"""Conv2D: 2-D convolution over channels-last images, Keras' options and kernel layout (kh, kw, in, out)."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BeforeValidator, Field, model_validator

from dlcli import activations, ops, registry
from dlcli.errors import SpecError
from dlcli.initializers import initialize
from dlcli.layers.base import IMAGE, ActivationName, InitializerName, Layer, LayerSpec, Shape
from dlcli.ops.conv import geometry, winograd_tile
from dlcli.tensor import Tensor


def _pair(value: object) -> object:
    """Keras takes 3 or (3, 3) for a 2-D size."""
    return (value, value) if isinstance(value, int) else value


PositiveInt = Annotated[int, Field(gt=0)]
# json_schema_input_type: the JSON Schema for editors (dlcli schema) says what a spec may write, 3 or [3, 3]
Pair = Annotated[tuple[PositiveInt, PositiveInt],
                 BeforeValidator(_pair, json_schema_input_type=PositiveInt | tuple[PositiveInt, PositiveInt])]


# auto by default: the Winograd tile winograd_fits picks (dlcli/ops/conv.py has the figures). Measured here, one
# machine, one session, alternating: the MNIST convnet's training took 9.6-10.3 ms a step with auto (F(2x2)
# then) against 12.0-13.7 with im2col (dlcli train, 300-step epochs).
DEFAULT_ALGORITHM = "auto"


class Conv2DSpec(LayerSpec):
    """type = "conv2d"."""

    type: Literal["conv2d"] = "conv2d"
    filters: int = Field(gt=0, description="Output channels.")
    kernel_size: Pair = Field(description="Window size: 3 or [3, 3].")
    strides: Pair = Field((1, 1), description="Step between windows: 1 or [1, 1].")
    padding: Literal["valid", "same"] = Field("valid", description="valid: windows inside the input only; same: "
                                                                   "zero-padded so that stride 1 keeps the size.")
    dilation_rate: Pair = Field((1, 1), description="Spacing between the window's taps (1: adjacent; more: a dilated "
                                                    "convolution).")
    activation: ActivationName = Field("linear", description="Applied to the output.")
    use_bias: bool = Field(True, description="Add a learned bias per filter.")
    kernel_initializer: InitializerName = Field("glorot_uniform", description="How the kernel starts.")
    bias_initializer: InitializerName = Field("zeros", description="How the bias starts.")
    algorithm: Literal["im2col", "winograd", "winograd_3x3", "winograd_4x4", "auto"] = Field(
        DEFAULT_ALGORITHM, description="im2col: one matrix product over the patches; winograd, winograd_3x3, "
        "winograd_4x4: Winograd's F(2x2, 3x3), F(3x3, 3x3), F(4x4, 3x3), output tiles of that size (3x3 kernels, "
        "stride 1, no dilation); auto (the default): the Winograd tile with the fewest multiplications per output "
        "where that is at most half of im2col's (at least 16 input channels, an output of at least 3x3), im2col "
        "elsewhere. Outputs agree to float32 rounding, not bit for bit: within 1e-6 (im2col, F(2x2)), 4e-6 "
        "(F(3x3)) and 1e-5 (F(4x4)) of the largest value of a float64 convolution.")

    @model_validator(mode="after")
    def _strides_or_dilation(self) -> Conv2DSpec:
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError("strides > 1 and dilation_rate > 1 cannot be combined (as in Keras)")
        if self.algorithm.startswith("winograd") and (self.kernel_size, self.strides, self.dilation_rate) != (
                (3, 3), (1, 1), (1, 1)):
            raise ValueError(f"algorithm = \"{self.algorithm}\" computes 3x3 kernels with strides 1 and "
                             f"dilation_rate 1, not kernel_size {list(self.kernel_size)}, strides "
                             f"{list(self.strides)}, dilation_rate {list(self.dilation_rate)}; use algorithm = "
                             "\"im2col\" or \"auto\"")
        return self


class Convolution(Layer):
    """Shared by conv1d and conv2d: weights, the fused op, and the kernel-size check."""

    def _build_2d(self, height: int, width: int, channels: int, kernel: tuple[int, int], strides: tuple[int, int],
                  dilation: tuple[int, int], padding: str, rng: np.random.Generator) -> tuple[int, int]:
        spec = self.spec
        self.geometry = geometry(height, width, kernel, strides, dilation, padding)
        if self.geometry.out_h <= 0 or self.geometry.out_w <= 0:
            raise SpecError(f"{self.key}: a {kernel[0]}x{kernel[1]} kernel (dilation {list(dilation)}) does not fit "
                            f"inputs of {height}x{width} with padding = \"valid\"; use padding = \"same\" or a "
                            "smaller kernel")
        shape = (*kernel, channels, spec.filters)  # type: ignore[attr-defined]
        self.kernel = self.add_param("kernel", initialize(spec.kernel_initializer, rng, shape))  # type: ignore
        bias = initialize(spec.bias_initializer, rng, (spec.filters,)) if spec.use_bias \
            else np.zeros(spec.filters, np.float32)  # type: ignore[attr-defined]
        self.bias = self.add_param("bias", bias) if spec.use_bias else Tensor(bias)  # type: ignore[attr-defined]
        self.fused, self.after = activations.fusion(spec.activation)  # type: ignore[attr-defined]
        return self.geometry.out_h, self.geometry.out_w

    def _activate(self, out: Tensor) -> Tensor:
        """The part of the activation the conv op did not compute itself (see activations.fusion)."""
        return out if self.after is None else self.after.apply(out)


@registry.layers.register("conv2d", spec=Conv2DSpec)
class Conv2D(Convolution):
    """2-D convolution over (height, width, channels) images: activation(conv(x, kernel) + bias)."""

    spec: Conv2DSpec
    input_axes = IMAGE

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        height, width, channels = in_shape
        s = self.spec
        out_h, out_w = self._build_2d(height, width, channels, s.kernel_size, s.strides, s.dilation_rate, s.padding,
                                      rng)
        return (out_h, out_w, s.filters)

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        return self._activate(ops.conv2d(x, self.kernel, self.bias, self.geometry, self.fused, self.spec.algorithm))

    def fuses_max_pool(self, pool: Layer) -> bool:
        """Whether with_max_pool runs the fused forward, for a graph where the max pool alone reads this conv's
        output: a 3x3 kernel over 1 channel by im2col, the whole activation in the conv, windows of at most
        2 x 2. Otherwise the two layers run apart."""
        return (pool.spec.type == "max_pooling2d" and self.after is None and self.kernel.shape[:3] == (3, 3, 1)
                and winograd_tile(self.spec.algorithm, self.geometry, 1) is None
                and max(pool.pool_size) <= 2)  # type: ignore[attr-defined]

    def with_max_pool(self, pool: Layer, x: Tensor, training: bool = False) -> Tensor:
        """pool(self(x)) as one op (ops.conv2d_max_pool2d), the max pool's output."""
        return ops.conv2d_max_pool2d(x, self.kernel, self.bias, self.geometry, self.fused, self.spec.algorithm,
                                     pool.pool_size, pool.strides, pool.spec.padding)  # type: ignore[attr-defined]
