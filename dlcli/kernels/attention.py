"""The masked softmax of attention, over the last axis of (batch, heads, queries, keys) scores, and its backward.

Keras' masked softmax sets masked scores to -1e9, takes the softmax and zeroes the masked probabilities, so a
row with no valid key gives all zeros, not a uniform row. Here a masked score becomes LOW (the float32
minimum), whose exponential after the shift is exactly 0 as Keras' is, and a row whose sum is 0 (no valid
key) stays all zeros. The mask is (1 or batch, queries, keys), shared by every head; rows are independent,
so the loops run in parallel over (batch, head) pairs. The exponentials are NumPy's, between the two
kernels: its SIMD exp was 10x faster than Numba's scalar one, and the three passes (shift, exp, normalize)
took 8 ms where one Numba pass took 31 ms ((32, 2, 200, 200) float32, one thread). The row maxima and sums
may be reassociated (fastmath "reassoc" only), which lets LLVM vectorize them.
"""

from __future__ import annotations

import numba
import numpy as np

LOW = -3.4028234e38  # the float32 minimum (finite: fastmath may not assume infinities away, so none is needed)
_SUMS = {"reassoc"}


@numba.njit(cache=True, error_model="numpy", parallel=True, fastmath=_SUMS)
def shift_scores(scores: np.ndarray, mask: np.ndarray, has_mask: bool, low: np.ndarray, out: np.ndarray) -> None:
    """out = scores - (each row's maximum over its valid keys) where the mask holds, low[0] where it does not.

    low is LOW as a one-entry array of the scores' dtype: a float64 constant would turn the float32 loops into
    float64 ones (1.7x slower measured).
    """
    batch, heads, queries, keys = scores.shape
    shared = mask.shape[0] == 1
    floor = low[0]
    for pair in numba.prange(batch * heads):
        b, h = pair // heads, pair % heads
        m = 0 if shared else b
        for t in range(queries):
            top = floor
            for s in range(keys):
                value = scores[b, h, t, s] if not has_mask or mask[m, t, s] else floor
                top = max(top, value)
            for s in range(keys):
                out[b, h, t, s] = scores[b, h, t, s] - top if not has_mask or mask[m, t, s] else floor


@numba.njit(cache=True, error_model="numpy", parallel=True, fastmath=_SUMS)
def normalize_rows(exponentials: np.ndarray) -> None:
    """Each row divided by its sum, in place; a row summing to 0 (no valid key) stays zeros."""
    batch, heads, queries, keys = exponentials.shape
    for pair in numba.prange(batch * heads):
        b, h = pair // heads, pair % heads
        for t in range(queries):
            total = exponentials[b, h, t, 0] * 0
            for s in range(keys):
                total += exponentials[b, h, t, s]
            if total > 0:
                inverse = 1 / total
                for s in range(keys):
                    exponentials[b, h, t, s] *= inverse


def masked_softmax(scores: np.ndarray, mask: np.ndarray, has_mask: bool, out: np.ndarray) -> None:
    """out = softmax(scores) over the last axis where mask holds, 0 where it does not (rows with none: all 0)."""
    shift_scores(scores, mask, has_mask, np.full(1, LOW, scores.dtype), out)
    np.exp(out, out=out)
    normalize_rows(out)


@numba.njit(cache=True, error_model="numpy", parallel=True, fastmath=_SUMS)
def softmax_backward(probabilities: np.ndarray, d_probabilities: np.ndarray, d_scores: np.ndarray) -> None:
    """d_scores = p * (d_p - sum(d_p * p)) per row; masked entries have p = 0, so they get no gradient."""
    batch, heads, queries, keys = probabilities.shape
    for pair in numba.prange(batch * heads):
        b, h = pair // heads, pair % heads
        for t in range(queries):
            dot = probabilities[b, h, t, 0] * 0
            for s in range(keys):
                dot += d_probabilities[b, h, t, s] * probabilities[b, h, t, s]
            for s in range(keys):
                d_scores[b, h, t, s] = probabilities[b, h, t, s] * (d_probabilities[b, h, t, s] - dot)
