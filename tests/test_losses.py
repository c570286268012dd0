"""Losses: Keras formulas on hand cases, extreme inputs, PyTorch's numbers, and gradient checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlcli import ops, registry
from dlcli.errors import DataError
from dlcli.losses import EPSILON, create_loss, weighted_total
from dlcli.tensor import Tensor, no_grad
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(7)
_probs = rng.dirichlet(np.ones(4), size=3)
_onehot = np.eye(4)[[0, 3, 1]]
_labels = np.array([0, 3, 1])
_binary_p = rng.uniform(0.05, 0.95, size=(5, 2))
_binary_y = (rng.random((5, 2)) > 0.5).astype(np.float64)
_logits = rng.normal(size=(3, 4))
_ctc_labels = np.array([[1, 1, -1], [0, 2, 1]])  # blank 3: a repeat, and padding
_ctc_labels_blank_0 = np.where(_ctc_labels < 0, -1, _ctc_labels + 1)


def _loss(name: str, **options: object):
    return create_loss({"type": name, **options})


# every registered loss, by name -> (function of the prediction tensor, prediction array)
CASES = {
    "binary_crossentropy": (lambda p: _loss("binary_crossentropy")(p, _binary_y), _binary_p),
    "binary_crossentropy_logits": (lambda z: _loss("binary_crossentropy", from_logits=True)(z, _binary_y),
                                   rng.normal(size=(5, 2))),
    "binary_crossentropy_through_sigmoid": (lambda z: _loss("binary_crossentropy")(ops.sigmoid(z), _binary_y),
                                            rng.normal(size=(5, 2))),
    "categorical_crossentropy": (lambda p: _loss("categorical_crossentropy")(p, _onehot), _probs),
    "categorical_crossentropy_logits": (lambda z: _loss("categorical_crossentropy", from_logits=True)(z, _onehot),
                                        _logits),
    "categorical_crossentropy_through_softmax": (
        lambda z: _loss("categorical_crossentropy")(ops.softmax(z), _onehot), _logits),
    "sparse_categorical_crossentropy": (lambda p: _loss("sparse_categorical_crossentropy")(p, _labels), _probs),
    "sparse_categorical_crossentropy_logits": (
        lambda z: _loss("sparse_categorical_crossentropy", from_logits=True)(z, _labels), _logits),
    "sparse_categorical_crossentropy_sequence": (
        lambda z: _loss("sparse_categorical_crossentropy", from_logits=True)(z, np.array([[0, 2], [1, 1]])),
        rng.normal(size=(2, 2, 3))),
    "ctc": (lambda p: _loss("ctc")(p, _ctc_labels), rng.dirichlet(np.ones(4), size=(2, 5))),
    "ctc_logits": (lambda z: _loss("ctc", from_logits=True, blank=0)(z, _ctc_labels_blank_0),
                   rng.normal(size=(2, 5, 4))),
    "ctc_through_softmax": (lambda z: _loss("ctc")(ops.softmax(z), _ctc_labels), rng.normal(size=(2, 5, 4))),
    "mean_squared_error": (lambda p: _loss("mean_squared_error")(p, _binary_y), _binary_p),
    "mean_absolute_error": (lambda p: _loss("mean_absolute_error")(p, _binary_y), _binary_p),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_gradient_matches_finite_differences(name: str) -> None:
    fn, x = CASES[name]
    check_op_gradients(fn, [x])


def _value(name: str, y_pred: np.ndarray, y_true: np.ndarray, **options: object) -> float:
    return _loss(name, **options)(Tensor(np.asarray(y_pred, np.float64)), y_true).item()


def test_binary_crossentropy_matches_hand_computation_with_keras_clip() -> None:
    p = np.array([[0.9], [0.2], [0.0], [1.0]])
    y = np.array([[1.0], [0.0], [1.0], [1.0]])
    clipped = np.clip(p, EPSILON, 1 - EPSILON)
    expected = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    assert _value("binary_crossentropy", p, y) == pytest.approx(expected, rel=1e-12)
    # p = 0 for a positive costs -log(1e-7), not infinity
    assert _value("binary_crossentropy", [[0.0]], np.array([[1.0]])) == pytest.approx(-math.log(EPSILON), rel=1e-6)


def test_binary_crossentropy_from_logits_matches_pytorch_at_100() -> None:
    z = np.array([[-100.0], [100.0], [2.5], [-0.3]], np.float32)
    y = np.array([[1.0], [0.0], [1.0], [0.0]], np.float32)
    got = _loss("binary_crossentropy", from_logits=True)(Tensor(z), y).item()
    assert got == pytest.approx(50.15830993652344, rel=1e-6)  # F.binary_cross_entropy_with_logits, torch 2.13.0


def test_sparse_crossentropy_from_logits_matches_pytorch_value_and_gradient() -> None:
    z = Tensor(np.array([[100.0, -100.0, 0.0], [1.0, 2.0, 3.0], [-100.0, 100.0, 50.0]], np.float32),
               requires_grad=True)
    loss = _loss("sparse_categorical_crossentropy", from_logits=True)(z, np.array([1, 2, 0]))
    loss.backward()
    # F.cross_entropy(z, labels) and its gradient, torch 2.13.0
    assert loss.item() == pytest.approx(133.4691925048828, rel=1e-6)
    np.testing.assert_allclose(z.grad, [[0.33333334, -0.33333334, 0.0],
                                        [0.030010194, 0.08157617, -0.11158633],
                                        [-0.33333334, 0.33333334, 0.0]], atol=1e-7)
    assert np.isfinite(z.grad).all()


def test_categorical_crossentropy_soft_targets_from_logits_match_pytorch() -> None:
    z = np.array([[100.0, -100.0, 0.0], [1.0, 2.0, 3.0], [-100.0, 100.0, 50.0]], np.float32)
    soft = np.array([[0.2, 0.3, 0.5], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], np.float32)
    got = _loss("categorical_crossentropy", from_logits=True)(Tensor(z), soft).item()
    assert got == pytest.approx(103.46920013427734, rel=1e-6)  # F.cross_entropy with probabilities


def test_categorical_crossentropy_on_probabilities_clips_and_renormalizes() -> None:
    p = np.array([[0.5, 0.5, 0.0], [0.25, 0.25, 1.0]])  # second row sums to 1.5: Keras rescales it
    y = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    expected = (-math.log(EPSILON) - math.log(1.0 / 1.5)) / 2
    assert _value("categorical_crossentropy", p, y) == pytest.approx(expected, rel=1e-9)
    assert _value("sparse_categorical_crossentropy", p, np.array([2, 2])) == pytest.approx(expected, rel=1e-9)


def test_crossentropy_through_softmax_uses_logits_and_gradient_p_minus_y() -> None:
    z = Tensor(np.array([[200.0, 0.0, -200.0]], np.float32), requires_grad=True)
    loss = _loss("categorical_crossentropy")(ops.softmax(z), np.array([[0.0, 0.0, 1.0]], np.float32))
    assert loss.item() == pytest.approx(400.0)  # exact, not the clipped -log(1e-7) = 16.1
    loss.backward()
    np.testing.assert_allclose(z.grad, [[1.0, 0.0, -1.0]], atol=1e-6)


def test_crossentropies_work_from_the_logits_in_evaluation_too() -> None:
    # no tape and a constant input, as in evaluate(): the value must be the training one, not the clipped 16.1
    with no_grad():
        z = Tensor(np.array([[200.0, 0.0, -200.0]], np.float32), requires_grad=True)
        assert _loss("categorical_crossentropy")(ops.softmax(z), np.array([[0.0, 0.0, 1.0]])).item() == \
            pytest.approx(400.0)
    assert _loss("binary_crossentropy")(ops.sigmoid(Tensor(np.array([[-100.0]]))), np.array([[1.0]])).item() == \
        pytest.approx(100.0)


def test_sigmoid_output_uses_logits_in_binary_crossentropy() -> None:
    z = Tensor(np.array([[-100.0]], np.float32), requires_grad=True)
    loss = _loss("binary_crossentropy")(ops.sigmoid(z), np.array([[1.0]], np.float32))
    assert loss.item() == pytest.approx(100.0)
    loss.backward()
    assert z.grad.item() == pytest.approx(-1.0)


def test_regression_losses_match_hand_computation() -> None:
    p, y = np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[1.5, 2.0], [1.0, 5.0]])
    assert _value("mean_squared_error", p, y) == pytest.approx((0.25 + 4.0) / 4)
    assert _value("mse", p, y) == pytest.approx((0.25 + 4.0) / 4)
    assert _value("mean_absolute_error", p, y) == pytest.approx((0.5 + 2.0) / 4)
    assert _value("mae", p, y) == pytest.approx((0.5 + 2.0) / 4)


def test_extreme_probabilities_give_finite_losses_and_gradients() -> None:
    for name, y in [("binary_crossentropy", np.array([[1.0], [0.0]])),
                    ("categorical_crossentropy", np.array([[1.0, 0.0], [0.0, 1.0]]))]:
        p = Tensor(np.array([[0.0], [1.0]]) if y.shape[1] == 1 else np.array([[0.0, 1.0], [1.0, 0.0]]),
                   requires_grad=True)
        loss = _loss(name)(p, y)
        loss.backward()
        assert np.isfinite(loss.item()) and np.isfinite(p.grad).all()


def test_weighted_total_sums_weighted_losses() -> None:
    a, b = Tensor(np.array(2.0), requires_grad=True), Tensor(np.array(3.0), requires_grad=True)
    total = weighted_total([(1.0, a), (0.5, b)])
    assert total.item() == pytest.approx(3.5)
    total.backward()
    assert (a.grad.item(), b.grad.item()) == (1.0, 0.5)


def test_ctc_is_the_batch_mean_of_the_sequence_losses_and_uses_softmax_logits() -> None:
    z = rng.normal(size=(2, 5, 4)).astype(np.float32)
    per_sequence = ops.ctc_loss(Tensor(z), _ctc_labels, blank=3).data
    assert _loss("ctc", from_logits=True)(Tensor(z), _ctc_labels).item() == pytest.approx(per_sequence.mean())
    logits = Tensor(z, requires_grad=True)
    loss = _loss("ctc")(ops.softmax(logits), _ctc_labels)  # exact, through the logits, not log(p + epsilon)
    assert loss.item() == pytest.approx(per_sequence.mean(), rel=1e-6)
    loss.backward()
    z_grad = Tensor(z, requires_grad=True)
    ops.mean(ops.ctc_loss(z_grad, _ctc_labels, blank=3)).backward()
    np.testing.assert_allclose(logits.grad, z_grad.grad, rtol=1e-6)


def test_ctc_on_probabilities_takes_the_log_with_keras_epsilon() -> None:
    p = np.array([[[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]])  # blank 2; zeros would give log 0 without epsilon
    got = _value("ctc", p, np.array([[0, -1]]))
    q = (p + EPSILON) / (p + EPSILON).sum(axis=-1, keepdims=True)  # Keras' ctc_batch_cost: log(p + eps)
    expected = -np.log(q[0, 0, 0] * q[0, 1, 0] + q[0, 0, 2] * q[0, 1, 0] + q[0, 0, 0] * q[0, 1, 2])
    assert got == pytest.approx(expected, rel=1e-9)


def test_ctc_counts_only_the_steps_the_mask_keeps_wherever_the_padding_is() -> None:
    z = rng.normal(size=(2, 5, 4))
    short = ops.ctc_loss(Tensor(z), _ctc_labels, np.array([5, 4]), blank=3).data.mean()
    for padded_last in (True, False):
        x = z.copy()
        mask = np.ones((2, 5), bool)
        if padded_last:
            mask[1, 4] = False
        else:  # padding first, as Keras' pad_sequences puts it: the data is the last 4 steps
            x[1, 1:], x[1, 0], mask[1, 0] = z[1, :4], 9.0, False
        logits = Tensor(x, requires_grad=True)
        logits.mask = mask
        loss = _loss("ctc", from_logits=True)(logits, _ctc_labels)
        assert loss.item() == pytest.approx(short, rel=1e-12)
        loss.backward()
        assert not logits.grad[~mask].any()


def test_ctc_labels_that_the_mask_leaves_too_few_steps_for_are_a_data_error() -> None:
    logits = Tensor(np.zeros((2, 5, 4)))
    logits.mask = np.array([[True] * 5, [False, False, False, True, True]])  # [0, 2, 1] needs 3 steps
    with pytest.raises(DataError, match=r"the label sequence \[0, 2, 1\] cannot be aligned to 2 steps"):
        _loss("ctc", from_logits=True)(logits, _ctc_labels)


def test_ctc_rejects_labels_outside_the_classes_or_equal_to_the_blank() -> None:
    for labels in (np.array([[4, -1]]), np.array([[3, 0]]), np.array([[-2, 0]])):
        with pytest.raises(ValueError, match="ctc labels"):
            _loss("ctc", from_logits=True)(Tensor(np.zeros((1, 3, 4))), labels)


def test_keras3_ctc_data_converted_as_the_docs_say_gives_keras3_ctc_values() -> None:
    # keras.losses.ctc (Keras 3.15.1, torch) on these logits: blank 0, targets padded with 0, logits
    keras_per_sequence = [12.190196990966797, 7.136412620544434, 13.78307056427002]
    logits = (np.sin(np.arange(120) * 0.7) * 2).astype(np.float32).reshape(3, 8, 5)
    keras_targets = np.array([[1, 2, 0, 0], [3, 3, 4, 0], [4, 0, 0, 0]])
    padded = np.where(keras_targets == 0, -1, keras_targets)  # docs/spec.md: pad with -1 instead of 0 ...
    got = _loss("ctc", blank=0, from_logits=True)(Tensor(logits), padded).item()  # ... with blank 0 and logits
    assert got == pytest.approx(np.mean(keras_per_sequence), rel=1e-6)
    # or the labels shifted down by one, the blank last (here its logits moved to the last column)
    shifted = np.where(padded > 0, padded - 1, -1)
    last = _loss("ctc", from_logits=True)(Tensor(np.roll(logits, -1, axis=-1)), shifted)
    assert last.item() == pytest.approx(got, rel=1e-6)


def test_every_registered_loss_has_a_gradient_case() -> None:
    for name in registry.losses.names():
        assert any(case == name or case.startswith(name + "_") for case in CASES), name
