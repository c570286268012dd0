"""Batch normalization in training mode: gradients of its three outputs, batch statistics, values against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(9)


def _n(*shape: int, loc: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return rng.normal(loc, scale, size=shape)


def _batch_norm(axis: int = -1, epsilon: float = 1e-3):
    return lambda x, gamma, beta: ops.batch_normalization(x, gamma, beta, axis, epsilon)[0]


def _moments(*outputs: int, axis: int = -1):
    """The chosen outputs (0 the normalized x, 1 the mean, 2 the variance) joined into one flat tensor per example
    row, so the gradient check weighs each with its own random weights."""
    def fn(x, gamma, beta):
        picked = [ops.batch_normalization(x, gamma, beta, axis)[i] for i in outputs]
        return ops.concatenate([ops.reshape(t, (-1,)) for t in picked], axis=0)
    return fn


CASES = {
    "batch_normalization": (_batch_norm(), [_n(3, 4, 5, 3), _n(3), _n(3)]),
    "batch_normalization_dense": (_batch_norm(), [_n(6, 4, loc=2.0, scale=3.0), _n(4), _n(4)]),
    "batch_normalization_channels_first": (_batch_norm(axis=1), [_n(3, 2, 4, 5), _n(2), _n(2)]),
    "batch_normalization_sequence_small_epsilon": (_batch_norm(epsilon=1e-5), [_n(2, 5, 3), _n(3), _n(3)]),
    # the statistics are outputs with their own gradients, alone or beside the normalized x
    "batch_normalization_all_three_outputs": (_moments(0, 1, 2), [_n(5, 3, loc=1.0), _n(3), _n(3)]),
    "batch_normalization_mean_and_variance_only": (_moments(1, 2, axis=1), [_n(4, 2, 3), _n(2), _n(2)]),
    "batch_normalization_variance_only": (_moments(2), [_n(6, 2, scale=2.0), _n(2), _n(2)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_normalization_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_batch_normalization_uses_the_batch_mean_and_biased_variance(axis: int) -> None:
    x = _n(4, 3, 5, 2, loc=5.0)
    channels = x.shape[axis]
    gamma, beta = _n(channels), _n(channels)
    out, mean, variance = ops.batch_normalization(Tensor(x), Tensor(gamma), Tensor(beta), axis, 1e-3)
    mean, variance = mean.data, variance.data
    axes = tuple(i for i in range(4) if i != axis % 4)
    shape = [1, 1, 1, 1]
    shape[axis] = channels
    np.testing.assert_allclose(mean, x.mean(axis=axes), rtol=1e-12)
    np.testing.assert_allclose(variance, x.var(axis=axes), rtol=1e-12)  # ddof=0: the biased variance
    expected = (x - mean.reshape(shape)) / np.sqrt(variance.reshape(shape) + 1e-3) * gamma.reshape(shape) \
        + beta.reshape(shape)
    np.testing.assert_allclose(out.data, expected, rtol=1e-10)


def test_batch_normalization_skips_gradients_nobody_needs() -> None:
    x, gamma, beta = Tensor(_n(4, 3)), Tensor(_n(3), requires_grad=True), Tensor(_n(3))
    out, _, _ = ops.batch_normalization(x, gamma, beta)
    assert out.op.needs_grad == (False, True, False)
    d_x, d_gamma, d_beta = out.op.backward(np.ones((4, 3)))
    assert d_x is None and d_beta is None and d_gamma.shape == (3,)


def test_the_three_outputs_are_one_op_each_with_its_own_gradient_slot() -> None:
    x = Tensor(_n(5, 2), requires_grad=True)
    out, mean, variance = ops.batch_normalization(x, Tensor(np.ones(2)), Tensor(np.zeros(2)))
    assert out.op is mean.op is variance.op and [t.output_index for t in (out, mean, variance)] == [0, 1, 2]
    # only the mean gets a gradient: d mean / d x = 1 / rows for every row; the other outputs pass None
    mean.sum().backward()
    np.testing.assert_allclose(x.grad, np.full((5, 2), 1 / 5), rtol=1e-12)


def test_batch_normalization_keeps_float32() -> None:
    x = _n(8, 3, 3, 4, loc=100.0).astype(np.float32)  # a large mean: a one-pass variance would cancel
    gamma, beta = np.ones(4, np.float32), np.zeros(4, np.float32)
    out, mean, variance = ops.batch_normalization(Tensor(x), Tensor(gamma), Tensor(beta))
    assert out.dtype == mean.dtype == variance.dtype == np.float32
    np.testing.assert_allclose(variance.data, x.astype(np.float64).var(axis=(0, 1, 2)), rtol=1e-5)


# torch.nn.functional.batch_norm(x, running_mean, running_var, gamma, beta, training=True, eps=1e-3) on this x
# in NCHW (permuted), torch 2.13.0, computed once in a scratch script; the tests do not import torch
_TORCH_X = np.array([[[[5.16, 7.33], [-5.66, 1.59], [5.04, 6.06]], [[3.96, 6.49], [2.87, 3.65], [2.54, -1.22]]],
                     [[[-0.54, 3.14], [0.26, 5.81], [5.88, 7.40]], [[1.92, 6.15], [-0.72, -0.45], [2.24, 2.84]]]],
                    np.float32)
_TORCH_GAMMA, _TORCH_BETA = np.array([1.5, -0.5], np.float32), np.array([0.25, 1.0], np.float32)
_TORCH_BATCH_NORM = [
    [[[1.8255502, 0.42302507], [-3.423858, 1.4376287], [1.7673312, 0.6475105]],
     [[1.2433608, 0.5715037], [0.71453863, 1.0735027], [0.55443656, 1.934325]]],
    [[[-0.9398497, 1.1636504], [-0.55172336, 0.69170064], [2.174864, 0.41065183]],
     [[0.25363868, 0.6316021], [-1.0271782, 1.7982196], [0.4088892, 1.2166785]]]]


def test_batch_normalization_matches_pytorch_in_training_mode() -> None:
    # both normalize with the biased batch variance; only their running variances differ (see the layer)
    out, _, _ = ops.batch_normalization(Tensor(_TORCH_X), Tensor(_TORCH_GAMMA), Tensor(_TORCH_BETA), -1, 1e-3)
    np.testing.assert_allclose(out.data, _TORCH_BATCH_NORM, rtol=1e-5, atol=1e-6)
