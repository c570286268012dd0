"""The masked softmax of attention, over the last axis of (batch, heads, queries, keys) scores, and its backward.

Keras' masked softmax sets masked scores to -1e9, takes the softmax and zeroes the masked probabilities, so a
row with no valid key gives all zeros, not a uniform row; skipping the masked entries gives the same numbers
(exp(-1e9 - max) is 0 in float32) in one pass fewer. The mask is (1 or batch, queries, keys), shared by every
head. Rows are independent: the outer loop runs in parallel over (batch, head) pairs. NumPy needed six
passes over the (batch, heads, queries, keys) array for the same (where, max, subtract, exp, sum, divide).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, error_model="numpy", parallel=True)
def masked_softmax(scores: np.ndarray, mask: np.ndarray, has_mask: bool, out: np.ndarray) -> None:
    """out = softmax(scores) over the last axis where mask holds, 0 where it does not (rows with none: all 0)."""
    batch, heads, queries, keys = scores.shape
    shared = mask.shape[0] == 1
    for pair in numba.prange(batch * heads):
        b, h = pair // heads, pair % heads
        m = 0 if shared else b
        for t in range(queries):
            top = -np.inf
            for s in range(keys):
                if (not has_mask or mask[m, t, s]) and scores[b, h, t, s] > top:
                    top = scores[b, h, t, s]
            if top == -np.inf:  # no valid key (or every score -inf): Keras' zeros
                for s in range(keys):
                    out[b, h, t, s] = 0.0
                continue
            total = 0.0
            for s in range(keys):
                if not has_mask or mask[m, t, s]:
                    e = np.exp(scores[b, h, t, s] - top)
                    out[b, h, t, s] = e
                    total += e
                else:
                    out[b, h, t, s] = 0.0
            inverse = 1.0 / total
            for s in range(keys):
                out[b, h, t, s] *= inverse


@numba.njit(cache=True, error_model="numpy", parallel=True)
def softmax_backward(probabilities: np.ndarray, d_probabilities: np.ndarray, d_scores: np.ndarray) -> None:
    """d_scores = p * (d_p - sum(d_p * p)) per row; masked entries have p = 0, so they get no gradient."""
    batch, heads, queries, keys = probabilities.shape
    for pair in numba.prange(batch * heads):
        b, h = pair // heads, pair % heads
        for t in range(queries):
            dot = 0.0
            for s in range(keys):
                dot += d_probabilities[b, h, t, s] * probabilities[b, h, t, s]
            for s in range(keys):
                d_scores[b, h, t, s] = probabilities[b, h, t, s] * (d_probabilities[b, h, t, s] - dot)
