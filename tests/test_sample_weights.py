"""Sample and class weights weigh losses and weighted metrics exactly as Keras 3 does: each example's term times
its weight, divided by the number of examples (not the weights' sum); weighted metrics are sum(value x weight) /
sum(weight). Numbers recorded from Keras 3.15.1 (torch backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlcli.losses import create_loss
from dlcli.metrics import create_metric
from dlcli.optimizers import create_optimizer
from dlcli.spec.load import validate_spec
from dlcli.tensor import Tensor
from dlcli.train.class_weights import example_weights
from dlcli.train.datasets import load_splits
from dlcli.train.loop import EpochProgress, Objective, fit_epoch
from dlcli.graph import build_model
from tests.gradcheck import check_op_gradients

# Keras 3.15.1: loss(y, p, sample_weight=w) and metric.update_state(y, p, sample_weight=w)
Y = np.array([0, 2, 1, 2])
P = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25], [0.5, 0.2, 0.3]])
W = np.array([1.0, 2.0, 0.5, 0.0])
Y_REG = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 3.0], [0.5, 0.0]])
P_REG = np.array([[1.5, 1.0], [0.0, 0.0], [2.0, 4.0], [0.0, 0.0]])
KERAS = {"sparse_cce": 0.4312249422073364, "sparse_cce_unweighted": 0.6911551356315613, "mse": 0.53125,
         "mae": 0.5625, "bce_per_step": 0.30277422070503235, "weighted_accuracy": 1.0,
         "weighted_mae_metric": 0.6428571343421936, "weighted_precision": 0.20000000298023224,
         "weighted_recall": 0.3333333432674408, "weighted_auc": 0.4285714328289032}


def _loss(name: str, y_pred: np.ndarray, y_true: np.ndarray, weights: np.ndarray | None) -> float:
    return create_loss(name)(Tensor(np.asarray(y_pred, np.float32)), y_true, weights).item()


def test_weighted_losses_divide_by_the_examples_not_the_weights_as_keras() -> None:
    assert _loss("sparse_categorical_crossentropy", P, Y, W) == pytest.approx(KERAS["sparse_cce"], rel=1e-6)
    assert _loss("sparse_categorical_crossentropy", P, Y, None) == pytest.approx(KERAS["sparse_cce_unweighted"],
                                                                                rel=1e-6)
    assert _loss("mse", P_REG, Y_REG, W) == pytest.approx(KERAS["mse"], rel=1e-6)
    assert _loss("mae", P_REG, Y_REG, W) == pytest.approx(KERAS["mae"], rel=1e-6)
    # per-step targets (2 sequences x 3 steps) with a weight for each step
    p = np.array([[0.9, 0.2, 0.6], [0.3, 0.1, 0.8]])[..., None]
    y = np.array([[1, 0, 1], [0, 0, 1]], np.float32)[..., None]
    steps = np.array([[1.0, 3.0, 0.0], [2.0, 1.0, 1.0]])
    assert _loss("binary_crossentropy", p, y, steps) == pytest.approx(KERAS["bce_per_step"], rel=1e-6)
    # by hand: the six step terms times their weights, over six steps
    terms = -(y * np.log(p) + (1 - y) * np.log(1 - p))[..., 0]
    assert _loss("binary_crossentropy", p, y, steps) == pytest.approx((terms * steps).sum() / 6, rel=1e-6)


def test_a_step_mask_and_weights_divide_by_the_valid_steps() -> None:
    logits = Tensor(np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32))
    logits.mask = np.array([[True, True, False], [True, False, False]])
    labels = np.array([[1, 2, 0], [3, 0, 0]])
    weights = np.array([2.0, 0.5])
    value = create_loss({"type": "sparse_categorical_crossentropy", "from_logits": True})(logits, labels, weights)
    log_p = logits.data - np.log(np.exp(logits.data).sum(-1, keepdims=True))
    terms = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    expected = (terms[0, 0] * 2 + terms[0, 1] * 2 + terms[1, 0] * 0.5) / 3  # 3 valid steps
    assert value.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["mean_squared_error", "sparse_categorical_crossentropy_logits", "ctc"])
def test_weighted_loss_gradients_match_finite_differences(name: str) -> None:
    rng = np.random.default_rng(1)
    weights = np.array([0.5, 2.0, 0.0])
    if name == "mean_squared_error":
        target = rng.normal(size=(3, 2))
        check_op_gradients(lambda p: create_loss("mse")(p, target, weights), [rng.normal(size=(3, 2))])
    elif name == "ctc":
        labels = np.array([[0, 1], [1, -1], [0, 0]])
        check_op_gradients(lambda z: create_loss({"type": "ctc", "from_logits": True})(z, labels, weights),
                           [rng.normal(size=(3, 5, 3))])
    else:
        labels = np.array([2, 0, 1])
        loss = create_loss({"type": "sparse_categorical_crossentropy", "from_logits": True})
        check_op_gradients(lambda z: loss(z, labels, weights), [rng.normal(size=(3, 3))])


def _metric(name: str, y_pred: np.ndarray, y_true: np.ndarray, weights: np.ndarray, **options: object) -> float:
    metric = create_metric({"type": name, **options})
    half = len(y_pred) // 2  # two batches: the running totals carry the weights over
    metric.update(y_pred[:half], y_true[:half], None, weights[:half])
    metric.update(y_pred[half:], y_true[half:], None, weights[half:])
    return metric.result()


def test_weighted_metrics_count_each_example_as_often_as_its_weight() -> None:
    assert _metric("sparse_categorical_accuracy", P, Y, W) == pytest.approx(KERAS["weighted_accuracy"])
    assert _metric("mae", P_REG, Y_REG, W) == pytest.approx(KERAS["weighted_mae_metric"], rel=1e-6)
    y = np.array([1, 0, 1, 1, 0, 0], np.float32)[:, None]
    p = np.array([0.8, 0.6, 0.4, 0.9, 0.2, 0.7], np.float32)[:, None]
    w = np.array([1.0, 2.0, 3.0, 0.5, 1.0, 4.0])
    assert _metric("precision", p, y, w) == pytest.approx(KERAS["weighted_precision"], rel=1e-6)
    assert _metric("recall", p, y, w) == pytest.approx(KERAS["weighted_recall"], rel=1e-6)
    assert _metric("auc", p, y, w) == pytest.approx(KERAS["weighted_auc"], rel=1e-6)


def test_class_weight_becomes_each_examples_weight_as_in_keras() -> None:
    # Keras' class_weight_to_sample_weights(Y, {0: 1.0, 1: 2.0, 2: 0.5})
    assert example_weights(Y, {0: 1.0, 1: 2.0, 2: 0.5}).tolist() == [1.0, 0.5, 2.0, 0.5]
    assert example_weights(np.array([[0, 3], [1, 1]]), {1: 4.0}).tolist() == [[1, 1], [4, 4]]  # per step


# Keras 3.15.1: Dense(3, softmax) with these weights, SGD(0.1), fit(x, labels, batch_size=6, shuffle=False,
# class_weight={0: 1.0, 1: 3.0, 2: 0.5}), metrics=["accuracy"], weighted_metrics=["accuracy"]
X = [[1.0, 0.5], [-0.5, 1.0], [0.2, -1.0], [1.5, 1.5], [-1.0, -0.2], [0.3, 0.8]]
LABELS = [0, 1, 2, 2, 1, 0]
KERNEL = [[0.1, -0.2, 0.3], [0.4, 0.05, -0.1]]
BIAS = [0.01, -0.02, 0.03]
KERAS_STEP = {"kernel": [[0.13213670253753662, -0.2535652220249176, 0.3214285373687744],
                         [0.3904937207698822, 0.07206615805625916, -0.11255986243486404]],
              "bias": [-0.012548059225082397, 0.029266804456710815, 0.003281254321336746],
              "logs": {"accuracy": 0.6666666865348816, "loss": 1.4417110681533813,
                       "weighted_accuracy": 0.6111111044883728}}


def test_one_step_with_class_weights_matches_keras_fit(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.array(X, np.float32), y=np.array(LABELS))
    spec = validate_spec({"name": "cw", "data": {"train": str(tmp_path / "d.npz")},
                          "model": {"input": {"shape": [2]},
                                    "layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
                          "train": {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"],
                                    "weighted_metrics": ["accuracy"],
                                    "optimizer": {"type": "sgd", "learning_rate": 0.1},
                                    "class_weight": {"0": 1.0, "1": 3.0, "2": 0.5}}}, Path("s.toml"))
    model = build_model(spec.model, np.random.default_rng(0), spec)
    model.parameters()["dense/kernel"].data[...] = KERNEL
    model.parameters()["dense/bias"].data[...] = BIAS
    splits = load_splits(spec, model, np.random.default_rng(0))
    assert splits.class_weights == {"dense": {0: 1.0, 1: 3.0, 2: 0.5}}
    objective = Objective(model)
    progress = EpochProgress(objective)
    fit_epoch(model, objective, create_optimizer({"type": "sgd", "learning_rate": 0.1}, model.parameters()),
              splits.train, [np.arange(6)], progress, after_step=lambda progress: False)
    np.testing.assert_allclose(model.parameters()["dense/kernel"].data, KERAS_STEP["kernel"], rtol=1e-5)
    np.testing.assert_allclose(model.parameters()["dense/bias"].data, KERAS_STEP["bias"], rtol=1e-5, atol=1e-7)
    assert progress.logs() == pytest.approx(KERAS_STEP["logs"], rel=1e-6)


def test_balanced_weights_are_n_over_classes_times_count(tmp_path: Path) -> None:
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2])  # 6, 2 and 4 of 12
    np.savez(tmp_path / "d.npz", x=np.zeros((12, 2), np.float32), y=labels)
    spec = validate_spec({"name": "cw", "data": {"train": str(tmp_path / "d.npz")},
                          "model": {"input": {"shape": [2]},
                                    "layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
                          "train": {"loss": "sparse_categorical_crossentropy", "class_weight": "balanced"}},
                         Path("s.toml"))
    splits = load_splits(spec, build_model(spec.model, np.random.default_rng(0), spec), np.random.default_rng(0))
    assert splits.class_weights["dense"] == pytest.approx({0: 12 / 18, 1: 12 / 6, 2: 12 / 12})
    np.testing.assert_allclose(splits.train.weights["dense"], np.array([12 / 18, 12 / 6, 1.0])[labels], rtol=1e-6)
