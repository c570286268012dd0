"""Fused loss ops on logits: crossentropies and CTC, stable values, gradients of the exact form p - y."""

from __future__ import annotations

import numpy as np

from dlcli.activations import LogSoftmax
from dlcli.tensor import Array, Op, Tensor


class _WeightedMean(Op):
    """A loss op's mean over positions, or with `weights` (broadcastable to the positions, summing to 1 over
    them) a weighted sum: how a step mask makes padded steps count for nothing (weights 0 there)."""

    def __init__(self, weights: Array | None = None) -> None:
        self.weights = weights

    def _reduce(self, per_position: Array, dtype: np.dtype) -> Array:
        if self.weights is None:
            self.scale = 1.0 / max(per_position.size, 1)
            return np.asarray(np.add.reduce(per_position, axis=None) * self.scale, dtype=dtype)
        self.scale = np.broadcast_to(self.weights, per_position.shape).astype(dtype, copy=False)
        return np.asarray(np.add.reduce(per_position * self.scale, axis=None), dtype=dtype)

    def _scaled(self, d_positions: Array, d_out: Array, per_class: bool) -> Array:
        """d_positions times d_out and each position's weight (over the class axis when per_class)."""
        if self.weights is None:
            d_positions *= d_out * self.scale
        else:
            d_positions *= d_out * (self.scale[..., None] if per_class else self.scale)
        return d_positions


class SoftmaxCrossEntropy(_WeightedMean):
    """mean over positions of -sum(y * log_softmax(logits)) over the last axis; y one-hot or soft labels."""

    def forward(self, logits: Array, targets: Array) -> Array:
        log_p = LogSoftmax.function(logits)
        self.log_p, self.targets = log_p, targets
        return self._reduce(-(targets * log_p).sum(axis=-1), logits.dtype)

    def backward(self, d_out: Array) -> tuple[Array, None]:
        d_logits = np.exp(self.log_p)
        d_logits -= self.targets
        return self._scaled(d_logits, d_out, per_class=True), None


class SparseSoftmaxCrossEntropy(_WeightedMean):
    """mean over positions of -log_softmax(logits)[label]; labels are integer class indices."""

    def forward(self, logits: Array, labels: Array) -> Array:
        log_p = LogSoftmax.function(logits)
        self.log_p, self.labels = log_p, labels.astype(np.intp, copy=False)[..., None]
        picked = np.take_along_axis(log_p, self.labels, axis=-1)[..., 0]
        return self._reduce(-picked, logits.dtype)

    def backward(self, d_out: Array) -> tuple[Array, None]:
        d_logits = np.exp(self.log_p)
        # subtract the one-hot without building it: one write per row
        np.put_along_axis(d_logits, self.labels, np.take_along_axis(d_logits, self.labels, axis=-1) - 1, axis=-1)
        return self._scaled(d_logits, d_out, per_class=True), None


class SigmoidBinaryCrossEntropy(_WeightedMean):
    """mean of -(y log s(z) + (1-y) log(1-s(z))), computed as softplus(z) - z y, stable for any z."""

    def forward(self, logits: Array, targets: Array) -> Array:
        self.logits, self.targets = logits, targets
        self.softplus = np.logaddexp(0, logits)  # log(1 + e^z), kept: sigmoid(z) = exp(z - softplus(z))
        return self._reduce(self.softplus - logits * targets, logits.dtype)

    def backward(self, d_out: Array) -> tuple[Array, None]:
        d_logits = np.subtract(self.logits, self.softplus)
        np.exp(d_logits, out=d_logits)
        d_logits -= self.targets
        return self._scaled(d_logits, d_out, per_class=False), None


def packed_labels(labels: Array) -> tuple[Array, Array]:
    """Label sequences padded with -1 -> (labels with every -1 moved to the end of its row, lengths)."""
    labels = np.asarray(labels).astype(np.int64, copy=False).reshape(len(labels), -1)
    present = labels >= 0
    lengths = present.sum(axis=1)
    if not np.array_equal(present, np.arange(labels.shape[1]) < lengths[:, None]):  # a -1 before a label
        labels = np.take_along_axis(labels, np.argsort(~present, axis=1, kind="stable"), axis=1)
    return np.ascontiguousarray(labels), lengths


class CTCLoss(Op):
    """Per-sequence CTC loss -log p(labels | softmax(logits)) of (batch, time, classes) logits.

    The gradient comes from the forward-backward recursion (softmax minus each class's posterior
    occupancy), not from differentiating it step by step; it is computed with the loss, while the
    recursion's variables are at hand. A label sequence that cannot fit in its steps (more labels plus
    repeats than steps) has an infinite loss and a zero gradient, as the reference implementations give inf.
    """

    def __init__(self, input_lengths: Array | None, blank: int) -> None:
        self.input_lengths, self.blank = input_lengths, blank

    def forward(self, logits: Array, labels: Array) -> Array:
        from dlcli.kernels import ctc as kernels  # numba loads on first use, never for `dlcli --help`

        batch, steps, classes = logits.shape
        packed, lengths = packed_labels(labels)
        input_lengths = np.full(batch, steps, np.int64) if self.input_lengths is None \
            else np.clip(np.asarray(self.input_lengths, np.int64), 0, steps)
        nll = np.empty(batch, np.float64)
        self.grad = np.empty((batch, steps, classes) if any(self.needs_grad) else (batch, 0, 0), logits.dtype)
        kernels.ctc_loss(np.ascontiguousarray(logits), packed, input_lengths, lengths, self.blank, nll, self.grad)
        return nll.astype(logits.dtype)

    def backward(self, d_out: Array) -> tuple[Array, None]:
        return self.grad * d_out[:, None, None].astype(self.grad.dtype, copy=False), None


# weights (optional, for the three below): each position's share of the loss, summing to 1; None is the mean
def softmax_crossentropy(logits: Tensor, targets: np.ndarray, weights: np.ndarray | None = None) -> Tensor:
    """Mean crossentropy of softmax(logits) against one-hot (or soft) targets; gradient p - y."""
    return SoftmaxCrossEntropy.apply(logits, Tensor(targets), weights=weights)


def sparse_softmax_crossentropy(logits: Tensor, labels: np.ndarray, weights: np.ndarray | None = None) -> Tensor:
    """Mean crossentropy of softmax(logits) against integer labels; gradient p - onehot."""
    return SparseSoftmaxCrossEntropy.apply(logits, Tensor(labels), weights=weights)


def sigmoid_binary_crossentropy(logits: Tensor, targets: np.ndarray, weights: np.ndarray | None = None) -> Tensor:
    """Mean binary crossentropy of sigmoid(logits) against 0/1 (or soft) targets; gradient s - y."""
    return SigmoidBinaryCrossEntropy.apply(logits, Tensor(targets), weights=weights)


def ctc_loss(logits: Tensor, labels: np.ndarray, input_lengths: np.ndarray | None = None, blank: int = -1) -> Tensor:
    """Per-sequence CTC loss (batch,) of softmax(logits) (batch, time, classes) against label sequences.

    labels (batch, max_length) are padded with -1; input_lengths (batch,) count each sequence's steps (all
    by default); blank -1 is the last class. The gradient is softmax minus the posterior class occupancy.
    """
    classes = logits.shape[-1]
    if not -classes <= blank < classes:
        raise ValueError(f"blank {blank} is not one of the {classes} classes")
    return CTCLoss.apply(logits, Tensor(np.asarray(labels)), input_lengths=input_lengths, blank=blank % classes)
