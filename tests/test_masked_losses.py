"""Losses of outputs with a step mask: the mean over the valid steps only, as Keras 3 weights a loss by the
mask, with no gradient reaching a padded step; and metrics that skip padded steps."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from dlcli import ops, registry
from dlcli.losses import create_loss
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(11)
MASK = np.array([[True, True, False, False], [False, True, True, True], [True, False, True, False]])
CLASSES = 3
_labels = rng.integers(0, CLASSES, size=MASK.shape)
_onehot = np.eye(CLASSES)[_labels]
_binary = (rng.random(MASK.shape + (2,)) > 0.5).astype(np.float64)
_regression = rng.normal(size=MASK.shape + (2,))


def _masked(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """fn applied to the prediction with MASK set on it (and on the value fn gives the loss, if that differs)."""
    def call(x: Tensor) -> Tensor:
        x.mask = MASK
        return fn(x)
    return call


def _with_mask(t: Tensor) -> Tensor:
    t.mask = MASK
    return t


def _mask_of(x: Tensor, out: Tensor) -> Tensor:
    """out with x's mask, as an activation layer hands it on."""
    out.mask = x.mask
    return out


# name -> (loss of a prediction tensor, its targets, prediction array (batch, time, ...))
CASES: dict[str, tuple[Callable[[Tensor, np.ndarray], Tensor], np.ndarray, np.ndarray]] = {
    "sparse_logits": (lambda z, y: create_loss({"type": "sparse_categorical_crossentropy", "from_logits": True})(z, y),
                      _labels, rng.normal(size=MASK.shape + (CLASSES,))),
    "sparse_through_softmax": (lambda z, y: create_loss("sparse_categorical_crossentropy")(
        _mask_of(z, ops.softmax(z)), y), _labels, rng.normal(size=MASK.shape + (CLASSES,))),
    "sparse_probabilities": (lambda p, y: create_loss("sparse_categorical_crossentropy")(p, y), _labels,
                             rng.dirichlet(np.ones(CLASSES), size=MASK.shape)),
    "categorical_logits": (lambda z, y: create_loss({"type": "categorical_crossentropy", "from_logits": True})(z, y),
                           _onehot, rng.normal(size=MASK.shape + (CLASSES,))),
    "categorical_probabilities": (lambda p, y: create_loss("categorical_crossentropy")(p, y), _onehot,
                                  rng.dirichlet(np.ones(CLASSES), size=MASK.shape)),
    "binary_logits": (lambda z, y: create_loss({"type": "binary_crossentropy", "from_logits": True})(z, y),
                      _binary, rng.normal(size=MASK.shape + (2,))),
    "binary_through_sigmoid": (lambda z, y: create_loss("binary_crossentropy")(_mask_of(z, ops.sigmoid(z)), y),
                               _binary, rng.normal(size=MASK.shape + (2,))),
    "binary_probabilities": (lambda p, y: create_loss("binary_crossentropy")(p, y), _binary,
                             rng.uniform(0.05, 0.95, size=MASK.shape + (2,))),
    "mean_squared_error": (lambda p, y: create_loss("mse")(p, y), _regression, rng.normal(size=MASK.shape + (2,))),
    "mean_absolute_error": (lambda p, y: create_loss("mae")(p, y), _regression, rng.normal(size=MASK.shape + (2,))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_masked_loss_equals_the_loss_of_the_valid_steps_alone(name: str) -> None:
    loss, targets, x = CASES[name]
    masked = loss(_with_mask(Tensor(x)), targets).item()
    # the valid steps stacked as a batch of their own, without a mask: Keras' mean over the valid steps
    alone = loss(Tensor(x[MASK]), targets[MASK]).item()
    assert masked == pytest.approx(alone, rel=1e-10)
    assert masked != pytest.approx(loss(Tensor(x), targets).item(), rel=1e-3)  # the mask changed the value


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_masked_loss_gradient_matches_finite_differences_and_is_zero_on_padded_steps(name: str) -> None:
    loss, targets, x = CASES[name]
    check_op_gradients(_masked(lambda t: loss(t, targets)), [x])
    t = Tensor(x.copy(), requires_grad=True)
    loss(_with_mask(t), targets).backward()
    assert not t.grad[~MASK].any()
    assert np.abs(t.grad[MASK]).min() > 0


def test_every_elementwise_and_crossentropy_loss_has_a_masked_case() -> None:
    covered = {"sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
               "mean_squared_error", "mean_absolute_error", "ctc"}  # ctc: tests/test_losses.py
    assert set(registry.losses.names()) <= covered


def test_a_loss_with_no_valid_step_is_zero_with_a_zero_gradient() -> None:
    t = Tensor(rng.normal(size=MASK.shape + (CLASSES,)), requires_grad=True)
    t.mask = np.zeros_like(MASK)
    value = create_loss({"type": "sparse_categorical_crossentropy", "from_logits": True})(t, _labels)
    value.backward()
    assert value.item() == 0.0 and not t.grad.any()


def test_masked_sparse_crossentropy_matches_pytorch_with_ignored_targets() -> None:
    """torch.nn.functional.cross_entropy(z.reshape(-1, 3), y.reshape(-1), ignore_index=-100), the padded steps'
    targets set to -100: its mean over the kept targets, and the gradient, recorded from PyTorch 2.13."""
    z = np.array([[[0.5, -1.0, 2.0], [1.5, 0.0, -0.5], [3.0, 3.0, 3.0]],
                  [[-2.0, 1.0, 0.0], [0.25, 0.75, -1.25], [9.0, -9.0, 0.0]]])
    y = np.array([[2, 0, 1], [1, 1, 0]])
    mask = np.array([[True, True, False], [True, False, True]])
    t = Tensor(z.copy(), requires_grad=True)
    t.mask = mask
    value = create_loss({"type": "sparse_categorical_crossentropy", "from_logits": True})(t, y)
    value.backward()
    assert value.item() == pytest.approx(0.2242006607680784, rel=1e-12)
    expected_grad = np.array([[[4.3822598035e-02, 9.7781433177e-03, -5.3600741353e-02],
                               [-6.5968818922e-02, 4.1062906906e-02, 2.4905912016e-02], [0.0, 0.0, 0.0]],
                              [[8.7797567398e-03, -7.3653871825e-02, 6.4874115086e-02], [0.0, 0.0, 0.0],
                               [-3.0852450552e-05, 3.8070250540e-09, 3.0848643527e-05]]])
    np.testing.assert_allclose(t.grad, expected_grad, rtol=1e-9, atol=1e-14)
