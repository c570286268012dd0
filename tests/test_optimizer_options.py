"""The options every optimizer takes around its update, as Keras 3's BaseOptimizer applies them: decoupled
weight decay (adamw, exclude_from_weight_decay), the weights' moving average (use_ema, ema_overwrite_frequency,
finalize) and global_clipnorm with them, against Keras 3.15.1's numbers."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.optimizers import create_optimizer
from dlcli.tensor import Tensor

CURVATURE = np.array([1.0, 4.0, 0.25])  # the quadratic of tests/test_optimizers.py: gradient CURVATURE * w
START = np.array([1.0, -2.0, 3.0])

# Keras 3.15.1 (torch backend) after 5 steps of kernel w (gradient CURVATURE * w) and bias b (gradient 2 b), named
# "kernel" and "bias": the weights, and with use_ema the averages optimizer._model_variables_moving_average held
BIAS_START = np.array([0.5, -0.5])
KERAS_DECAY_AND_EMA = {
    "sgd_decay": ({"type": "sgd", "learning_rate": 0.1, "weight_decay": 0.05},
                  {"w": [0.5742687, -0.14914714, 2.57620215], "b": [0.15878363, -0.15878363]}),
    "sgd_momentum_decay": ({"type": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.05},
                           {"w": [-0.03824307, 1.43539071, 2.01017761], "b": [-0.289408, 0.289408]}),
    "rmsprop_decay": ({"type": "rmsprop", "learning_rate": 0.01, "weight_decay": 0.1},
                      {"w": [0.89084882, -1.88486004, 2.87954569], "b": [0.39545411, -0.39545411]}),
    "adagrad_decay": ({"type": "adagrad", "learning_rate": 0.1, "weight_decay": 0.1},
                      {"w": [0.6666767, -1.59916556, 2.56030083], "b": [0.21516086, -0.21516086]}),
    "adam_decay": ({"type": "adam", "learning_rate": 0.1, "weight_decay": 0.1},
                   {"w": [0.46995744, -1.41557038, 2.36528397], "b": [0.01533453, -0.01533453]}),
    "adamw": ({"type": "adamw", "learning_rate": 0.1},
              {"w": [0.50641286, -1.49939096, 2.49621367], "b": [0.02730317, -0.02730317]}),
    "adamw_exclude_bias": ({"type": "adamw", "learning_rate": 0.1, "weight_decay": 0.2,
                            "exclude_from_weight_decay": ["bias"]},
                           {"w": [0.43374291, -1.33191144, 2.23445177], "b": [0.02781872, -0.02781872]}),
    "adam_ema": ({"type": "adam", "learning_rate": 0.1, "use_ema": True, "ema_momentum": 0.9},
                 {"w": [0.50796854, -1.50295973, 2.5017848], "b": [0.02781872, -0.02781872],
                  "w_average": [0.81082124, -1.81000507, 2.80981064], "b_average": [0.31393671, -0.31393671]}),
    "sgd_ema_overwrite": ({"type": "sgd", "learning_rate": 0.1, "use_ema": True, "ema_momentum": 0.5,
                           "ema_overwrite_frequency": 2},
                          {"w": [0.67716002, -0.33408001, 2.72909975], "b": [0.22176, -0.22176],
                           "w_average": [0.71478003, -0.44543999, 2.76408815], "b_average": [0.24948001, -0.24948001]}),
    "adamw_global_clipnorm_ema": ({"type": "adamw", "learning_rate": 0.1, "weight_decay": 0.1, "global_clipnorm": 1.0,
                                   "use_ema": True},
                                  {"w": [0.4644376, -1.41169894, 2.36196494], "b": [0.00788868, -0.00788868],
                                   "w_average": [0.87938935, -1.86835337, 2.857373],
                                   "b_average": [0.3851763, -0.3851763]}),
}


def _run_two(config: dict, steps: int = 5) -> dict[str, np.ndarray]:
    w = Tensor(START.astype(np.float32), requires_grad=True, name="dense/kernel")
    b = Tensor(BIAS_START.astype(np.float32), requires_grad=True, name="dense/bias")
    optimizer = create_optimizer(config, {"dense/kernel": w, "dense/bias": b})
    for _ in range(steps):
        w.grad, b.grad = (CURVATURE * w.data).astype(np.float32), (2.0 * b.data).astype(np.float32)
        optimizer.step()
    out = {"w": w.data, "b": b.data}
    if config.get("use_ema"):
        out["w_average"], out["b_average"] = optimizer.slots["dense/kernel"]["average"], \
            optimizer.slots["dense/bias"]["average"]
    return out


@pytest.mark.parametrize("name", sorted(KERAS_DECAY_AND_EMA))
def test_weight_decay_and_ema_match_keras(name: str) -> None:
    config, expected = KERAS_DECAY_AND_EMA[name]
    got = _run_two(config)
    for key, values in expected.items():
        # Keras' torch Adam rounds its bias correction in float32; over 5 steps of lr 0.1 the bias, near 0.02,
        # moves by up to 3e-6 from ours (the other rules agree to 1e-7)
        np.testing.assert_allclose(got[key], values, rtol=1e-5, atol=4e-6, err_msg=key)


def test_weight_decay_skips_excluded_and_gradientless_weights() -> None:
    w = Tensor(np.ones(2, np.float32), requires_grad=True)
    b = Tensor(np.ones(2, np.float32), requires_grad=True)
    frozen_in_step = Tensor(np.ones(2, np.float32), requires_grad=True)
    optimizer = create_optimizer({"type": "sgd", "learning_rate": 0.5, "weight_decay": 0.1,
                                  "exclude_from_weight_decay": ["norm"]},
                                 {"dense/kernel": w, "layer_norm/gamma": b, "other/kernel": frozen_in_step})
    w.grad, b.grad = np.zeros(2, np.float32), np.zeros(2, np.float32)  # no gradient for other/kernel
    optimizer.step()
    np.testing.assert_array_equal(w.data, np.float32(1 - 0.5 * 0.1))  # 1 - weight_decay * learning_rate
    assert b.data.tolist() == [1.0, 1.0] and frozen_in_step.data.tolist() == [1.0, 1.0]


def test_finalize_copies_the_averages_and_they_resume_exactly() -> None:
    config = {"type": "adam", "learning_rate": 0.1, "use_ema": True, "ema_momentum": 0.8}
    w = Tensor(START.astype(np.float32), requires_grad=True)
    optimizer = create_optimizer(config, {"w": w})
    for _ in range(3):
        w.grad = (CURVATURE * w.data).astype(np.float32)
        optimizer.step()
    assert "w/average" in optimizer.state()
    again_w = Tensor(w.data.copy(), requires_grad=True)
    again = create_optimizer(config, {"w": again_w})
    again.load_state(optimizer.state())
    for opt, weight in ((optimizer, w), (again, again_w)):
        weight.grad = (CURVATURE * weight.data).astype(np.float32)
        opt.step()
        opt.finalize_weights()
    np.testing.assert_array_equal(w.data, again_w.data)
    np.testing.assert_array_equal(w.data, optimizer.slots["w"]["average"])


def test_optimizer_options_are_checked_when_the_spec_loads() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="'\\[bias' is not a regular expression"):
        create_optimizer({"type": "adamw", "exclude_from_weight_decay": ["[bias"]}, {})
    with pytest.raises(ValidationError, match="ema_momentum"):
        create_optimizer({"type": "sgd", "use_ema": True, "ema_momentum": 1.5}, {})
    assert create_optimizer("adamw", {}).spec.weight_decay == 0.004 and create_optimizer("adam", {}).spec.weight_decay \
        is None
