"""Batch-normalization kernels against plain NumPy versions of themselves."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.kernels import batch_normalization as kernels


@pytest.mark.parametrize("rows,channels,loc", [(7744, 64, 0.0), (37, 5, 50.0), (1, 3, 0.0)])
def test_batch_norm_kernels_match_numpy(rows: int, channels: int, loc: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(loc, 2.0, size=(rows, channels)).astype(np.float32)
    gamma, beta = rng.normal(size=channels).astype(np.float32), rng.normal(size=channels).astype(np.float32)
    epsilon = 1e-3
    out, mean, variance, inv_std = (np.empty_like(x), *(np.empty(channels, np.float32) for _ in range(3)))
    kernels.batch_norm_forward(x, gamma, beta, epsilon, out, mean, variance, inv_std)

    x64 = x.astype(np.float64)
    expected_mean, expected_variance = x64.mean(axis=0), x64.var(axis=0)
    x_hat = (x64 - expected_mean) / np.sqrt(expected_variance + epsilon)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(variance, expected_variance, rtol=1e-5)
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(expected_variance + epsilon), rtol=1e-5)
    np.testing.assert_allclose(out, x_hat * gamma + beta, rtol=1e-4, atol=1e-4)

    d_out = rng.normal(size=x.shape).astype(np.float32)
    d_x, d_gamma, d_beta = np.empty_like(x), np.empty_like(gamma), np.empty_like(gamma)
    kernels.batch_norm_backward(d_out, x, gamma, mean, inv_std, d_x, d_gamma, d_beta)
    expected_d_gamma, expected_d_beta = (d_out * x_hat).sum(axis=0), d_out.astype(np.float64).sum(axis=0)
    expected_d_x = gamma / np.sqrt(expected_variance + epsilon) / rows * (
        rows * d_out - expected_d_beta - x_hat * expected_d_gamma)
    np.testing.assert_allclose(d_beta, expected_d_beta, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(d_gamma, expected_d_gamma, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(d_x, expected_d_x, rtol=1e-3, atol=1e-4)
