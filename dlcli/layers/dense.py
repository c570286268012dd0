"""Dense: the fully connected layer."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from dlcli import activations, ops, registry
from dlcli.initializers import initialize
from dlcli.layers.base import ActivationName, InitializerName, Layer, LayerSpec, Shape
from dlcli.tensor import Tensor


class DenseSpec(LayerSpec):
    """[[model.layers]] type = "dense"."""

    type: Literal["dense"] = "dense"
    units: int = Field(gt=0, description="Output width.")
    activation: ActivationName = Field("linear", description="Applied to x @ W + b.")
    use_bias: bool = Field(True, description="Add the learned bias b.")
    kernel_initializer: InitializerName = Field("glorot_uniform", description="How W starts.")
    bias_initializer: InitializerName = Field("zeros", description="How b starts.")


@registry.layers.register("dense", spec=DenseSpec)
class Dense(Layer):
    """Fully connected layer: activation(x @ W + b) over the last axis."""

    keeps_mask = True
    spec: DenseSpec

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        units = self.spec.units
        # checkpoint names follow Keras: "<layer name>/kernel", "<layer name>/bias"
        self.kernel = self.add_param("kernel", initialize(self.spec.kernel_initializer, rng, (in_shape[-1], units)))
        self.bias = self.add_param("bias", initialize(self.spec.bias_initializer, rng, (units,))) \
            if self.spec.use_bias else None
        self.fused, self.after = activations.fusion(self.spec.activation)
        return (*in_shape[:-1], units)

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        if self.bias is None:
            return activations.apply(self.spec.activation, x @ self.kernel)
        out = ops.affine(x, self.kernel, self.bias, self.fused)
        return out if self.after is None else self.after.apply(out)
