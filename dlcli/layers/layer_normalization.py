"""LayerNormalization: each example standardized over its own features, with Keras' options and weights."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from dlcli import ops, registry
from dlcli.errors import SpecError
from dlcli.initializers import initialize
from dlcli.layers.base import InitializerName, Layer, LayerSpec, Shape
from dlcli.tensor import Tensor


class LayerNormalizationSpec(LayerSpec):
    """[[model.layers]] type = "layer_normalization"."""

    type: Literal["layer_normalization"] = "layer_normalization"
    axis: int | list[int] = Field(-1, description="The axis or axes normalized over, counting the batch axis as 0 "
                                                  "(Keras' convention): -1 is each step's features.")
    epsilon: float = Field(1e-3, gt=0.0, description="Added to the variance before its square root (Keras' 1e-3).")
    center: bool = Field(True, description="Learn an offset beta.")
    scale: bool = Field(True, description="Learn a factor gamma.")
    beta_initializer: InitializerName = Field("zeros", description="How beta starts.")
    gamma_initializer: InitializerName = Field("ones", description="How gamma starts.")


@registry.layers.register("layer_normalization", spec=LayerNormalizationSpec)
class LayerNormalization(Layer):
    """Normalizes each example over its last axis (or `axis`) by its own mean and variance, then gamma and beta."""

    keeps_mask = True
    spec: LayerNormalizationSpec

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        rank = len(in_shape) + 1
        axes = [self.spec.axis] if isinstance(self.spec.axis, int) else list(self.spec.axis)
        if not axes or any(not -rank <= a < rank or a % rank == 0 for a in axes) or \
                len({a % rank for a in axes}) != len(axes):
            raise SpecError(f"{self.key}: axis {self.spec.axis} does not name distinct feature axes of inputs of rank "
                            f"{rank} (batch, {', '.join(map(str, in_shape))}); give axes among 1..{rank - 1}, or -1 "
                            "for the last (0 is the batch axis)")
        self.axes = tuple(sorted(a % rank for a in axes))
        # Keras' weights: gamma and beta have the normalized axes' shape
        shape = tuple(in_shape[a - 1] for a in self.axes)
        spec = self.spec
        self.gamma = self.add_param("gamma", initialize(spec.gamma_initializer, rng, shape)) if spec.scale \
            else Tensor(np.ones(shape, np.float32))
        self.beta = self.add_param("beta", initialize(spec.beta_initializer, rng, shape)) if spec.center \
            else Tensor(np.zeros(shape, np.float32))
        return in_shape

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        return ops.layer_normalization(x, self.gamma, self.beta, self.axes, self.spec.epsilon)
