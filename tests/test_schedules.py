"""Learning-rate schedules against Keras' and PyTorch's formulas: hand-computed values at chosen steps, and the
numbers Keras 3.15.1 and PyTorch 2.13 give (recorded once in /work/refvenv; dlcli never imports them)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from dlcli import registry
from dlcli.optimizers import create_optimizer
from dlcli.schedules import Schedule, learning_rate_at, momentum_at
from dlcli.tensor import Tensor

parse = TypeAdapter(Schedule).validate_python

CASES = {
    "constant": ({"schedule": "constant", "initial": 0.3}, [(0, 0.3), (10**6, 0.3)]),
    "exponential_decay": ({"schedule": "exponential_decay", "initial": 1e-2, "decay_steps": 1000, "decay_rate": 0.9},
                          [(0, 1e-2), (500, 1e-2 * 0.9**0.5), (2000, 1e-2 * 0.81)]),
    "piecewise_constant": ({"schedule": "piecewise_constant", "boundaries": [10, 20], "values": [1.0, 0.5, 0.1]},
                           [(0, 1.0), (10, 1.0), (11, 0.5), (20, 0.5), (21, 0.1)]),
    "cosine_decay": ({"schedule": "cosine_decay", "initial": 2.0, "decay_steps": 100, "alpha": 0.1},
                     [(0, 2.0), (50, 2.0 * (0.9 * 0.5 + 0.1)), (100, 0.2), (500, 0.2)]),
    # restarts after 10, then 20 more steps (t_mul 2), each half as high (m_mul 0.5); alpha is not scaled by m_mul
    "cosine_decay_restarts": ({"schedule": "cosine_decay_restarts", "initial": 1e-2, "first_decay_steps": 10,
                               "m_mul": 0.5, "alpha": 0.1},
                              [(0, 1e-2), (5, 1e-2 * (0.9 * 0.5 + 0.1)), (10, 1e-2 * (0.9 * 0.5 + 0.1)),
                               (20, 1e-2 * (0.9 * 0.25 + 0.1)), (30, 1e-2 * (0.9 * 0.25 + 0.1))]),
    # starts at 0.1 / 25, peaks at step 0.3 * 100 - 1 = 29, ends at 0.004 / 1e4 on step 99 and stays there
    "one_cycle": ({"schedule": "one_cycle", "max_learning_rate": 0.1, "total_steps": 100},
                  [(0, 0.004), (29, 0.1), (64, (0.1 + 4e-7) / 2), (99, 4e-7), (150, 4e-7)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_schedule_values(name: str) -> None:
    config, points = CASES[name]
    spec = parse(config)
    for step, expected in points:
        assert learning_rate_at(spec, step) == pytest.approx(expected, rel=1e-12), step


def test_staircase_decay_steps_down() -> None:
    spec = parse({"schedule": "exponential_decay", "initial": 1.0, "decay_steps": 10, "decay_rate": 0.5,
                  "staircase": True})
    assert [learning_rate_at(spec, s) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]


def test_cosine_midpoint_is_half_way() -> None:
    spec = parse({"schedule": "cosine_decay", "initial": 1.0, "decay_steps": 10})
    assert learning_rate_at(spec, 5) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


def test_bad_schedules_are_rejected() -> None:
    with pytest.raises(ValidationError, match="one more value"):
        parse({"schedule": "piecewise_constant", "boundaries": [1, 2], "values": [1.0]})
    with pytest.raises(ValidationError, match="boundaries must increase"):
        parse({"schedule": "piecewise_constant", "boundaries": [5, 2], "values": [1.0, 0.5, 0.1]})
    with pytest.raises(ValidationError):
        parse({"schedule": "exponential_decay", "initial": 1.0, "decay_steps": 0, "decay_rate": 0.5})


def test_every_schedule_has_a_case() -> None:
    assert set(registry.schedules.names()) == set(CASES)


# warmup_steps alone: the rate rises from 0 to the schedule's first rate, and the schedule runs that many steps late
WARMUP_CASES = {
    "constant": ({"schedule": "constant", "initial": 0.1, "warmup_steps": 4},
                 [(0, 0.0), (1, 0.025), (2, 0.05), (4, 0.1), (10, 0.1)]),
    "exponential_decay": ({"schedule": "exponential_decay", "initial": 1.0, "decay_steps": 10, "decay_rate": 0.5,
                           "warmup_steps": 5}, [(2, 0.4), (5, 1.0), (15, 0.5)]),
    "piecewise_constant": ({"schedule": "piecewise_constant", "boundaries": [5], "values": [1.0, 0.5],
                            "warmup_steps": 10}, [(5, 0.5), (10, 1.0), (15, 1.0), (16, 0.5)]),
    "cosine_decay": ({"schedule": "cosine_decay", "initial": 2.0, "decay_steps": 10, "warmup_steps": 10},
                     [(5, 1.0), (10, 2.0), (15, 1.0), (20, 0.0)]),
    "cosine_decay_restarts": ({"schedule": "cosine_decay_restarts", "initial": 1.0, "first_decay_steps": 4,
                               "t_mul": 1.0, "warmup_steps": 2}, [(1, 0.5), (2, 1.0), (4, 0.5), (6, 1.0)]),
    "one_cycle": ({"schedule": "one_cycle", "max_learning_rate": 0.1, "total_steps": 100, "warmup_steps": 8},
                  [(4, 0.002), (8, 0.004), (37, 0.1)]),
}


def test_every_schedule_has_a_warmup_case() -> None:
    assert set(WARMUP_CASES) == set(registry.schedules.names())


@pytest.mark.parametrize("name", sorted(WARMUP_CASES))
def test_warmup_rises_linearly_from_zero_then_runs_the_schedule_late(name: str) -> None:
    config, points = WARMUP_CASES[name]
    spec = parse(config)
    for step, expected in points:
        assert learning_rate_at(spec, step) == pytest.approx(expected, rel=1e-12, abs=1e-15), step


# Keras 3.15.1, keras.optimizers.schedules.CosineDecay(0.0, 100, alpha=0.1, warmup_target=1e-2, warmup_steps=20)
# and CosineDecay(1e-3, 50, warmup_target=4e-3, warmup_steps=10), at the steps listed (float32)
KERAS_COSINE_WARMUP = [
    ({"schedule": "cosine_decay", "initial": 0.0, "decay_steps": 100, "alpha": 0.1, "warmup_target": 1e-2,
      "warmup_steps": 20}, [0, 5, 19, 20, 45, 70, 120, 500],
     [0.0, 0.0024999999441206455, 0.009499999694526196, 0.009999999776482582, 0.008681980893015862,
      0.00549999950453639, 0.0010000000474974513, 0.0010000000474974513]),
    ({"schedule": "cosine_decay", "initial": 1e-3, "decay_steps": 50, "warmup_target": 4e-3, "warmup_steps": 10},
     [0, 3, 10, 35, 60, 61], [0.0010000000474974513, 0.0019000000320374966, 0.004000000189989805,
                              0.001999999862164259, 0.0, 0.0]),
]
# Keras 3.15.1 CosineDecayRestarts(1e-2, 10, t_mul=2.0, m_mul=0.5, alpha=0.1) and (2e-2, 7, t_mul=1.0, m_mul=0.8)
KERAS_RESTARTS = [
    ({"schedule": "cosine_decay_restarts", "initial": 1e-2, "first_decay_steps": 10, "t_mul": 2.0, "m_mul": 0.5,
      "alpha": 0.1}, [0, 5, 9, 10, 15, 29, 30, 40, 69, 70, 100],
     [0.009999999776482582, 0.00549999950453639, 0.001220245729200542, 0.005499999970197678, 0.00484099006280303,
      0.0010277011897414923, 0.0032499998342245817, 0.0029204951133579016, 0.0010034680599346757,
      0.0021250001154839993, 0.0017777594039216638]),
    ({"schedule": "cosine_decay_restarts", "initial": 2e-2, "first_decay_steps": 7, "t_mul": 1.0, "m_mul": 0.8},
     [0, 3, 6, 7, 10, 14, 20, 22], [0.019999999552965164, 0.01222520787268877, 0.0009903109166771173,
                                    0.01600000075995922, 0.009780165739357471, 0.012800000607967377,
                                    0.0006337982486002147, 0.009732961654663086]),
]
# PyTorch 2.13 CosineAnnealingWarmRestarts(SGD(lr=1e-2), T_0=10, T_mult=2, eta_min=1e-3): the same schedule as
# cosine_decay_restarts with m_mul = 1 and alpha = eta_min / initial
TORCH_WARM_RESTARTS = ({"schedule": "cosine_decay_restarts", "initial": 1e-2, "first_decay_steps": 10,
                        "alpha": 0.1}, [0, 5, 9, 10, 15, 29, 30, 40, 69, 70],
                       [0.010000000000000002, 0.0055000000000000005, 0.001220245676671809, 0.010000000000000002,
                        0.008681980515339464, 0.0010554024673218806, 0.010000000000000002, 0.008681980515339464,
                        0.0010138719982009242, 0.010000000000000002])
# PyTorch 2.13 OneCycleLR on Adam: the rate and beta_1 before the update at each listed step
TORCH_ONE_CYCLE = [
    ({"schedule": "one_cycle", "max_learning_rate": 0.1, "total_steps": 100}, [0, 10, 29, 30, 50, 99],
     [0.0040000000000000036, 0.029516394846410082, 0.1, 0.09994965352845243, 0.0793893450575732, 4e-07],
     [0.95, 0.9234204220349895, 0.85, 0.8500503466729342, 0.8706107373853763, 0.95]),
    ({"schedule": "one_cycle", "max_learning_rate": 0.05, "total_steps": 40, "anneal_strategy": "linear",
      "three_phase": True, "div_factor": 10.0, "final_div_factor": 100.0, "base_momentum": 0.8,
      "max_momentum": 0.9}, [0, 5, 11, 12, 20, 23, 24, 30, 39],
     [0.005, 0.02545454545454546, 0.05, 0.04590909090909091, 0.013181818181818176, 0.004708823529411764,
      0.00441764705882353, 0.0026705882352941177, 4.99999999999997e-05],
     [0.9, 0.8545454545454546, 0.8, 0.8090909090909091, 0.8818181818181818, 0.9, 0.9, 0.9, 0.9]),
]


@pytest.mark.parametrize("config,steps,expected", KERAS_COSINE_WARMUP + KERAS_RESTARTS)
def test_keras_schedules_match_keras_numbers(config: dict, steps: list[int], expected: list[float]) -> None:
    spec = parse(config)
    # Keras computes in float32: 1e-6 relative, and an absolute floor for its zeros
    assert [learning_rate_at(spec, s) for s in steps] == pytest.approx(expected, rel=2e-6, abs=1e-9)


def test_cosine_decay_restarts_matches_pytorch_warm_restarts() -> None:
    config, steps, expected = TORCH_WARM_RESTARTS
    assert [learning_rate_at(parse(config), s) for s in steps] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("config,steps,rates,momenta", TORCH_ONE_CYCLE)
def test_one_cycle_matches_pytorch_rates_and_momenta(config: dict, steps: list[int], rates: list[float],
                                                     momenta: list[float]) -> None:
    spec = parse(config)
    assert [learning_rate_at(spec, s) for s in steps] == pytest.approx(rates, rel=1e-12)
    assert [momentum_at(spec, s) for s in steps] == pytest.approx(momenta, rel=1e-12)


def test_momentum_is_the_optimizers_own_unless_one_cycle_cycles_it() -> None:
    cycle = {"schedule": "one_cycle", "max_learning_rate": 0.1, "total_steps": 100}
    assert momentum_at(0.1, 5) is None
    assert momentum_at(parse({"schedule": "cosine_decay", "initial": 1.0, "decay_steps": 10}), 5) is None
    assert momentum_at(parse({**cycle, "cycle_momentum": False}), 5) is None
    # during a warmup the cycle has not begun: its first momentum
    assert momentum_at(parse({**cycle, "warmup_steps": 10}), 3) == 0.95
    assert momentum_at(parse({**cycle, "warmup_steps": 10}), 39) == pytest.approx(0.85)


@pytest.mark.parametrize("config,message", [
    ({"schedule": "piecewise_constant", "boundaries": [5], "values": [1.0, 0.5], "warmup_target": 2.0},
     "no initial rate to warm up from"),
    ({"schedule": "one_cycle", "max_learning_rate": 0.1, "total_steps": 100, "warmup_target": 0.2},
     "no initial rate to warm up from"),
    ({"schedule": "cosine_decay", "initial": 0.0, "decay_steps": 10}, "0 is allowed only as the start of a warmup"),
    ({"schedule": "one_cycle", "max_learning_rate": 0.1, "total_steps": 5}, "shorter than 2 steps"),
    ({"schedule": "one_cycle", "max_learning_rate": 0.1, "total_steps": 100, "three_phase": True,
      "pct_start": 0.5}, "three_phase needs pct_start below 0.5"),
])
def test_impossible_warmups_and_cycles_are_rejected(config: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse(config)


# PyTorch 2.13: Adam(lr=1.0, eps=1e-7) under OneCycleLR(max_lr=0.05, total_steps=12), 12 steps of the loss
# sum((w @ A)^2) + sum(w) from W0; the rate and beta_1 change every step
ONE_CYCLE_W0 = [[0.1257302165031433, -0.13210485875606537, 0.6404226422309875, 0.10490011423826218],
                [-0.5356693863868713, 0.3615950644016266, 1.3040000200271606, 0.9470809698104858],
                [-0.7037352323532104, -1.2654215097427368, -0.6232744455337524, 0.04132597893476486]]
ONE_CYCLE_A = [[-2.32503080368042, -0.218791663646698, -1.2459110021591187, -0.7322673797607422],
               [-0.5442590117454529, -0.3163001537322998, 0.4116305410861969, 1.042513370513916],
               [-0.12853465974330902, 1.3664634227752686, -0.6651946902275085, 0.35151007771492004],
               [0.9034701585769653, 0.0940122976899147, -0.7434992790222168, -0.9217253923416138]]
TORCH_ADAM_ONE_CYCLE_W = [[-0.09594148397445679, -0.2355407327413559, 0.39785391092300415, -0.13439024984836578],
                          [-0.2978785037994385, 0.5872296690940857, 1.057796597480774, 0.7067707180976868],
                          [-0.4621429145336151, -1.02640962600708, -0.3859330415725708, -0.2015807181596756]]


def test_one_cycle_cycles_adams_beta_1_as_pytorch_does() -> None:
    a = np.array(ONE_CYCLE_A, np.float32)
    w = Tensor(np.array(ONE_CYCLE_W0, np.float32), requires_grad=True)
    optimizer = create_optimizer({"type": "adam", "epsilon": 1e-7, "learning_rate": {
        "schedule": "one_cycle", "max_learning_rate": 0.05, "total_steps": 12}}, {"w": w})
    for _ in range(12):
        w.grad = (2 * (w.data @ a) @ a.T + 1).astype(np.float32)
        optimizer.step()
    # PyTorch adds epsilon after the bias correction, Keras before: 1e-7 apart at most
    np.testing.assert_allclose(w.data, TORCH_ADAM_ONE_CYCLE_W, rtol=2e-5, atol=2e-6)


def test_one_cycle_gives_sgd_without_momentum_a_cycled_momentum() -> None:
    w = Tensor(np.zeros(1, np.float32), requires_grad=True)
    schedule = {"schedule": "one_cycle", "max_learning_rate": 1.0, "total_steps": 10, "anneal_strategy": "linear",
                "div_factor": 10.0}
    optimizer = create_optimizer({"type": "sgd", "learning_rate": schedule}, {"w": w})
    assert "momentum" in optimizer.slots["w"]
    # step 0: rate 0.1, momentum 0.95; step 1: rate 0.1 + 0.9 / 2, momentum 0.95 - 0.1 / 2 (phase 1 ends at step 2)
    # Keras' rule: v = m v - rate g; w += v
    velocity = -0.1 * 1.0
    velocity = 0.9 * velocity - 0.55 * 1.0
    for _ in range(2):
        w.grad = np.ones(1, np.float32)
        optimizer.step()
    assert w.data[0] == pytest.approx(-0.1 + velocity, rel=1e-6)


def test_one_cycle_momentum_without_a_momentum_to_cycle_is_a_spec_error() -> None:
    schedule = {"schedule": "one_cycle", "max_learning_rate": 0.1, "total_steps": 100}
    with pytest.raises(ValidationError, match="adagrad has none .* add cycle_momentum = false"):
        create_optimizer({"type": "adagrad", "learning_rate": schedule}, {})
    create_optimizer({"type": "adagrad", "learning_rate": {**schedule, "cycle_momentum": False}}, {})


def test_a_cycled_momentum_resumes_exactly_from_optimizer_state() -> None:
    config = {"type": "rmsprop", "learning_rate": {"schedule": "one_cycle", "max_learning_rate": 0.05,
                                                    "total_steps": 10}}
    grads = [np.array([0.5, -1.0, 2.0], np.float32) * (i + 1) for i in range(6)]
    w = Tensor(np.ones(3, np.float32), requires_grad=True)
    whole = create_optimizer(config, {"w": w})
    for grad in grads:
        w.grad = grad
        whole.step()
    v = Tensor(np.ones(3, np.float32), requires_grad=True)
    first = create_optimizer(config, {"v": v})
    for grad in grads[:3]:
        v.grad = grad
        first.step()
    resumed = create_optimizer(config, {"v": v})
    resumed.load_state(first.state())
    for grad in grads[3:]:
        v.grad = grad
        resumed.step()
    np.testing.assert_array_equal(v.data, w.data)
