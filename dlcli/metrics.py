"""Metrics as running totals over batches, so an epoch's value weights every example equally (Keras' formulas).

A weighted metric (train.weighted_metrics) is given each example's weight (per step for sequence targets) and
counts an example that many times, as Keras' weighted_metrics do: sum(value x weight) / sum(weight).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator, model_validator

from dlcli import registry
from dlcli.registry import StrictSpec
from dlcli.tensor.mask import mask_covers


class MetricSpec(StrictSpec):
    """A metric by name (`metrics = ["accuracy"]`) or as a table with options."""

    type: str
    name: str | None = Field(None, description="The name the metric is reported under (val_NAME for validation); "
                                               "default: its type.")


# what a metric scores its output's predictions against (Metric.targets):
#   "values": targets of the output's own shape, entry by entry (one-hot rows, regression values, 0/1)
#   "labels": integer class labels, the output's shape without its class axis
#   "labels_or_values": either, told apart by their shape
#   "sequences": label sequences of a ctc output
TargetKind = Literal["values", "labels", "labels_or_values", "sequences"]


class Metric:
    """A streaming metric: `update` with each batch's predictions and targets, `result` at any time."""

    spec: MetricSpec
    state_keys: tuple[str, ...] = ()  # the running totals, saved in checkpoints to resume mid-epoch
    targets: ClassVar[TargetKind] = "values"

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self.name = spec.name or spec.type
        self.reset()

    def state(self) -> dict[str, object]:
        """The running totals as JSON-able values."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k in self.state_keys
                for v in [getattr(self, k)]}

    def load_state(self, state: dict[str, object]) -> None:
        """Continue from `state()`."""
        for key in self.state_keys:
            current = getattr(self, key)
            value = state[key]
            setattr(self, key, np.asarray(value, dtype=current.dtype) if isinstance(current, np.ndarray) else value)

    def reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, y_pred: np.ndarray, y_true: np.ndarray, mask: np.ndarray | None = None,
               weights: np.ndarray | None = None) -> None:  # pragma: no cover - abstract
        """Add a batch; mask (batch, time) is the output's step mask: padded steps do not count; weights
        (batch,) or (batch, time): how many times each example (step) counts, for a weighted metric."""
        raise NotImplementedError

    def result(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


class MeanMetric(Metric):
    """The mean of a per-example value over every example seen."""

    state_keys = ("total", "count")

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def values(self, y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, y_pred: np.ndarray, y_true: np.ndarray, mask: np.ndarray | None = None,
               weights: np.ndarray | None = None) -> None:
        values = self.values(y_pred, y_true)
        if weights is not None:
            weights = _spread(weights, values.shape)
            if mask_covers(mask, values.shape):
                weights = weights * np.asarray(mask, bool).reshape(values.shape[:2] + (1,) * (values.ndim - 2))
            self.add(values, weights)
            return
        if mask_covers(mask, values.shape):  # a padded step is not an example
            values = values[np.asarray(mask, bool)]
        self.add(values)

    def add(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Count each of the per-example values (each `weights` times, for a weighted metric)."""
        if weights is None:
            self.total += float(values.sum(dtype=np.float64))
            self.count += values.size
            return
        weights = np.broadcast_to(weights, values.shape)
        self.total += float((values * weights).sum(dtype=np.float64))
        self.count += float(weights.sum(dtype=np.float64))

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0


