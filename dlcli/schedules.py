"""Learning-rate schedules (Keras' formulas), evaluated at the optimizer's step count before each update."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from dlcli import registry
from dlcli.registry import StrictSpec


class ScheduleSpec(StrictSpec):
    """learning_rate = { schedule = "...", ... }: a learning rate that changes with the step."""

    schedule: str


class ConstantSpec(ScheduleSpec):
    """A fixed learning rate."""

    schedule: Literal["constant"] = "constant"
    initial: float = Field(gt=0, description="The learning rate.")


class ExponentialDecaySpec(ScheduleSpec):
    """initial * decay_rate ** (step / decay_steps)."""

    schedule: Literal["exponential_decay"] = "exponential_decay"
    initial: float = Field(gt=0, description="The learning rate at step 0.")
    decay_steps: int = Field(gt=0, description="Steps over which the rate is multiplied by decay_rate once.")
    decay_rate: float = Field(gt=0, description="The factor applied every decay_steps steps.")
    staircase: bool = Field(False, description="Decay in whole steps of decay_steps instead of continuously.")


class PiecewiseConstantSpec(ScheduleSpec):
    """values[i] while step <= boundaries[i]; values[-1] after the last boundary."""

    schedule: Literal["piecewise_constant"] = "piecewise_constant"
    boundaries: list[int] = Field(description="Increasing step numbers where the rate changes.")
    values: list[float] = Field(description="The rates: values[i] up to boundaries[i], the last one after; one more "
                                            "than boundaries.")

    @model_validator(mode="after")
    def _one_more_value(self) -> "PiecewiseConstantSpec":
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError(f"needs one more value than boundaries: got {len(self.boundaries)} boundaries "
                             f"and {len(self.values)} values")
        if any(later <= earlier for earlier, later in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"boundaries must increase, got {self.boundaries}")
        return self


class CosineDecaySpec(ScheduleSpec):
    """initial * ((1 - alpha) * 0.5 * (1 + cos(pi * step / decay_steps)) + alpha), flat after decay_steps."""

    schedule: Literal["cosine_decay"] = "cosine_decay"
    initial: float = Field(gt=0, description="The learning rate at step 0.")
    decay_steps: int = Field(gt=0, description="Steps to reach the final rate, alpha * initial.")
    alpha: float = Field(0.0, ge=0, le=1, description="The final rate as a fraction of initial.")


@registry.schedules.register("constant", spec=ConstantSpec)
def constant(spec: ConstantSpec, step: int) -> float:
    """The same learning rate at every step."""
    return spec.initial


@registry.schedules.register("exponential_decay", spec=ExponentialDecaySpec)
def exponential_decay(spec: ExponentialDecaySpec, step: int) -> float:
    """Decays by decay_rate every decay_steps (continuously, or in stairs)."""
    ratio = step / spec.decay_steps
    return spec.initial * spec.decay_rate ** (math.floor(ratio) if spec.staircase else ratio)


@registry.schedules.register("piecewise_constant", spec=PiecewiseConstantSpec)
def piecewise_constant(spec: PiecewiseConstantSpec, step: int) -> float:
    """Constant pieces between step boundaries."""
    for boundary, value in zip(spec.boundaries, spec.values):
        if step <= boundary:
            return value
    return spec.values[-1]


@registry.schedules.register("cosine_decay", spec=CosineDecaySpec)
def cosine_decay(spec: CosineDecaySpec, step: int) -> float:
    """Half a cosine from initial down to alpha * initial over decay_steps."""
    progress = min(step, spec.decay_steps) / spec.decay_steps
    return spec.initial * ((1 - spec.alpha) * 0.5 * (1 + math.cos(math.pi * progress)) + spec.alpha)


Schedule = Annotated[
    Union[ConstantSpec, ExponentialDecaySpec, PiecewiseConstantSpec, CosineDecaySpec],
    Field(discriminator="schedule"),
]


def learning_rate_at(learning_rate: float | ScheduleSpec, step: int) -> float:
    """The learning rate for the update at `step` (0 for the first update)."""
    if isinstance(learning_rate, (int, float)):
        return float(learning_rate)
    return registry.schedules.get(learning_rate.schedule)(learning_rate, step)
