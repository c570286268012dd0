"""Normalization: feature-wise standardization with mean and variance adapted on training data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from dlcli import ops, registry
from dlcli.layers.base import Layer, LayerSpec, Shape, feature_axis
from dlcli.tensor import Tensor

_EPSILON = 1e-7  # Keras' backend epsilon: the floor of the standard deviation


class NormalizationSpec(LayerSpec):
    """[[model.layers]] type = "normalization"."""

    type: Literal["normalization"] = "normalization"
    axis: int = Field(-1, description="The feature axis, counting the batch axis as 0: each position along it has "
                                      "its own mean and variance.")
    mean: list[float] | float | None = Field(None, description="The mean per feature (one number, or one per "
                                                               "feature); given with variance, the layer keeps them "
                                                               "instead of adapting on the training data.")
    variance: list[float] | float | None = Field(None, description="The variance per feature, given with mean.")

    @model_validator(mode="after")
    def _mean_with_variance(self) -> NormalizationSpec:
        if (self.mean is None) != (self.variance is None):
            raise ValueError("give mean and variance together (both fixed), or neither (both adapted on the "
                             "training data)")
        if np.shape(self.mean) != np.shape(self.variance):
            raise ValueError(f"mean and variance must have the same shape, got {np.shape(self.mean)} and "
                             f"{np.shape(self.variance)}")
        return self


@registry.layers.register("normalization", spec=NormalizationSpec)
class Normalization(Layer):
    """(x - mean) / sqrt(variance) per feature; mean and variance are given or adapted on data (non-trainable)."""

    keeps_mask = True
    spec: NormalizationSpec

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        self.feature_axis = feature_axis(self, self.spec.axis, in_shape)
        width = in_shape[self.feature_axis - 1]
        self.add_state("mean", np.broadcast_to(np.float32(self.spec.mean or 0.0), (width,)).astype(np.float32))
        self.add_state("variance", np.broadcast_to(np.float32(
            1.0 if self.spec.variance is None else self.spec.variance), (width,)).astype(np.float32))
        self.add_state("count", np.zeros((), np.int64))
        return in_shape

    @property
    def needs_adapt(self) -> bool:
        """Whether training adapts it: only when the spec gives no mean and variance, as in Keras."""
        return self.spec.mean is None

    def adapt(self, data: np.ndarray | Iterable[np.ndarray]) -> None:
        """Set mean and variance from training examples (batch axis first): one array, or its batches one by one
        (a split larger than memory), combined exactly (Chan et al.'s pairwise update, in float64)."""
        count, mean, squares = 0, np.zeros(1), np.zeros(1)  # squares: the sum of squared deviations from mean
        for batch in [data] if isinstance(data, np.ndarray) else data:
            reduce_axes = tuple(i for i in range(batch.ndim) if i != self.feature_axis)
            values = batch.astype(np.float64)
            size = values.size // self.state["mean"].size
            if size == 0:
                continue
            batch_mean = values.mean(axis=reduce_axes)
            batch_squares = values.var(axis=reduce_axes) * size
            total = count + size
            delta = batch_mean - mean
            mean = mean + delta * (size / total)
            squares = squares + batch_squares + delta ** 2 * (count * size / total)
            count = total
        if count == 0:
            raise ValueError("normalization adapts on at least one example")  # load_splits refuses empty splits
        self.state["mean"][...] = mean
        self.state["variance"][...] = squares / count
        self.state["count"][...] = count

    def _broadcast_shape(self, ndim: int) -> tuple[int, ...]:
        return tuple(-1 if i == self.feature_axis else 1 for i in range(ndim))

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        shape = self._broadcast_shape(x.ndim)
        mean = self.state["mean"].reshape(shape)
        std = np.maximum(np.sqrt(self.state["variance"]), _EPSILON).astype(np.float32).reshape(shape)
        if x.dtype.kind in "uib":
            x = Tensor(x.data.astype(np.float32))
        return ops.div(ops.sub(x, mean), std)
