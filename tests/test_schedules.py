"""Learning-rate schedules against Keras' formulas."""

from __future__ import annotations

import math

import pytest
from pydantic import TypeAdapter, ValidationError

from dlcli import registry
from dlcli.schedules import Schedule, learning_rate_at

parse = TypeAdapter(Schedule).validate_python

CASES = {
    "constant": ({"schedule": "constant", "initial": 0.3}, [(0, 0.3), (10**6, 0.3)]),
    "exponential_decay": ({"schedule": "exponential_decay", "initial": 1e-2, "decay_steps": 1000, "decay_rate": 0.9},
                          [(0, 1e-2), (500, 1e-2 * 0.9**0.5), (2000, 1e-2 * 0.81)]),
    "piecewise_constant": ({"schedule": "piecewise_constant", "boundaries": [10, 20], "values": [1.0, 0.5, 0.1]},
                           [(0, 1.0), (10, 1.0), (11, 0.5), (20, 0.5), (21, 0.1)]),
    "cosine_decay": ({"schedule": "cosine_decay", "initial": 2.0, "decay_steps": 100, "alpha": 0.1},
                     [(0, 2.0), (50, 2.0 * (0.9 * 0.5 + 0.1)), (100, 0.2), (500, 0.2)]),
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