def _spread(weights: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per-example (batch,) or per-step (batch, time) weights broadcast over values of `shape`, float64."""
    weights = np.asarray(weights, np.float64)
    return np.broadcast_to(weights.reshape(weights.shape + (1,) * (len(shape) - weights.ndim)), shape)


def _unmasked(y_pred: np.ndarray, y_true: np.ndarray, mask: np.ndarray | None,
              weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Predictions, 0/1 targets and (given) each entry's weight flattened, without the padded steps' entries."""
    y_true = np.asarray(y_true).reshape(y_pred.shape)
    if weights is not None:
        weights = _spread(weights, y_pred.shape)
    if mask_covers(mask, y_pred.shape):
        keep = np.asarray(mask, bool)
        y_pred, y_true = y_pred[keep], y_true[keep]
        weights = weights[keep] if weights is not None else None
    return y_pred.reshape(-1), y_true.reshape(-1), (weights.reshape(-1) if weights is not None else None)


def _labels(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Integer labels with the class axis dropped when the targets carry one of size 1."""
    labels = np.asarray(y_true)
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = labels[..., 0]
    return labels.astype(np.int64, copy=False)


def _per_example(values: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Mean over the last axis, so each example counts once (as Keras reduces elementwise metrics)."""
    if y_pred.ndim <= 1:
        return values
    if y_pred.shape[-1] == 1:  # the same values, without a mean over one entry (8 us of a tiny model's step)
        return values.reshape(y_pred.shape[:-1])
    return values.reshape(y_pred.shape).mean(axis=-1)


@registry.metrics.register("accuracy", spec=MetricSpec, aliases=("acc",))
class Accuracy(MeanMetric):
    """Binary, categorical or sparse categorical accuracy, chosen from the loss and the shapes as Keras does."""

    targets = "labels_or_values"

    def values(self, y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:
        kind = accuracy_kind(None, y_pred.shape[1:] or (1,), np.shape(y_true)[1:] or ())
        return _ACCURACIES[kind].values(self, y_pred, y_true)


@registry.metrics.register("binary_accuracy", spec=MetricSpec)
class BinaryAccuracy(MeanMetric):
    """Fraction of entries where (prediction > 0.5) equals the 0/1 target."""

    def values(self, y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:
        hits = (y_pred > 0.5) == (np.asarray(y_true).reshape(y_pred.shape) > 0.5)
        return _per_example(hits.astype(np.float64), y_pred)


@registry.metrics.register("categorical_accuracy", spec=MetricSpec)
class CategoricalAccuracy(MeanMetric):
    """Fraction of examples whose highest-scoring class is the one-hot target's class."""

    def values(self, y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:
        return (np.argmax(y_pred, axis=-1) == np.argmax(y_true, axis=-1)).astype(np.float64)


@registry.metrics.register("sparse_categorical_accuracy", spec=MetricSpec)
class SparseCategoricalAccuracy(MeanMetric):
    """Fraction of examples whose highest-scoring class is the integer label."""

    targets = "labels"

    def values(self, y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:
        return (np.argmax(y_pred, axis=-1) == _labels(y_true, y_pred)).astype(np.float64)


class TopKSpec(MetricSpec):
    """A top-k accuracy with its k."""

    k: int = Field(5, gt=0, description="A hit when the true class is among the k highest scores.")


def _in_top_k(y_pred: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Whether the label's score is among the k highest (fewer than k scores beat it strictly)."""
    target_score = np.take_along_axis(y_pred, labels[..., None], axis=-1)
    return ((y_pred > target_score).sum(axis=-1) < k).astype(np.float64)


@registry.metrics.register("top_k_categorical_accuracy", spec=TopKSpec, aliases=("top_k_accuracy",))
class TopKCategoricalAccuracy(MeanMetric):
    """Fraction of examples whose one-hot target class is among the k highest scores (k = 5)."""

    targets = "labels_or_values"

    spec: TopKSpec

    def values(self, y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:
        y_true = np.asarray(y_true)
        labels = np.argmax(y_true, axis=-1) if y_true.shape == y_pred.shape else _labels(y_true, y_pred)
        return _in_top_k(y_pred, labels, self.spec.k)


@registry.metrics.register("sparse_top_k_categorical_accuracy", spec=TopKSpec)
class SparseTopKCategoricalAccuracy(MeanMetric):
    """Fraction of examples whose integer label is among the k highest scores (k = 5)."""

    targets = "labels"

    spec: TopKSpec

    def values(self, y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:
        return _in_top_k(y_pred, _labels(y_true, y_pred), self.spec.k)


@registry.metrics.register("mean_absolute_error", spec=MetricSpec, aliases=("mae",))
class MeanAbsoluteError(MeanMetric):
    """mean(|y - p|) over the last axis, averaged over examples."""

    def values(self, y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:
        diff = y_pred.astype(np.float64) - np.asarray(y_true, np.float64).reshape(y_pred.shape)
        return _per_example(np.abs(diff), y_pred)


@registry.metrics.register("mean_squared_error", spec=MetricSpec, aliases=("mse",))
class MeanSquaredError(MeanMetric):
    """mean((y - p)^2) over the last axis, averaged over examples."""

    def values(self, y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:
        diff = y_pred.astype(np.float64) - np.asarray(y_true, np.float64).reshape(y_pred.shape)
        return _per_example(diff * diff, y_pred)


class ThresholdSpec(MetricSpec):
    """Precision or recall with the threshold above which a prediction counts as positive."""

    thresholds: float = Field(0.5, ge=0, le=1, description="A prediction above this counts as positive (Keras' key; "
                                                           "one number: Keras' list of thresholds is not taken).")

    @model_validator(mode="before")
    @classmethod
    def _retired_threshold(cls, data: Any) -> Any:
        """`threshold`, this key's name until it took Keras' `thresholds`, still works (with a warning)."""
        component = str(data.get("type", "precision")) if isinstance(data, dict) else "precision"
        return registry.renamed_key(data, component, "threshold", "thresholds")

    @field_validator("thresholds", mode="before")
    @classmethod
    def _one_threshold(cls, value: Any) -> Any:
        """Keras also takes a list (one result per threshold); this metric reports one value."""
        if isinstance(value, list):
            raise ValueError("one number, e.g. thresholds = 0.5: this metric reports one value, so Keras' list of "
                             "thresholds is not taken (give a metric for each, with its own name)")
        return value


class _ConfusionCounts(Metric):
    """Running true/false positive/negative counts of (prediction > threshold) against 0/1 targets."""

    spec: ThresholdSpec
    state_keys = ("tp", "fp", "fn")

    def reset(self) -> None:
        self.tp = self.fp = self.fn = 0

    def update(self, y_pred: np.ndarray, y_true: np.ndarray, mask: np.ndarray | None = None,
               weights: np.ndarray | None = None) -> None:
        y_pred, y_true, weights = _unmasked(y_pred, y_true, mask, weights)
        predicted = y_pred > self.spec.thresholds
        actual = y_true > 0.5
        for name, hits in (("tp", predicted & actual), ("fp", predicted & ~actual), ("fn", ~predicted & actual)):
            counted = int(np.count_nonzero(hits)) if weights is None else float(weights[hits].sum())
            setattr(self, name, getattr(self, name) + counted)


@registry.metrics.register("precision", spec=ThresholdSpec)
class Precision(_ConfusionCounts):
    """tp / (tp + fp): the fraction of predicted positives that are positive (0 when none is predicted)."""

    def result(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0


@registry.metrics.register("recall", spec=ThresholdSpec)
class Recall(_ConfusionCounts):
    """tp / (tp + fn): the fraction of positives predicted positive (0 when there are none)."""

    def result(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0


class AUCSpec(MetricSpec):
    """The area under the ROC curve, over `num_thresholds` evenly spaced thresholds."""

    num_thresholds: int = Field(200, gt=2, description="How many evenly spaced thresholds in [0, 1] the curve is "
                                                       "computed at.")


@registry.metrics.register("auc", spec=AUCSpec)
class AUC(Metric):
    """Area under the ROC curve: trapezoids over confusion counts at 200 thresholds in [0, 1], as Keras."""

    spec: AUCSpec
    state_keys = ("tp", "fp", "fn", "tn")

    def reset(self) -> None:
        n = self.spec.num_thresholds
        epsilon = 1e-7  # the outer thresholds sit just outside [0, 1] so predictions of exactly 0 or 1 count
        inner = np.arange(1, n - 1, dtype=np.float64) / (n - 1)
        self.thresholds = np.concatenate([[-epsilon], inner, [1.0 + epsilon]]).astype(np.float32)
        # float64: weighted counts are sums of weights (whole numbers stay exact up to 2**53)
        self.tp, self.fp, self.fn, self.tn = (np.zeros(n, np.float64) for _ in range(4))

    def update(self, y_pred: np.ndarray, y_true: np.ndarray, mask: np.ndarray | None = None,
               weights: np.ndarray | None = None) -> None:
        y_pred, y_true, weights = _unmasked(y_pred, y_true, mask, weights)
        scores = y_pred.astype(np.float32)
        actual = y_true > 0.5
        weights = np.ones(scores.size) if weights is None else weights
        for counts_above, counts_below, group, weight in ((self.tp, self.fn, scores[actual], weights[actual]),
                                                         (self.fp, self.tn, scores[~actual], weights[~actual])):
            # the weight of the group scoring strictly above each threshold: binary search in the sorted scores,
            # then the weights summed from there
            order = np.argsort(group, kind="stable")
            cumulative = np.concatenate([[0.0], np.cumsum(weight[order])])
            above = cumulative[-1] - cumulative[np.searchsorted(group[order], self.thresholds, side="right")]
            counts_above += above
            counts_below += cumulative[-1] - above

    def result(self) -> float:
        tpr = np.divide(self.tp, self.tp + self.fn, out=np.zeros(len(self.tp)), where=(self.tp + self.fn) > 0)
        fpr = np.divide(self.fp, self.fp + self.tn, out=np.zeros(len(self.fp)), where=(self.fp + self.tn) > 0)
        return float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2))


_ACCURACIES: dict[str, type[MeanMetric]] = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
}
AccuracyKind = Literal["binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy"]


def accuracy_kind(loss: str | None, output_shape: tuple[int, ...], target_shape: tuple[int, ...] | None = None
                  ) -> AccuracyKind:
    """Which accuracy `accuracy` means for an output: from its loss, else from the shapes as Keras decides."""
    if loss == "binary_crossentropy":
        return "binary_accuracy"
    if loss == "sparse_categorical_crossentropy":
        return "sparse_categorical_accuracy"
    if loss == "categorical_crossentropy":
        return "categorical_accuracy"
    if output_shape[-1] == 1:
        return "binary_accuracy"
    if target_shape is not None and (len(target_shape) < len(output_shape) or target_shape[-1] == 1):
        return "sparse_categorical_accuracy"
    return "categorical_accuracy"


def create_metric(config: str | dict | MetricSpec, loss: str | BaseModel | None = None,
                  output_shape: tuple[int, ...] = (1,), target_shape: tuple[int, ...] | None = None) -> Metric:
    """A metric from a name, a table with `type` or a validated spec; `accuracy` resolves by loss and shape.

    `loss` is the output's loss name or spec; an option the metric shares with the loss spec and does not
    set itself (a sequence metric's blank) takes the loss's value.
    """
    loss_options = loss.model_dump(exclude_none=True) if isinstance(loss, BaseModel) else {}
    loss = loss_options.get("type", loss)
    if isinstance(config, str):
        config = {"type": config}
    if isinstance(config, dict):
        kind = config["type"]
        if kind in ("accuracy", "acc") and loss is not None:
            # a ctc output's accuracy can only be that of its decoded sequences
            resolved = "sequence_accuracy" if loss == "ctc" else accuracy_kind(loss, output_shape, target_shape)
            config = {**config, "type": resolved, "name": config.get("name") or kind}
        entry = registry.metrics.entry(config["type"])
        shared = {k: v for k, v in loss_options.items() if k in entry.spec.model_fields and k not in ("type", "name")}
        config = entry.spec.model_validate({**shared, **config, "type": entry.alias_of or entry.name,
                                            "name": config.get("name") or kind})
    return registry.metrics.get(config.type)(config)


from dlcli import sequence_metrics  # noqa: E402,F401 - registers the CTC metrics, which build on MeanMetric
