"""Learning-rate schedules (Keras' and PyTorch's formulas), evaluated at the optimizer's step count before each
update.

Every schedule takes a linear warmup: `warmup_steps = N` runs the schedule N steps late and fills those first
steps with a straight line. Without `warmup_target` the line rises from 0 to the schedule's first rate. With it
(Keras 3's CosineDecay form, for the schedules that have an `initial` rate) the line rises from `initial` to
`warmup_target`, and the schedule then starts from `warmup_target` instead of `initial`.

one_cycle also cycles the momentum (PyTorch's OneCycleLR): `momentum_at` gives the optimizers that value for
each step, which they use as SGD's and RMSprop's momentum and as Adam's beta_1.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from dlcli import registry
from dlcli.registry import StrictSpec


class ScheduleSpec(StrictSpec):
    """learning_rate = { schedule = "...", ... }: a learning rate that changes with the step."""

    schedule: str
    warmup_steps: int = Field(0, ge=0, description="Steps of linear warmup before the schedule, whose own steps "
                                                   "then count from the end of the warmup.")
    warmup_target: float | None = Field(None, gt=0, description="Keras 3's warmup: the rate rises from initial to "
                                                                "this one, and the schedule starts from it; "
                                                                "without it the rate rises from 0 to the "
                                                                "schedule's first rate.")

    @model_validator(mode="after")
    def _warmup_has_somewhere_to_go(self) -> "ScheduleSpec":
        initial = getattr(self, "initial", None)
        if self.warmup_target is not None and "initial" not in type(self).model_fields:
            raise ValueError(f"warmup_target: {self.schedule} has no initial rate to warm up from; give "
                             "warmup_steps alone (the rate then rises from 0 to the schedule's first rate)")
        if initial is not None and initial <= 0 and self.warmup_target is None:
            raise ValueError(f"initial must be positive, got {initial} (0 is allowed only as the start of a "
                             "warmup: add warmup_target and warmup_steps)")
        return self


class ConstantSpec(ScheduleSpec):
    """A fixed learning rate."""

    schedule: Literal["constant"] = "constant"
    initial: float = Field(ge=0, description="The learning rate.")


class ExponentialDecaySpec(ScheduleSpec):
    """initial * decay_rate ** (step / decay_steps)."""

    schedule: Literal["exponential_decay"] = "exponential_decay"
    initial: float = Field(ge=0, description="The learning rate at step 0.")
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
    initial: float = Field(ge=0, description="The learning rate at step 0 (the start of the warmup, with "
                                             "warmup_target).")
    decay_steps: int = Field(gt=0, description="Steps to reach the final rate, alpha * initial.")
    alpha: float = Field(0.0, ge=0, le=1, description="The final rate as a fraction of initial.")


class CosineDecayRestartsSpec(ScheduleSpec):
    """Cosine decays that restart, each t_mul times longer and m_mul times higher (Keras' CosineDecayRestarts)."""

    schedule: Literal["cosine_decay_restarts"] = "cosine_decay_restarts"
    initial: float = Field(ge=0, description="The learning rate at step 0 and at the first restart's peak scale.")
    first_decay_steps: int = Field(gt=0, description="Steps of the first decay, from initial down to alpha * "
                                                     "initial.")
    t_mul: float = Field(2.0, gt=0, description="Each period is t_mul times as long as the one before.")
    m_mul: float = Field(1.0, ge=0, description="Each restart starts m_mul times as high as the one before.")
    alpha: float = Field(0.0, ge=0, le=1, description="The lowest rate as a fraction of initial.")


class OneCycleSpec(ScheduleSpec):
    """Up to max_learning_rate and down far below it, momentum the other way (PyTorch's OneCycleLR, fastai)."""

    schedule: Literal["one_cycle"] = "one_cycle"
    max_learning_rate: float = Field(gt=0, description="The peak rate, reached after pct_start of total_steps.")
    total_steps: int = Field(gt=1, description="Steps in the cycle, usually epochs * steps per epoch; the rate "
                                               "stays at its final value after them.")
    pct_start: float = Field(0.3, gt=0, lt=1, description="The fraction of the cycle spent raising the rate.")
    anneal_strategy: Literal["cos", "linear"] = Field("cos", description="The shape of each phase: a half cosine or "
                                                                         "a straight line.")
    div_factor: float = Field(25.0, gt=0, description="The rate starts at max_learning_rate / div_factor.")
    final_div_factor: float = Field(1e4, gt=0, description="The rate ends at the starting rate / final_div_factor.")
    three_phase: bool = Field(False, description="Come back down to the starting rate symmetrically before the "
                                                 "final descent (fastai's and PyTorch's three_phase).")
    cycle_momentum: bool = Field(True, description="Cycle the momentum inversely, between max_momentum and "
                                                   "base_momentum: SGD's and RMSprop's momentum, Adam's beta_1.")
    base_momentum: float = Field(0.85, ge=0, lt=1, description="The momentum at the peak rate.")
    max_momentum: float = Field(0.95, ge=0, lt=1, description="The momentum at the start and the end of the cycle.")

    @model_validator(mode="after")
    def _phases_fit(self) -> "OneCycleSpec":
        if self.pct_start * self.total_steps < 2 or (1 - self.pct_start) * self.total_steps < 2:
            raise ValueError(f"pct_start = {self.pct_start} of total_steps = {self.total_steps} leaves a phase "
                             "shorter than 2 steps; give more total_steps or another pct_start")
        if self.three_phase and 2 * self.pct_start >= 1:
            raise ValueError(f"three_phase needs pct_start below 0.5 (two phases of it, then the final descent), "
                             f"got {self.pct_start}")
        return self


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


@registry.schedules.register("cosine_decay_restarts", spec=CosineDecayRestartsSpec)
def cosine_decay_restarts(spec: CosineDecayRestartsSpec, step: int) -> float:
    """Cosine decay with warm restarts (SGDR), Keras' CosineDecayRestarts."""
    fraction = step / spec.first_decay_steps
    if spec.t_mul == 1.0:
        restart = math.floor(fraction)
        fraction -= restart
    else:  # periods grow geometrically: restart i begins at (1 - t_mul**i) / (1 - t_mul) first periods
        restart = math.floor(math.log(1.0 - fraction * (1.0 - spec.t_mul)) / math.log(spec.t_mul))
        begun = (1.0 - spec.t_mul**restart) / (1.0 - spec.t_mul)
        fraction = (fraction - begun) / spec.t_mul**restart
    cosine = 0.5 * spec.m_mul**restart * (1.0 + math.cos(math.pi * fraction))
    return spec.initial * ((1 - spec.alpha) * cosine + spec.alpha)


@registry.schedules.register("one_cycle", spec=OneCycleSpec)
def one_cycle(spec: OneCycleSpec, step: int) -> float:
    """The 1cycle policy: warm up to max_learning_rate, then anneal far below the start (PyTorch's OneCycleLR)."""
    return _one_cycle_values(spec, step)[0]


def _one_cycle_values(spec: OneCycleSpec, step: int) -> tuple[float, float]:
    """(learning rate, momentum) of the 1cycle policy at `step`, by PyTorch's phases and annealing formulas."""
    start = spec.max_learning_rate / spec.div_factor
    peak, low = spec.max_learning_rate, start / spec.final_div_factor
    high_momentum, low_momentum = spec.max_momentum, spec.base_momentum
    rise_end = spec.pct_start * spec.total_steps - 1
    if spec.three_phase:
        phases = [(rise_end, start, peak, high_momentum, low_momentum),
                  (2 * spec.pct_start * spec.total_steps - 2, peak, start, low_momentum, high_momentum),
                  (spec.total_steps - 1, start, low, high_momentum, high_momentum)]
    else:
        phases = [(rise_end, start, peak, high_momentum, low_momentum),
                  (spec.total_steps - 1, peak, low, low_momentum, high_momentum)]
    step = min(step, spec.total_steps - 1)  # PyTorch stops there (it raises); the rate stays at its last value
    anneal = _cosine_anneal if spec.anneal_strategy == "cos" else _linear_anneal
    begin = 0.0
    for index, (end, rate_from, rate_to, momentum_from, momentum_to) in enumerate(phases):
        if step <= end or index == len(phases) - 1:
            fraction = (step - begin) / (end - begin)
            return anneal(rate_from, rate_to, fraction), anneal(momentum_from, momentum_to, fraction)
        begin = end
    raise AssertionError("unreachable: the last phase takes every step")


def _cosine_anneal(start: float, end: float, fraction: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)


def _linear_anneal(start: float, end: float, fraction: float) -> float:
    return (end - start) * fraction + start


Schedule = Annotated[
    Union[ConstantSpec, ExponentialDecaySpec, PiecewiseConstantSpec, CosineDecaySpec, CosineDecayRestartsSpec,
          OneCycleSpec],
    Field(discriminator="schedule"),
]


def learning_rate_at(learning_rate: float | ScheduleSpec, step: int) -> float:
    """The learning rate for the update at `step` (0 for the first update), warmup included."""
    if isinstance(learning_rate, (int, float)):
        return float(learning_rate)
    spec, warmup = learning_rate, learning_rate.warmup_steps
    rate = registry.schedules.get(spec.schedule)
    if spec.warmup_target is not None:  # Keras 3: initial -> warmup_target, then the schedule from warmup_target
        initial = getattr(spec, "initial")
        if step < warmup:
            return initial + (spec.warmup_target - initial) * step / warmup
        return rate(spec.model_copy(update={"initial": spec.warmup_target}), step - warmup)
    if step < warmup:  # from 0 up to the schedule's first rate
        return rate(spec, 0) * step / warmup
    return rate(spec, step - warmup)


def momentum_at(learning_rate: float | ScheduleSpec, step: int) -> float | None:
    """The momentum a schedule sets for the update at `step` (one_cycle with cycle_momentum), else None: the
    optimizer keeps its own. During a warmup it is the cycle's first momentum."""
    if not isinstance(learning_rate, OneCycleSpec) or not learning_rate.cycle_momentum:
        return None
    return _one_cycle_values(learning_rate, max(step - learning_rate.warmup_steps, 0))[1]


def cycles_momentum(learning_rate: float | ScheduleSpec) -> bool:
    """Whether the schedule sets the momentum itself (see momentum_at)."""
    return momentum_at(learning_rate, 0) is not None
