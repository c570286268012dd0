"""Optimizers: Keras update rules on a fixed quadratic, PyTorch's numbers, clipping, schedules, state, and lazy
updates from sparse (row) gradients."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from dlcli import registry
from dlcli.optimizers import create_optimizer
from dlcli.tensor import SparseRows, Tensor

CURVATURE = np.array([1.0, 4.0, 0.25])  # f(w) = 0.5 * sum(CURVATURE * w^2), gradient CURVATURE * w
START = np.array([1.0, -2.0, 3.0])


def _run(config: dict, steps: int = 5) -> np.ndarray:
    w = Tensor(START.astype(np.float32), requires_grad=True)
    optimizer = create_optimizer(config, {"w": w})
    for _ in range(steps):
        w.grad = (CURVATURE * w.data).astype(np.float32)
        optimizer.step()
    return w.data.astype(np.float64)


def _keras_reference(config: dict, steps: int = 5) -> np.ndarray:
    """The Keras 3 update rules, written out plainly in float64, one optimizer at a time."""
    kind, lr = config["type"], config.get("learning_rate")
    w = START.copy()
    state = {k: np.zeros(3) for k in ("m", "v", "a", "b", "vhat")}
    state["acc"] = np.full(3, config.get("initial_accumulator_value", 0.1))
    for t in range(1, steps + 1):
        g = CURVATURE * w
        if kind == "sgd":
            m = config.get("momentum", 0.0)
            if m == 0:
                w = w - lr * g
            else:
                state["m"] = m * state["m"] - lr * g
                w = w + (m * state["m"] - lr * g if config.get("nesterov") else state["m"])
        elif kind == "rmsprop":
            rho, eps, mom = config.get("rho", 0.9), config.get("epsilon", 1e-7), config.get("momentum", 0.0)
            state["v"] = rho * state["v"] + (1 - rho) * g * g
            denominator = state["v"] + eps
            if config.get("centered"):
                state["a"] = rho * state["a"] + (1 - rho) * g
                denominator = state["v"] - state["a"] ** 2 + eps
            increment = lr * g / np.sqrt(denominator)
            if mom > 0:
                state["b"] = mom * state["b"] + increment
                increment = state["b"]
            w = w - increment
        elif kind == "adagrad":
            state["acc"] = state["acc"] + g * g
            w = w - lr * g / np.sqrt(state["acc"] + config.get("epsilon", 1e-7))
        elif kind == "adam":
            b1, b2, eps = config.get("beta_1", 0.9), config.get("beta_2", 0.999), config.get("epsilon", 1e-7)
            alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            state["m"] += (g - state["m"]) * (1 - b1)
            state["v"] += (g * g - state["v"]) * (1 - b2)
            v = state["v"]
            if config.get("amsgrad"):
                state["vhat"] = np.maximum(state["vhat"], state["v"])
                v = state["vhat"]
            w = w - alpha * state["m"] / (np.sqrt(v) + eps)
    return w


KERAS_CASES = {
    "sgd": {"type": "sgd", "learning_rate": 0.1},
    "sgd_momentum": {"type": "sgd", "learning_rate": 0.1, "momentum": 0.9},
    "sgd_nesterov": {"type": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
    "rmsprop": {"type": "rmsprop", "learning_rate": 0.01},
    "rmsprop_centered_momentum": {"type": "rmsprop", "learning_rate": 0.01, "centered": True, "momentum": 0.5},
    "adagrad": {"type": "adagrad", "learning_rate": 0.1},
    "adam": {"type": "adam", "learning_rate": 0.1},
    "adam_amsgrad": {"type": "adam", "learning_rate": 0.1, "amsgrad": True},
}


@pytest.mark.parametrize("name", sorted(KERAS_CASES))
def test_optimizer_follows_the_keras_formula(name: str) -> None:
    config = KERAS_CASES[name]
    np.testing.assert_allclose(_run(config), _keras_reference(config), rtol=2e-5, atol=1e-6)


# PyTorch 2.13.0 after 5 steps on the same quadratic, float32, with the same rule: epsilon 0 wherever Keras
# and PyTorch place it differently (inside vs outside the root, before vs after bias correction)
TORCH_CASES = {
    "sgd": ({"type": "sgd", "learning_rate": 0.1}, [0.59048998, -0.15552001, 2.6432869]),
    "sgd_momentum": ({"type": "sgd", "learning_rate": 0.1, "momentum": 0.9}, [-0.029160026, 1.4579999, 2.0711358]),
    "sgd_nesterov": ({"type": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
                     [-0.10458165, 0.33027151, 1.8609464]),
    "rmsprop": ({"type": "rmsprop", "learning_rate": 0.01, "rho": 0.9, "epsilon": 0.0},
                [0.89550668, -1.8945087, 2.8941841]),
    "rmsprop_centered_momentum": ({"type": "rmsprop", "learning_rate": 0.01, "rho": 0.9, "epsilon": 0.0,
                                   "centered": True, "momentum": 0.5}, [0.80224526, -1.7991914, 2.798218]),
    "adagrad": ({"type": "adagrad", "learning_rate": 0.1, "initial_accumulator_value": 0.1, "epsilon": 0.0},
                [0.70560879, -1.6868962, 2.6974444]),
    "adam": ({"type": "adam", "learning_rate": 0.1, "epsilon": 0.0}, [0.50796372, -1.5029558, 2.5017796]),
    "adam_amsgrad": ({"type": "adam", "learning_rate": 0.1, "epsilon": 0.0, "amsgrad": True},
                     [0.50796372, -1.5029558, 2.5017796]),
}


@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_optimizer_matches_pytorch(name: str) -> None:
    config, expected = TORCH_CASES[name]
    np.testing.assert_allclose(_run(config), expected, rtol=1e-5, atol=1e-6)


def test_every_registered_optimizer_has_a_trajectory_case() -> None:
    for name in registry.optimizers.names():
        assert name in KERAS_CASES and name in TORCH_CASES, name


def test_keras_defaults() -> None:
    w = {"w": Tensor(np.zeros(1, np.float32), requires_grad=True)}
    assert create_optimizer("sgd", w).learning_rate == 0.01
    rms = create_optimizer("rmsprop", w)
    assert (rms.learning_rate, rms.spec.rho, rms.spec.epsilon, rms.spec.momentum) == (0.001, 0.9, 1e-7, 0.0)
    adam = create_optimizer("adam", w)
    assert (adam.spec.beta_1, adam.spec.beta_2, adam.spec.epsilon, adam.spec.amsgrad) == (0.9, 0.999, 1e-7, False)
    assert create_optimizer("adagrad", w).spec.initial_accumulator_value == 0.1


def test_clipnorm_scales_each_gradient_to_the_norm() -> None:
    w = Tensor(np.zeros(2, np.float32), requires_grad=True)
    optimizer = create_optimizer({"type": "sgd", "learning_rate": 1.0, "clipnorm": 1.0}, {"w": w})
    w.grad = np.array([3.0, 4.0], np.float32)  # norm 5 -> scaled to norm 1
    optimizer.step()
    np.testing.assert_allclose(w.data, [-0.6, -0.8], rtol=1e-6)
    w.grad = np.array([0.3, 0.4], np.float32)  # norm 0.5: untouched
    optimizer.step()
    np.testing.assert_allclose(w.data, [-0.9, -1.2], rtol=1e-6)


def test_global_clipnorm_scales_all_gradients_together() -> None:
    a, b = Tensor(np.zeros(1, np.float32), requires_grad=True), Tensor(np.zeros(1, np.float32), requires_grad=True)
    optimizer = create_optimizer({"type": "sgd", "learning_rate": 1.0, "global_clipnorm": 1.0}, {"a": a, "b": b})
    a.grad, b.grad = np.array([3.0], np.float32), np.array([4.0], np.float32)
    optimizer.step()
    np.testing.assert_allclose([a.data[0], b.data[0]], [-0.6, -0.8], rtol=1e-6)


def test_clipvalue_clips_each_entry() -> None:
    w = Tensor(np.zeros(3, np.float32), requires_grad=True)
    optimizer = create_optimizer({"type": "sgd", "learning_rate": 1.0, "clipvalue": 0.5}, {"w": w})
    w.grad = np.array([-2.0, 0.25, 9.0], np.float32)
    optimizer.step()
    np.testing.assert_allclose(w.data, [0.5, -0.25, -0.5])


def test_only_one_clipping_option_is_allowed() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at most one of clipnorm"):
        create_optimizer({"type": "adam", "clipnorm": 1.0, "clipvalue": 1.0}, {})


def test_schedule_drives_the_learning_rate_per_step() -> None:
    w = Tensor(np.zeros(1, np.float32), requires_grad=True)
    schedule = {"schedule": "piecewise_constant", "boundaries": [1], "values": [1.0, 0.5]}
    optimizer = create_optimizer({"type": "sgd", "learning_rate": schedule}, {"w": w})
    for _ in range(4):  # steps 0 and 1 use 1.0, steps 2 and 3 use 0.5
        w.grad = np.ones(1, np.float32)
        optimizer.step()
    assert w.data[0] == pytest.approx(-(1.0 + 1.0 + 0.5 + 0.5))


@pytest.mark.parametrize("name", sorted(KERAS_CASES))
def test_state_round_trip_continues_exactly(name: str) -> None:
    config = KERAS_CASES[name]
    w = Tensor(START.astype(np.float32), requires_grad=True)
    first = create_optimizer(config, {"w": w})
    for _ in range(3):
        w.grad = (CURVATURE * w.data).astype(np.float32)
        first.step()
    saved = {k: v.copy() for k, v in first.state().items()}
    resumed_w = Tensor(w.data.copy(), requires_grad=True)
    resumed = create_optimizer(config, {"w": resumed_w})
    resumed.load_state(saved)
    for _ in range(2):
        w.grad = (CURVATURE * w.data).astype(np.float32)
        first.step()
        resumed_w.grad = (CURVATURE * resumed_w.data).astype(np.float32)
        resumed.step()
    np.testing.assert_array_equal(w.data, resumed_w.data)
    assert resumed.iterations == 5


def test_load_state_rejects_a_misshapen_slot() -> None:
    from dlcli.errors import CheckpointError

    w = Tensor(np.zeros(3, np.float32), requires_grad=True)
    optimizer = create_optimizer("adam", {"w": w})
    state = optimizer.state()
    state["w/velocity"] = np.zeros(4, np.float32)
    with pytest.raises(CheckpointError, match="w/velocity"):
        optimizer.load_state(state)


# Sparse (row) gradients: lazy updates of the rows given, every other row and its slots untouched
SPARSE_CASES = {
    **KERAS_CASES,
    "adam_clipnorm": {"type": "adam", "learning_rate": 0.1, "clipnorm": 0.5},
    "rmsprop_clipvalue": {"type": "rmsprop", "learning_rate": 0.01, "momentum": 0.5, "clipvalue": 0.3},
    "sgd_momentum_global_clipnorm": {"type": "sgd", "learning_rate": 0.1, "momentum": 0.9, "global_clipnorm": 0.5},
}
TABLE_SHAPE = (8, 3)
TOUCHED = [1, 4, 6]


def _warmed_up(config: dict, rng: np.random.Generator) -> tuple[Tensor, Any]:
    """A table and its optimizer after two dense steps, so every row and slot holds a nonzero value."""
    table = Tensor(rng.normal(size=TABLE_SHAPE).astype(np.float32), requires_grad=True)
    optimizer = create_optimizer(config, {"t": table})
    for _ in range(2):
        table.grad = rng.normal(size=TABLE_SHAPE).astype(np.float32)
        optimizer.step()
    return table, optimizer


@pytest.mark.parametrize("name", sorted(SPARSE_CASES))
def test_sparse_step_moves_only_its_rows_by_the_dense_formula(name: str) -> None:
    config = SPARSE_CASES[name]
    rng = np.random.default_rng(0)
    table, optimizer = _warmed_up(config, rng)
    before = {k: v.copy() for k, v in optimizer.state().items()}
    before_w = table.data.copy()
    # repeated, unsorted rows: the optimizer must sum them before updating each row once
    ids = np.array([4, 1, 4, 6, 1, 4])
    values = rng.normal(size=(ids.size, 3)).astype(np.float32)
    table.grad = SparseRows(ids, values, TABLE_SHAPE)
    optimizer.step()
    untouched = [r for r in range(TABLE_SHAPE[0]) if r not in TOUCHED]
    after = optimizer.state()
    np.testing.assert_array_equal(table.data[untouched], before_w[untouched])
    slots = [k for k in after if k.startswith("t/")]
    assert slots or name == "sgd"
    for key in slots:
        np.testing.assert_array_equal(after[key][untouched], before[key][untouched], err_msg=key)
    # the touched rows: a dense step of a parameter made of just those rows, from the same state
    rows = Tensor(before_w[TOUCHED].copy(), requires_grad=True)
    reference = create_optimizer(config, {"t": rows})
    reference.load_state({k: v[TOUCHED] if k.startswith("t/") else v for k, v in before.items()})
    summed = np.zeros(TABLE_SHAPE, np.float32)
    np.add.at(summed, ids, values)
    rows.grad = summed[TOUCHED]
    reference.step()
    np.testing.assert_array_equal(table.data[TOUCHED], rows.data)
    for key, value in reference.state().items():
        np.testing.assert_array_equal(after[key][TOUCHED] if key.startswith("t/") else after[key], value,
                                      err_msg=key)


def test_sparse_sgd_equals_dense_sgd_and_clips_globally_with_dense_gradients() -> None:
    # without slots a lazy update is the dense one; global_clipnorm counts the sparse values in the joint norm
    rng = np.random.default_rng(1)
    start, bias_grad = rng.normal(size=TABLE_SHAPE).astype(np.float32), np.array([3.0, -4.0], np.float32)
    sparse = SparseRows(np.array([5, 0, 5]), rng.normal(size=(3, 3)).astype(np.float32) * 10, TABLE_SHAPE)
    results = []
    for grad in (sparse, sparse.to_dense()):
        table, bias = Tensor(start.copy(), requires_grad=True), Tensor(np.zeros(2, np.float32), requires_grad=True)
        optimizer = create_optimizer({"type": "sgd", "learning_rate": 1.0, "global_clipnorm": 1.0},
                                     {"t": table, "b": bias})
        table.grad, bias.grad = grad, bias_grad
        optimizer.step()
        results.append((table.data, bias.data))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)
    total_norm = math.sqrt(float((sparse.to_dense() ** 2).sum()) + 25.0)
    np.testing.assert_allclose(results[0][1], -bias_grad / total_norm, rtol=1e-5)


def test_sparse_gradient_outside_the_parameter_is_a_bug() -> None:
    table = Tensor(np.zeros(TABLE_SHAPE, np.float32), requires_grad=True)
    optimizer = create_optimizer("adam", {"t": table})
    for row in (8, -1):  # the kernels index without bounds checks, so the optimizer checks
        table.grad = SparseRows(np.array([row]), np.ones((1, 3), np.float32), TABLE_SHAPE, is_coalesced=True)
        with pytest.raises(ValueError, match="does not fit"):
            optimizer.step()
