"""Layer normalization over the rows of a (rows, features) array: each row by its own mean and variance.

Rows are independent, so the forward and the input gradient run in parallel over them (prange), each row in
two passes with an inner loop over the contiguous feature axis. A row's sums are kept in float64: rows are
short, but the variance of x - mean in float32 loses digits when the mean is large. The weight gradients
sum over rows, which threads would race on: each thread adds into its own row of a (threads, features)
scratch array, summed at the end.
"""

from __future__ import annotations

import numba
import numpy as np


def chunks_for(rows: int) -> int:
    """How many row chunks the backward splits the weight-gradient sums into: one per thread, at most one a row."""
    return max(1, min(numba.get_num_threads(), rows))


@numba.njit(cache=True, error_model="numpy", parallel=True)
def layer_norm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, epsilon: float, out: np.ndarray,
                       mean: np.ndarray, inv_std: np.ndarray) -> None:
    """out = (x - mean) * inv_std * gamma + beta per row, with each row's mean and 1 / sqrt(biased var + eps)."""
    rows, features = x.shape
    for r in numba.prange(rows):
        total = 0.0
        for f in range(features):
            total += x[r, f]
        m = total / features
        squares = 0.0
        for f in range(features):
            centered = x[r, f] - m
            squares += centered * centered
        s = 1.0 / np.sqrt(squares / features + epsilon)
        mean[r], inv_std[r] = m, s
        for f in range(features):
            out[r, f] = (x[r, f] - m) * s * gamma[f] + beta[f]


@numba.njit(cache=True, error_model="numpy", parallel=True)
def layer_norm_backward(d_out: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                        inv_std: np.ndarray, d_x: np.ndarray, partial_gamma: np.ndarray,
                        partial_beta: np.ndarray) -> None:
    """d_x by the closed form; each thread's share of d_gamma = sum(d_out * x_hat) and d_beta = sum(d_out).

    With g = d_out * gamma: d_x = inv_std * (g - mean(g) - x_hat * mean(g * x_hat)), per row. partial_gamma
    and partial_beta are (chunks, features), zeroed by the caller; their column sums are the weight gradients.
    """
    rows, features = x.shape
    chunks = partial_gamma.shape[0]
    per_chunk = (rows + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        for r in range(chunk * per_chunk, min(rows, (chunk + 1) * per_chunk)):
            m, s = mean[r], inv_std[r]
            sum_g, sum_g_x_hat = 0.0, 0.0
            for f in range(features):
                x_hat = (x[r, f] - m) * s
                d = d_out[r, f]
                g = d * gamma[f]
                sum_g += g
                sum_g_x_hat += g * x_hat
                partial_gamma[chunk, f] += d * x_hat
                partial_beta[chunk, f] += d
            mean_g, mean_g_x_hat = sum_g / features, sum_g_x_hat / features
            for f in range(features):
                x_hat = (x[r, f] - m) * s
                d_x[r, f] = (d_out[r, f] * gamma[f] - mean_g - x_hat * mean_g_x_hat) * s
