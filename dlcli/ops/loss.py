"""Fused crossentropy ops on logits: stable values, and gradients of the exact form p - y."""

from __future__ import annotations

import numpy as np

from dlcli.ops.activation import stable_log_softmax
from dlcli.tensor import Array, Op


class SoftmaxCrossEntropy(Op):
    """mean over positions of -sum(y * log_softmax(logits)) over the last axis; y one-hot or soft labels."""

    def forward(self, logits: Array, targets: Array) -> Array:
        log_p = stable_log_softmax(logits, -1)
        self.log_p, self.targets = log_p, targets
        self.count = log_p.size // log_p.shape[-1]
        return np.asarray(-(targets * log_p).sum() / self.count, dtype=logits.dtype)

    def backward(self, d_out: Array) -> tuple[Array, None]:
        d_logits = np.exp(self.log_p)
        d_logits -= self.targets
        d_logits *= d_out / self.count
        return d_logits, None


class SparseSoftmaxCrossEntropy(Op):
    """mean over positions of -log_softmax(logits)[label]; labels are integer class indices."""

    def forward(self, logits: Array, labels: Array) -> Array:
        log_p = stable_log_softmax(logits, -1)
        self.log_p, self.labels = log_p, labels.astype(np.intp, copy=False)[..., None]
        self.count = self.labels.size
        picked = np.take_along_axis(log_p, self.labels, axis=-1)
        return np.asarray(-picked.sum() / self.count, dtype=logits.dtype)

    def backward(self, d_out: Array) -> tuple[Array, None]:
        d_logits = np.exp(self.log_p)
        # subtract the one-hot without building it: one write per row
        np.put_along_axis(d_logits, self.labels, np.take_along_axis(d_logits, self.labels, axis=-1) - 1, axis=-1)
        d_logits *= d_out / self.count
        return d_logits, None


class SigmoidBinaryCrossEntropy(Op):
    """mean of -(y log s(z) + (1-y) log(1-s(z))), computed as softplus(z) - z y, stable for any z."""

    def forward(self, logits: Array, targets: Array) -> Array:
        self.logits, self.targets = logits, targets
        self.softplus = np.logaddexp(0, logits)  # log(1 + e^z), kept: sigmoid(z) = exp(z - softplus(z))
        loss = self.softplus - logits * targets
        return np.asarray(np.add.reduce(loss, axis=None) / loss.size, dtype=logits.dtype)

    def backward(self, d_out: Array) -> tuple[Array, None]:
        d_logits = np.subtract(self.logits, self.softplus)
        np.exp(d_logits, out=d_logits)
        d_logits -= self.targets
        d_logits *= d_out / self.logits.size
        return d_logits, None
