"""Losses with Keras' formulas, each a mean over the batch of a reduction over ops.

A crossentropy given probabilities that a softmax or sigmoid just produced works from that activation's
logits instead (as Keras does): the value is exact and the gradient is p - y, never passing the clip.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dlcli import ops, registry
from dlcli.registry import StrictSpec
from dlcli.tensor import Tensor

EPSILON = 1e-7  # Keras' backend epsilon: probabilities are clipped to [EPSILON, 1 - EPSILON]


class LossSpec(StrictSpec):
    """A loss by name, with its options (`loss = "mse"` or `loss = { type = "...", from_logits = true }`)."""

    type: str
    from_logits: bool = False


class Loss:
    """A scalar loss of predictions (a tensor) against targets (an array)."""

    def __init__(self, spec: LossSpec | None = None) -> None:
        self.spec = spec or LossSpec(type=self.name)

    name = "loss"

    def __call__(self, y_pred: Tensor, y_true: np.ndarray) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _logits(self, y_pred: Tensor, kind: str) -> Tensor | None:
        """The logits behind y_pred, if it is logits (from_logits) or the output of the matching activation."""
        if self.spec.from_logits:
            return y_pred
        return y_pred.logits if y_pred.logits_kind == kind else None


def _as_float(y_true: np.ndarray, like: Tensor) -> np.ndarray:
    return np.asarray(y_true, dtype=like.dtype if like.dtype.kind == "f" else np.float32)


@registry.losses.register("binary_crossentropy", spec=LossSpec)
class BinaryCrossentropy(Loss):
    """-(y log p + (1 - y) log(1 - p)), for 0/1 targets and sigmoid outputs."""

    name = "binary_crossentropy"

    def __call__(self, y_pred: Tensor, y_true: np.ndarray) -> Tensor:
        y = _as_float(y_true, y_pred).reshape(y_pred.shape)
        logits = self._logits(y_pred, "sigmoid")
        if logits is not None:
            return ops.sigmoid_binary_crossentropy(logits, y)
        p = ops.clip(y_pred, EPSILON, 1 - EPSILON)
        return -ops.mean(y * ops.log(p) + (1 - y) * ops.log(1 - p))


@registry.losses.register("categorical_crossentropy", spec=LossSpec)
class CategoricalCrossentropy(Loss):
    """-sum(y log p) over classes, for one-hot targets and softmax outputs."""

    name = "categorical_crossentropy"

    def __call__(self, y_pred: Tensor, y_true: np.ndarray) -> Tensor:
        y = _as_float(y_true, y_pred)
        logits = self._logits(y_pred, "softmax")
        if logits is not None:
            return ops.softmax_crossentropy(logits, y)
        return -ops.mean(ops.sum(y * ops.log(_normalized_clipped(y_pred)), axis=-1))


@registry.losses.register("sparse_categorical_crossentropy", spec=LossSpec)
class SparseCategoricalCrossentropy(Loss):
    """-log p[label], for integer class labels and softmax outputs."""

    name = "sparse_categorical_crossentropy"

    def __call__(self, y_pred: Tensor, y_true: np.ndarray) -> Tensor:
        labels = np.asarray(y_true)
        if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:  # (batch, 1) labels, as Keras accepts
            labels = labels[..., 0]
        labels = labels.astype(np.intp, copy=False)
        logits = self._logits(y_pred, "softmax")
        if logits is not None:
            return ops.sparse_softmax_crossentropy(logits, labels)
        one_hot = np.eye(y_pred.shape[-1], dtype=y_pred.dtype)[labels]
        return -ops.mean(ops.sum(one_hot * ops.log(_normalized_clipped(y_pred)), axis=-1))


def _normalized_clipped(p: Tensor) -> Tensor:
    """p rescaled to sum to 1 over classes, then clipped to [EPSILON, 1 - EPSILON], as Keras does."""
    return ops.clip(p / ops.sum(p, axis=-1, keepdims=True), EPSILON, 1 - EPSILON)


@registry.losses.register("mean_squared_error", spec=LossSpec, aliases=("mse",))
class MeanSquaredError(Loss):
    """mean((y - p)^2) over the last axis, then over the batch."""

    name = "mean_squared_error"

    def __call__(self, y_pred: Tensor, y_true: np.ndarray) -> Tensor:
        diff = y_pred - _as_float(y_true, y_pred).reshape(y_pred.shape)
        return ops.mean(diff * diff)


@registry.losses.register("mean_absolute_error", spec=LossSpec, aliases=("mae",))
class MeanAbsoluteError(Loss):
    """mean(|y - p|) over the last axis, then over the batch."""

    name = "mean_absolute_error"

    def __call__(self, y_pred: Tensor, y_true: np.ndarray) -> Tensor:
        return ops.mean(ops.abs(y_pred - _as_float(y_true, y_pred).reshape(y_pred.shape)))


def create_loss(config: str | dict | LossSpec) -> Loss:
    """A loss from a name, a table with `type`, or a validated spec."""
    if isinstance(config, str):
        config = {"type": config}
    if isinstance(config, dict):
        entry = registry.losses.entry(config["type"])
        config = entry.spec.model_validate({**config, "type": entry.alias_of or entry.name})
    return registry.losses.get(config.type)(config)


def weighted_total(terms: Sequence[tuple[float, Tensor]]) -> Tensor:
    """sum(weight * loss) over a model's outputs: the one scalar training minimizes."""
    total: Tensor | None = None
    for weight, loss in terms:
        term = loss if weight == 1.0 else loss * weight
        total = term if total is None else total + term
    if total is None:
        raise ValueError("a model needs at least one loss")
    return total
