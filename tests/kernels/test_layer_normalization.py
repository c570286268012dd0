"""The layer normalization kernels against plain NumPy, in float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.kernels import layer_normalization as kernels

rng = np.random.default_rng(71)


@pytest.mark.parametrize(("dtype", "rows"), [(np.float32, 37), (np.float64, 37), (np.float32, 301)])
def test_forward_and_backward_match_numpy(dtype: type, rows: int) -> None:
    """37 rows run on one thread, 301 in blocks on two (kernels.MIN_ROWS)."""
    x = (rng.normal(size=(rows, 11)) * 2 + 3).astype(dtype)
    gamma, beta, d_out = rng.normal(size=11).astype(dtype), rng.normal(size=11).astype(dtype), \
        rng.normal(size=(rows, 11)).astype(dtype)
    mean, variance = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    x_hat = (x - mean) / np.sqrt(variance + 1e-3)
    out, m, inv_std = np.empty_like(x), np.empty(rows, dtype), np.empty(rows, dtype)
    kernels.layer_norm_forward(x, gamma, beta, 1e-3, out, m, inv_std)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, x_hat * gamma + beta, rtol=rtol, atol=rtol)
    d_x = np.empty_like(x)
    d_gamma, d_beta = kernels.layer_norm_backward(d_out, x, gamma, m, inv_std, d_x)
    g = d_out * gamma
    expected = (g - g.mean(axis=1, keepdims=True) - x_hat * (g * x_hat).mean(axis=1, keepdims=True)) \
        / np.sqrt(variance + 1e-3)
    np.testing.assert_allclose(d_x, expected, rtol=rtol * 10, atol=rtol)
    assert d_gamma.dtype == d_beta.dtype == dtype
    np.testing.assert_allclose(d_gamma, (d_out * x_hat).sum(axis=0), rtol=rtol * 10, atol=rtol * 10)
    np.testing.assert_allclose(d_beta, d_out.sum(axis=0), rtol=rtol * 10, atol=rtol * 10)
