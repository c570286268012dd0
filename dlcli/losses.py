"""Losses with Keras' formulas, each a mean over the batch of a reduction over ops.

A crossentropy given probabilities that a softmax or sigmoid just produced works from that activation's
logits instead (as Keras does): the value is exact and the gradient is p - y, never passing the clip.

An output with a step mask (a sequence from `mask_zero` embeddings, kept per step) is averaged over its valid
steps only, as Keras 3 weights a loss by the mask: padded steps add nothing to the loss or its gradient.

Sample weights (per example, or per step for sequence targets: from data.sample_weight or train.class_weight)
multiply each example's loss, and the sum is divided by the number of examples (valid steps with a mask), not
by the sum of the weights: Keras 3's "sum_over_batch_size" reduction.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
from pydantic import Field, model_validator

from dlcli import activations, ops, registry
from dlcli.errors import DataError
from dlcli.registry import StrictSpec
from dlcli.tensor import Tensor
from dlcli.tensor.mask import mask_covers, step_weights, valid_step_order

EPSILON = 1e-7  # Keras' backend epsilon: probabilities are clipped to [EPSILON, 1 - EPSILON]


class LossSpec(StrictSpec):
    """A loss by name, with its options (`loss = "mse"` or `loss = { type = "...", from_logits = true }`)."""

    type: str

    @model_validator(mode="before")
    @classmethod
    def _stored_from_logits(cls, data: Any) -> Any:
        """Drop `from_logits = false` from a loss that takes no from_logits: every loss took the key until the
        regression losses stopped (Keras' have none), so the specs stored in older checkpoints and run folders
        carry it with that value, which is what these losses do. `true` stays, and is refused as unknown."""
        if isinstance(data, dict) and data.get("from_logits") is False and "from_logits" not in cls.model_fields:
            return {key: value for key, value in data.items() if key != "from_logits"}
        return data


class CrossentropySpec(LossSpec):
    """A crossentropy (or ctc): whether the output holds logits."""

    from_logits: bool = Field(False, description="The output holds raw scores (logits), not probabilities: the loss "
                                                 "applies the softmax or sigmoid itself.")


class Loss:
    """A scalar loss of predictions (a tensor) against targets (an array)."""

    def __init__(self, spec: LossSpec | None = None) -> None:
        self.spec = spec or registry.losses.entry(self.name).spec(type=self.name)

    name = "loss"

    def __call__(self, y_pred: Tensor, y_true: np.ndarray,
                 sample_weight: np.ndarray | None = None) -> Tensor:  # pragma: no cover - abstract
        """The loss; `sample_weight` (batch,) or (batch, time) weighs each example's (or step's) term."""
        raise NotImplementedError

    def _logits(self, y_pred: Tensor, kind: str) -> Tensor | None:
        """The logits behind y_pred, if it is logits (from_logits) or the output of the matching activation."""
        if getattr(self.spec, "from_logits", False):  # only the crossentropies and ctc take it
            return y_pred
        return activations.logits_of(y_pred, kind)

    @staticmethod
    def _mean(values: Tensor, weights: np.ndarray | None) -> Tensor:
        """The mean of values, or with step weights (see step_weights) their weighted sum."""
        return ops.mean(values) if weights is None else ops.sum(values * weights)


def entry_weights(mask: np.ndarray | None, sample_weight: np.ndarray | None, shape: tuple[int, ...],
                  dtype: np.dtype = np.float32) -> np.ndarray | None:
    """Each entry's share of a loss summed over values of `shape` (batch, ...): Keras' sum_over_batch_size with
    the step mask and the sample weights folded in. Without weights, step_weights (1 / valid entries on valid
    steps); with them, weight / entries, where entries counts the batch (the valid steps under a mask) times what
    one of them holds, whatever the weights sum to. None when there is neither mask nor weight."""
    if sample_weight is None:
        return step_weights(mask, shape, dtype)
    weight = np.asarray(sample_weight, np.float64)
    weight = weight.reshape(weight.shape + (1,) * (len(shape) - weight.ndim))  # (batch,) or (batch, time)
    if mask_covers(mask, shape):
        kept = np.asarray(mask, bool).reshape(shape[:2] + (1,) * (len(shape) - 2))
        entries = int(np.count_nonzero(mask)) * int(np.prod(shape[2:], dtype=np.int64))
        weight = weight * kept
    else:
        entries = int(np.prod(shape, dtype=np.int64))
    return (weight / max(entries, 1)).astype(dtype)


def _step_mask(y_pred: Tensor, logits: Tensor | None) -> np.ndarray | None:
    return y_pred.mask if y_pred.mask is not None or logits is None else logits.mask


def _as_float(y_true: np.ndarray, like: Tensor) -> np.ndarray:
    return np.asarray(y_true, dtype=like.dtype if like.dtype.kind == "f" else np.float32)


@registry.losses.register("binary_crossentropy", spec=CrossentropySpec)
class BinaryCrossentropy(Loss):
    """-(y log p + (1 - y) log(1 - p)), for 0/1 targets and sigmoid outputs."""

    name = "binary_crossentropy"

    def __call__(self, y_pred: Tensor, y_true: np.ndarray, sample_weight: np.ndarray | None = None) -> Tensor:
        y = _as_float(y_true, y_pred).reshape(y_pred.shape)
        logits = self._logits(y_pred, "sigmoid")
        weights = entry_weights(_step_mask(y_pred, logits), sample_weight, y_pred.shape, y_pred.dtype)
        if logits is not None:
            return ops.sigmoid_binary_crossentropy(logits, y, weights)
        p = ops.clip(y_pred, EPSILON, 1 - EPSILON)
        return -self._mean(y * ops.log(p) + (1 - y) * ops.log(1 - p), weights)


@registry.losses.register("categorical_crossentropy", spec=CrossentropySpec)
class CategoricalCrossentropy(Loss):
    """-sum(y log p) over classes, for one-hot targets and softmax outputs."""

    name = "categorical_crossentropy"

    def __call__(self, y_pred: Tensor, y_true: np.ndarray, sample_weight: np.ndarray | None = None) -> Tensor:
        y = _as_float(y_true, y_pred)
        logits = self._logits(y_pred, "softmax")
        weights = entry_weights(_step_mask(y_pred, logits), sample_weight, y_pred.shape[:-1], y_pred.dtype)
        if logits is not None:
            return ops.softmax_crossentropy(logits, y, weights)
        return -self._mean(ops.sum(y * ops.log(_normalized_clipped(y_pred)), axis=-1), weights)


# the losses that train on integer class labels (the output's shape less its class axis), not on targets of the
# output's own shape: data.one_hot, which makes one-hot rows, does not fit them
SPARSE_LOSSES = ("sparse_categorical_crossentropy",)


@registry.losses.register("sparse_categorical_crossentropy", spec=CrossentropySpec)
class SparseCategoricalCrossentropy(Loss):
    """-log p[label], for integer class labels and softmax outputs."""

    name = "sparse_categorical_crossentropy"

    def __call__(self, y_pred: Tensor, y_true: np.ndarray, sample_weight: np.ndarray | None = None) -> Tensor:
        labels = np.asarray(y_true)
        if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:  # (batch, 1) labels, as Keras accepts
            labels = labels[..., 0]
        labels = labels.astype(np.intp, copy=False)
        logits = self._logits(y_pred, "softmax")
        weights = entry_weights(_step_mask(y_pred, logits), sample_weight, y_pred.shape[:-1], y_pred.dtype)
        if logits is not None:
            return ops.sparse_softmax_crossentropy(logits, labels, weights)
        one_hot = np.eye(y_pred.shape[-1], dtype=y_pred.dtype)[labels]
        return -self._mean(ops.sum(one_hot * ops.log(_normalized_clipped(y_pred)), axis=-1), weights)


def _normalized_clipped(p: Tensor) -> Tensor:
    """p rescaled to sum to 1 over classes, then clipped to [EPSILON, 1 - EPSILON], as Keras does."""
    return ops.clip(p / ops.sum(p, axis=-1, keepdims=True), EPSILON, 1 - EPSILON)


@registry.losses.register("mean_squared_error", spec=LossSpec, aliases=("mse",))
class MeanSquaredError(Loss):
    """mean((y - p)^2) over the last axis, then over the batch."""

    name = "mean_squared_error"

    def __call__(self, y_pred: Tensor, y_true: np.ndarray, sample_weight: np.ndarray | None = None) -> Tensor:
        diff = y_pred - _as_float(y_true, y_pred).reshape(y_pred.shape)
        return self._mean(diff * diff, entry_weights(y_pred.mask, sample_weight, y_pred.shape, y_pred.dtype))


@registry.losses.register("mean_absolute_error", spec=LossSpec, aliases=("mae",))
class MeanAbsoluteError(Loss):
    """mean(|y - p|) over the last axis, then over the batch."""

    name = "mean_absolute_error"

    def __call__(self, y_pred: Tensor, y_true: np.ndarray, sample_weight: np.ndarray | None = None) -> Tensor:
        difference = ops.abs(y_pred - _as_float(y_true, y_pred).reshape(y_pred.shape))
        return self._mean(difference, entry_weights(y_pred.mask, sample_weight, y_pred.shape, y_pred.dtype))


class CTCSpec(CrossentropySpec):
    """ctc: which class is the blank, and whether the output is logits."""

    type: Literal["ctc"] = "ctc"
    blank: int | None = Field(None, ge=0, description="The blank's class index; default: the last class.")


@registry.losses.register("ctc", spec=CTCSpec)
class CTC(Loss):
    """Connectionist temporal classification: -log p(label sequence | per-step class scores)."""

    name = "ctc"
    spec: CTCSpec

    def blank_index(self, classes: int) -> int:
        """The blank's class index for an output with `classes` classes."""
        return classes - 1 if self.spec.blank is None else self.spec.blank

    def __call__(self, y_pred: Tensor, y_true: np.ndarray, sample_weight: np.ndarray | None = None) -> Tensor:
        """Mean over the batch of each sequence's loss, as Keras reduces its CTC loss (each one times its weight,
        with sample weights).

        y_pred is (batch, time, classes): probabilities, or logits with from_logits; y_true holds label
        sequences padded with -1. Steps where the output's mask is False do not count. A label sequence
        that cannot fit in its steps (checked for unmasked outputs when the data is loaded) is a DataError.
        """
        if y_pred.ndim != 3:
            raise ValueError(f"ctc needs (batch, time, classes) predictions, got shape {y_pred.shape}")
        classes = y_pred.shape[-1]
        blank = self.blank_index(classes)
        labels = np.asarray(y_true).reshape(len(y_true), -1).astype(np.int64)
        if labels.size and (labels.max() >= classes or labels.min() < -1 or (labels == blank).any()):
            raise ValueError(f"ctc labels must lie in [0, {classes}) without the blank {blank}, or be -1 padding")
        logits = self._logits(y_pred, "softmax")
        mask = _step_mask(y_pred, logits)
        if logits is None:  # probabilities from elsewhere: Keras' ctc_batch_cost takes log(p + epsilon)
            logits = ops.log(y_pred + EPSILON)  # the op's log-softmax then renormalizes them
        logits, steps = _valid_steps_first(logits, mask)
        per_sequence = ops.ctc_loss(logits, labels, steps, blank)
        if np.isposinf(per_sequence.data).any():  # only labels that cannot fit give inf: a data problem
            row = int(np.argmax(np.isposinf(per_sequence.data)))
            kept = y_pred.shape[1] if steps is None else int(steps[row])
            raise DataError(f"ctc: the label sequence {[int(v) for v in labels[row] if v >= 0]} cannot be aligned "
                            f"to {kept} steps (each label takes a step, and equal neighbours a blank between them); "
                            "the mask of its input keeps too few steps: pad the inputs less or shorten the labels")
        if sample_weight is not None:
            share = np.asarray(sample_weight, np.float64).reshape(-1) / max(len(labels), 1)
            return ops.sum(per_sequence * share.astype(per_sequence.dtype))
        return ops.mean(per_sequence)


def _valid_steps_first(x: Tensor, mask: np.ndarray | None) -> tuple[Tensor, np.ndarray | None]:
    """x (batch, time, ...) with each row's unmasked steps moved to the front (see valid_step_order), and
    their counts."""
    if mask is None:
        return x, None
    order, steps = valid_step_order(np.asarray(mask, bool).reshape(x.shape[0], x.shape[1]))
    return (x, steps) if order is None else (ops.getitem(x, (np.arange(x.shape[0])[:, None], order)), steps)


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
