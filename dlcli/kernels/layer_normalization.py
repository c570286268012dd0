"""Layer normalization over the rows of a (rows, features) array: each row by its own mean and variance.

Rows are independent, so the forward and the input gradient run in parallel over them (prange), each row in
a few passes over its contiguous features. The row sums may be reassociated (fastmath "reassoc" on those
kernels only): a strict left-to-right float sum cannot be vectorized, and was 6x slower measured on (6400,
256) float32; the sums are then tree-like, which is if anything more accurate. The variance is taken over
x - mean in a second pass, not as E[x^2] - mean^2, which cancels badly in float32 when the mean is large.
Per-row statistics are stored in x's dtype and read back, so the elementwise passes stay in that dtype.
The weight gradients sum over rows, which threads would race on: each thread adds into its own row of a
(chunks, features) scratch array, summed by the caller.
"""

from __future__ import annotations

import numba
import numpy as np

_SUMS = {"reassoc"}  # reassociation only: no approximate division or square roots, no infinities assumed away


def chunks_for(rows: int) -> int:
    """How many row chunks the backward splits the weight-gradient sums into: one per thread, at most one a row."""
    return max(1, min(numba.get_num_threads(), rows))


@numba.njit(cache=True, error_model="numpy", parallel=True, fastmath=_SUMS)
def layer_norm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, epsilon: float, out: np.ndarray,
                       mean: np.ndarray, inv_std: np.ndarray) -> None:
    """out = (x - mean) * inv_std * gamma + beta per row; mean and inv_std (x's dtype) = 1 / sqrt(biased var + eps)."""
    rows, features = x.shape
    for r in numba.prange(rows):
        total = x[r, 0] * 0
        for f in range(features):
            total += x[r, f]
        mean[r] = total / features
        m = mean[r]
        squares = x[r, 0] * 0
        for f in range(features):
            centered = x[r, f] - m
            squares += centered * centered
        inv_std[r] = 1.0 / np.sqrt(squares / features + epsilon)
        s = inv_std[r]
        for f in range(features):
            out[r, f] = (x[r, f] - m) * s * gamma[f] + beta[f]


@numba.njit(cache=True, error_model="numpy", parallel=True, fastmath=_SUMS)
def layer_norm_backward(d_out: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                        inv_std: np.ndarray, d_x: np.ndarray, partial_gamma: np.ndarray,
                        partial_beta: np.ndarray) -> None:
    """d_x by the closed form; each chunk's share of d_gamma = sum(d_out * x_hat) and d_beta = sum(d_out).

    With g = d_out * gamma: d_x = inv_std * (g - mean(g) - x_hat * mean(g * x_hat)), per row. partial_gamma
    and partial_beta are (chunks, features), zeroed by the caller; their column sums are the weight gradients.
    """
    rows, features = x.shape
    chunks = partial_gamma.shape[0]
    per_chunk = (rows + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        sum_gamma, sum_beta = partial_gamma[chunk], partial_beta[chunk]
        x_hat = np.empty(features, x.dtype)
        for r in range(chunk * per_chunk, min(rows, (chunk + 1) * per_chunk)):
            m, s = mean[r], inv_std[r]
            sum_g = x[r, 0] * 0
            sum_g_x_hat = x[r, 0] * 0
            for f in range(features):
                x_hat[f] = (x[r, f] - m) * s
                g = d_out[r, f] * gamma[f]
                sum_g += g
                sum_g_x_hat += g * x_hat[f]
            mean_g, mean_g_x_hat = sum_g / features, sum_g_x_hat / features
            for f in range(features):
                d = d_out[r, f]
                sum_gamma[f] += d * x_hat[f]
                sum_beta[f] += d
                d_x[r, f] = (d * gamma[f] - mean_g - x_hat[f] * mean_g_x_hat) * s
