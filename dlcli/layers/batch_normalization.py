"""BatchNormalization: per-channel standardization with batch statistics in training, moving ones in inference."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from dlcli import ops, registry
from dlcli.initializers import initialize
from dlcli.layers.base import InitializerName, Layer, LayerSpec, Shape, feature_axis
from dlcli.tensor import Tensor


class BatchNormalizationSpec(LayerSpec):
    """[[model.layers]] type = "batch_normalization"."""

    type: Literal["batch_normalization"] = "batch_normalization"
    axis: int = Field(-1, description="The channel axis, counting the batch axis as 0 (Keras' convention).")
    momentum: float = Field(0.99, ge=0.0, le=1.0, description="Weight of the old value in the moving averages.")
    epsilon: float = Field(1e-3, gt=0.0, description="Added to the variance before its square root.")
    center: bool = Field(True, description="Learn an offset beta.")
    scale: bool = Field(True, description="Learn a factor gamma.")
    beta_initializer: InitializerName = Field("zeros", description="How beta starts.")
    gamma_initializer: InitializerName = Field("ones", description="How gamma starts.")
    moving_mean_initializer: InitializerName = Field("zeros", description="How the moving mean starts.")
    moving_variance_initializer: InitializerName = Field("ones", description="How the moving variance starts.")


@registry.layers.register("batch_normalization", spec=BatchNormalizationSpec)
class BatchNormalization(Layer):
    """Normalizes each channel by batch statistics in training and by their moving averages in inference."""

    keeps_mask = True
    spec: BatchNormalizationSpec
    state_moves_in_training = True

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        rank = len(in_shape) + 1
        self.axis = feature_axis(self, self.spec.axis, in_shape, "channel")
        channels = in_shape[self.axis - 1]
        spec = self.spec
        # Keras' weight order and names: gamma, beta trainable; moving_mean, moving_variance state
        self.gamma = self.add_param("gamma", initialize(spec.gamma_initializer, rng, (channels,))) \
            if spec.scale else None
        self.beta = self.add_param("beta", initialize(spec.beta_initializer, rng, (channels,))) \
            if spec.center else None
        self.moving_mean = self.add_state("moving_mean", initialize(spec.moving_mean_initializer, rng,
                                                                    (channels,)))
        self.moving_variance = self.add_state("moving_variance", initialize(spec.moving_variance_initializer,
                                                                            rng, (channels,)))
        self.ones, self.zeros = Tensor(np.ones(channels, np.float32)), Tensor(np.zeros(channels, np.float32))
        self.channel_shape = (channels, *(1,) * (rank - 1 - self.axis))  # broadcasts along the channel axis
        return in_shape

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        gamma = self.ones if self.gamma is None else self.gamma
        beta = self.zeros if self.beta is None else self.beta
        # Keras 3: a frozen batch normalization runs in inference mode even in training, its moving statistics
        # untouched (what fine-tuning a pretrained base needs: its statistics are the base's)
        if training and self.trainable:
            out, mean, variance = ops.batch_normalization(x, gamma, beta, self.axis, self.spec.epsilon)
            if x.data.size:  # a batch of no example (an MPI rank's empty shard) has no statistics: NaN means
                self._update_moving_statistics(mean.data, variance.data)
            return out
        # inference: an affine map per channel, x * scale + shift, from the moving statistics
        inv_std = Tensor((1.0 / np.sqrt(self.moving_variance + np.float32(self.spec.epsilon))).astype(np.float32))
        scale = gamma * inv_std
        shift = beta - scale * Tensor(self.moving_mean)
        if len(self.channel_shape) > 1:  # the channel axis is not last
            scale, shift = ops.reshape(scale, self.channel_shape), ops.reshape(shift, self.channel_shape)
        return x * scale + shift

    def _update_moving_statistics(self, mean: np.ndarray, variance: np.ndarray) -> None:
        """moving = moving * momentum + batch * (1 - momentum), in place, so checkpoints see the arrays change.

        Keras 3 averages the biased batch variance, the one it normalized with; PyTorch's running_var
        averages the unbiased one (times n / (n - 1)), so the two frameworks' moving variances differ.
        """
        momentum = self.spec.momentum
        self.moving_mean[...] = self.moving_mean * momentum + mean * (1.0 - momentum)
        self.moving_variance[...] = self.moving_variance * momentum + variance * (1.0 - momentum)
