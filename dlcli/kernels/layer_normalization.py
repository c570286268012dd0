"""Layer normalization over the rows of a (rows, features) array: each row by its own mean and variance.

Rows are independent, so the forward and the input gradient run over blocks of rows on threads (nogil
kernels, kernels/parts.py: a prange version took 1.2 s of the text Transformer's 3.6 s compile on an empty
cache), each row in a few passes over its contiguous features. The row sums may be reassociated (fastmath "reassoc" on those
kernels only): a strict left-to-right float sum cannot be vectorized, and was 6x slower measured on (6400,
256) float32; the sums are then tree-like, which is if anything more accurate. The variance is taken over
x - mean in a second pass, not as E[x^2] - mean^2, which cancels badly in float32 when the mean is large.
Per-row statistics are stored in x's dtype and read back, so the elementwise passes stay in that dtype.
The weight gradients sum over rows, which threads would race on: each block adds into its own float64 row
of totals (in_parts' totals), summed after.
"""

from __future__ import annotations

import numba
import numpy as np

from dlcli.kernels.parts import in_parts

_SUMS = {"reassoc"}  # reassociation only: no approximate division or square roots, no infinities assumed away


MIN_ROWS = 64  # rows a block takes at least: a smaller call runs on the caller's thread alone


def layer_norm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, epsilon: float, out: np.ndarray,
                       mean: np.ndarray, inv_std: np.ndarray) -> None:
    """out = (x - mean) * inv_std * gamma + beta per row; mean and inv_std (x's dtype) = 1 / sqrt(biased var + eps)."""
    in_parts(layer_norm_forward_rows, len(x), x, gamma, beta, epsilon, out, mean, inv_std, min_rows=MIN_ROWS)


def layer_norm_backward(d_out: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray, inv_std: np.ndarray,
                        d_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d_x by the closed form (written in place), and (d_gamma, d_beta) = (sum(d_out * x_hat), sum(d_out)) over
    rows, in x's dtype. With g = d_out * gamma: d_x = inv_std * (g - mean(g) - x_hat * mean(g * x_hat)), per row."""
    features = x.shape[1]
    totals = in_parts(layer_norm_backward_rows, len(x), d_out, x, gamma, mean, inv_std, d_x, totals=2 * features,
                      min_rows=MIN_ROWS).sum(axis=0)
    return totals[:features].astype(x.dtype), totals[features:].astype(x.dtype)


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=_SUMS, no_cfunc_wrapper=True)
def layer_norm_forward_rows(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, epsilon: float, out: np.ndarray,
                            mean: np.ndarray, inv_std: np.ndarray, lo: int, hi: int) -> None:
    """layer_norm_forward for the rows [lo, hi)."""
    features = x.shape[1]
    for r in range(lo, hi):
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


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=_SUMS, no_cfunc_wrapper=True)
def layer_norm_backward_rows(d_out: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray,
                             inv_std: np.ndarray, d_x: np.ndarray, totals: np.ndarray, lo: int, hi: int) -> None:
    """layer_norm_backward for the rows [lo, hi): d_x's rows, and into totals (float64, 2 * features) this
    block's sums of d_out * x_hat (first half) and of d_out (second half)."""
    features = x.shape[1]
    x_hat = np.empty(features, x.dtype)
    for r in range(lo, hi):
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
            totals[f] += d * x_hat[f]
            totals[features + f] += d
            d_x[r, f] = (d * gamma[f] - mean_g - x_hat[f] * mean_g_x_hat) * s
