"""Metrics of CTC outputs (batch, time, classes) against label sequences padded with -1: the predictions are
decoded greedily (the best path) with the output's blank, then compared whole (sequence_accuracy) or by edit
distance (edit_distance)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dlcli import registry
from dlcli.decoding import ctc_greedy_decode
from dlcli.metrics import MeanMetric, MetricSpec
from dlcli.ops.loss import packed_labels
from dlcli.tensor.mask import valid_steps_first


class SequenceMetricSpec(MetricSpec):
    """A metric of greedily decoded sequences; blank: the ctc loss's blank, else the last class."""

    blank: int | None = Field(None, ge=0, description="The blank's class index; default: the ctc loss's.")


def _padded_to(labels: np.ndarray, width: int) -> np.ndarray:
    """Rows of labels padded with -1 (or cut, where only padding is cut) to `width` columns."""
    if labels.shape[1] >= width:
        return labels[:, :width]
    return np.pad(labels, ((0, 0), (0, width - labels.shape[1])), constant_values=-1)


class _DecodedMetric(MeanMetric):
    """A per-sequence value of (greedy decoding of y_pred, target sequence), averaged over sequences."""

    spec: SequenceMetricSpec
    targets = "sequences"

    def update(self, y_pred: np.ndarray, y_true: np.ndarray, mask: np.ndarray | None = None,
               weights: np.ndarray | None = None) -> None:
        values = self.decoded_values(*valid_steps_first(y_pred, mask), y_true)
        self.add(values, None if weights is None else np.asarray(weights, np.float64).reshape(len(values), -1)[:, 0])

    def decoded_values(self, y_pred: np.ndarray, steps: np.ndarray | None, y_true: np.ndarray) -> np.ndarray:
        """Each sequence's value; only its first steps[i] steps are decoded (all without steps)."""
        decoded = ctc_greedy_decode(y_pred, steps, blank=self.spec.blank)
        truth, lengths = packed_labels(y_true)
        return self.compare(decoded, (decoded >= 0).sum(axis=1), truth, lengths)

    def compare(self, decoded: np.ndarray, decoded_lengths: np.ndarray, truth: np.ndarray,
                truth_lengths: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


@registry.metrics.register("sequence_accuracy", spec=SequenceMetricSpec)
class SequenceAccuracy(_DecodedMetric):
    """Fraction of sequences whose greedy CTC decoding equals the target sequence exactly."""

    def compare(self, decoded: np.ndarray, decoded_lengths: np.ndarray, truth: np.ndarray,
                truth_lengths: np.ndarray) -> np.ndarray:
        width = max(decoded.shape[1], truth.shape[1])
        return np.all(_padded_to(decoded, width) == _padded_to(truth, width), axis=1).astype(np.float64)


@registry.metrics.register("edit_distance", spec=SequenceMetricSpec)
class EditDistance(_DecodedMetric):
    """Mean edit distance of greedy CTC decodings to the targets, divided by the target length."""

    def compare(self, decoded: np.ndarray, decoded_lengths: np.ndarray, truth: np.ndarray,
                truth_lengths: np.ndarray) -> np.ndarray:
        from dlcli.kernels import ctc_decoding as kernels  # numba loads on first use, never for `dlcli validate`

        distances = np.empty(len(truth), np.int64)
        kernels.edit_distances(np.ascontiguousarray(decoded), decoded_lengths, truth, truth_lengths, distances)
        # TF's normalize=True divides by the target length, giving inf (or NaN) for an empty target; here an
        # empty target counts each predicted label as one edit, so one empty row cannot poison the mean
        return distances / np.maximum(truth_lengths, 1)
