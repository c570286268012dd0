"""Optimizers with Keras' update rules and defaults; each step is one fused kernel pass per parameter.

State is a flat dict of named arrays (`<weight>/<slot>` plus `iterations`), so a checkpoint saves and
restores it exactly.

A parameter whose `.grad` is SparseRows (an embedding table) is updated by the rule `sparse_updates` names.
"keras" (the default) is Keras 3's: every row is updated at every step, the rows the batch did not look up
with a zero gradient, so their momentum, velocity and average gradient decay and momentum keeps moving them,
exactly as a dense gradient would; the kernel scatters the gradient rows in, so no dense gradient is built.
"lazy" is TF's sparse apply ops' and LazyAdam's: only the rows the gradient holds change, and so do only
their slots; untouched rows keep their slots as they are, with no decay, and do not move. It touches only
the looked-up rows, so it is much faster on a large table (an Adam step on 200000 x 64 with 4000 rows
looked up: 0.12 ms lazy, 4.7 ms Keras' rule, 9.3 ms through a dense gradient; benchmarks/
embedding_update_rule.py), and it trains differently (after 5 Adam steps on batches that leave half the
ids out, a table differs from Keras' by about 16%). For sgd without momentum and for adagrad a zero
gradient changes nothing, so the two rules are the same update. Either way a touched row gets exactly the
dense formula; Adam's bias correction uses the global step count. Clipping sees a sparse gradient as its
dense array: clipnorm and global_clipnorm use the norm of its (summed) values, clipvalue clips the values.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from types import ModuleType
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import Discriminator, Field, Tag, model_validator

from dlcli import registry
from dlcli.errors import CheckpointError
from dlcli.flat_parameters import WHOLE, FlatParameters, flat_gradient, zero_row
from dlcli.registry import StrictSpec
from dlcli.weight_averaging import DecayAndAverage
from dlcli.schedules import Schedule, cycles_momentum, learning_rate_at, momentum_at
from dlcli.tensor import Tensor


# a number, or a schedule table: routed by kind so a mistake in one reports only that branch's error
LearningRate = Annotated[
    Union[Annotated[float, Tag("number")], Annotated[Schedule, Tag("table")]],
    Discriminator(lambda v: "table" if isinstance(v, dict) or hasattr(v, "schedule") else "number"),
]


class OptimizerSpec(StrictSpec):
    """Options every optimizer takes: the learning rate (a number or a schedule) and gradient clipping."""

    type: str
    learning_rate: LearningRate = Field(0.001, description="Step size: a number, or a schedule table such as { "
                                                           'schedule = "exponential_decay", ... }.')
    clipnorm: float | None = Field(None, gt=0, description="Clip each gradient to this L2 norm.")
    global_clipnorm: float | None = Field(None, gt=0, description="Clip all gradients to this joint L2 norm.")
    clipvalue: float | None = Field(None, gt=0, description="Clip each gradient entry to +-clipvalue.")
    sparse_updates: Literal["keras", "lazy"] = Field(
        "keras", description='Embedding tables: "keras" decays every row\'s slots at every step (Keras 3); "lazy" '
                             'updates only the rows a batch looks up (faster on large tables, trains differently).')
    # --- weight decay and weight averaging (Keras 3's BaseOptimizer options)
    weight_decay: float | None = Field(None, ge=0, description="Decoupled weight decay: each weight is multiplied by "
                                                              "1 - weight_decay * learning_rate before each update.")
    exclude_from_weight_decay: list[str] = Field([], description='Weights that do not decay: regular expressions '
                                                                 'searched in each weight\'s full name, e.g. '
                                                                 '["bias", "layer_normalization"].')
    use_ema: bool = Field(False, description="Keep an exponential moving average of the weights; the model takes it "
                                             "when training ends.")
    ema_momentum: float = Field(0.99, ge=0, le=1, description="The average's momentum: average = ema_momentum * "
                                                              "average + (1 - ema_momentum) * weight.")
    ema_overwrite_frequency: int | None = Field(None, ge=1, description="With use_ema: copy the average into the "
                                                                       "weights every this many steps.")

    @model_validator(mode="after")
    def _valid_patterns(self) -> "OptimizerSpec":
        for pattern in self.exclude_from_weight_decay:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"exclude_from_weight_decay: {pattern!r} is not a regular expression ({err})") \
                    from None
        return self

    @model_validator(mode="after")
    def _one_clipping(self) -> "OptimizerSpec":
        chosen = [k for k in ("clipnorm", "global_clipnorm", "clipvalue") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise ValueError(f"set at most one of clipnorm, global_clipnorm and clipvalue (as Keras), got {chosen}")
        if isinstance(self.learning_rate, float) and self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        return self

    @model_validator(mode="after")
    def _momentum_to_cycle(self) -> "OptimizerSpec":
        if cycles_momentum(self.learning_rate) and not {"momentum", "beta_1"} & set(type(self).model_fields):
            raise ValueError(f"learning_rate: one_cycle cycles the momentum, and {self.type} has none (as PyTorch's "
                             "OneCycleLR refuses); add cycle_momentum = false to the schedule")
        return self


@functools.cache
def _kernels() -> ModuleType:
    """The Numba update kernels, imported on first use so specs validate without loading numba (then cached: an
    import statement costs a microsecond on every step, a tenth of a small model's whole update)."""
    from dlcli.kernels import optim

    return optim


class Optimizer(DecayAndAverage):
    """Updates parameters in place from their `.grad`; subclasses define their slots and one kernel call."""

    slot_names: tuple[str, ...] = ()
    spec: Any

    def __init__(self, spec: OptimizerSpec, params: dict[str, Tensor]) -> None:
        self.spec = spec
        self.params = params
        self.iterations = 0
        self.lr_scale = 1.0  # set by reduce_lr_on_plateau; multiplies the spec's rate or schedule
        if spec.use_ema:
            self.slot_names = (*self.slot_names, "average")
        self.slots: dict[str, dict[str, np.ndarray]] = {
            name: {slot: self._initial_slot(slot, p.data) for slot in self.slot_names} for name, p in params.items()
        }
        self._together = FlatParameters.adopt(params, self.slots)
        self._flat = {name: p.data.reshape(-1) for name, p in params.items()}
        for name, p in params.items():
            if not np.shares_memory(self._flat[name], p.data):
                raise ValueError(f"parameter {name} must be a contiguous array, updated in place")

    def _initial_slot(self, slot: str, value: np.ndarray) -> np.ndarray:
        return np.zeros(value.size, value.dtype)

    @property
    def _every_row(self) -> bool:
        """Whether rows a sparse gradient skips are updated too, with a zero gradient (Keras' rule)."""
        return self.spec.sparse_updates == "keras"

    @property
    def learning_rate(self) -> float:
        """The learning rate the next update uses."""
        return learning_rate_at(self.spec.learning_rate, self.iterations) * self.lr_scale

    def _momentum(self, own: float) -> float:
        """The momentum (Adam: beta_1) of the next update: the one a one_cycle schedule sets, else `own`."""
        cycled = momentum_at(self.spec.learning_rate, self.iterations)
        return own if cycled is None else cycled

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient, then count the step.

        A SparseRows gradient updates its rows, and the others by `sparse_updates` (see the module's docstring).
        """
        kernels = _kernels()
        lr = self.learning_rate
        clip_value = self.spec.clipvalue or 0.0
        together = self._together
        if together is not None and self.spec.clipnorm is None and together.gather_gradients(self.params):
            # one kernel call over every parameter: the same elementwise formula, so the same bits
            # each parameter's squared norm summed as the per-parameter path sums them, so the scale has its bits
            scale = 1.0 if self.spec.global_clipnorm is None \
                else self._global_scale(together.grads[part] for _, part in together.parts)
            if self.spec.weight_decay:
                self._decay_weights({name: (None, WHOLE) for name in self.params}, lr)
            self._update(kernels, together.weights, together.grads, WHOLE, together.slots, lr, scale, clip_value)
            self._average_weights()
            self.iterations += 1
            return
        grads = {name: flat_gradient(name, p) for name, p in self.params.items() if p.grad is not None}
        global_scale = self._global_scale([g for g, _ in grads.values()])
        self._decay_weights(grads, lr)
        for name, (flat_grad, rows) in grads.items():
            scale = global_scale
            if self.spec.clipnorm is not None:
                norm = math.sqrt(float(np.dot(flat_grad, flat_grad)))
                scale = self.spec.clipnorm / max(norm, self.spec.clipnorm)
            self._update(kernels, self._flat[name], flat_grad, rows, self.slots[name], lr, scale, clip_value)
        self._average_weights()
        self.iterations += 1

    def _global_scale(self, flat_grads: Iterable[np.ndarray]) -> float:
        if self.spec.global_clipnorm is None:
            return 1.0
        total = sum(float(np.dot(g, g)) for g in flat_grads)
        return self.spec.global_clipnorm / max(math.sqrt(total), self.spec.global_clipnorm)

    def _update(self, kernels: ModuleType, w: np.ndarray, g: np.ndarray, rows: np.ndarray,
                slots: dict[str, np.ndarray], lr: float, scale: float,
                clip_value: float) -> None:  # pragma: no cover - abstract
        """One kernel call: g holds rows.size rows of w (seen as rows of equal width), row r updating rows[r]."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for param in self.params.values():
            param.grad = None

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to continue exactly: the step count and every slot, by name."""
        out = {"iterations": np.asarray(self.iterations, np.int64), "lr_scale": np.asarray(self.lr_scale, np.float64)}
        for name, slots in self.slots.items():
            for slot, value in slots.items():
                out[f"{name}/{slot}"] = value.reshape(self.params[name].shape)
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state()` returned; a missing or misshapen slot is a CheckpointError."""
        if "iterations" not in state:
            raise CheckpointError("optimizer state has no 'iterations' entry")
        for name, slots in self.slots.items():
            for slot, value in slots.items():
                key = f"{name}/{slot}"
                if key not in state:
                    raise CheckpointError(f"optimizer state has no {key!r}")
                saved = np.asarray(state[key])
                if saved.size != value.size:
                    raise CheckpointError(f"optimizer state {key!r} has shape {saved.shape}, "
                                          f"expected {self.params[name].shape}")
                value[...] = saved.reshape(-1)
        self.iterations = int(state["iterations"])
        self.lr_scale = float(state.get("lr_scale", 1.0))


class SGDSpec(OptimizerSpec):
    """optimizer = { type = "sgd", ... }."""

    type: Literal["sgd"] = "sgd"
    learning_rate: LearningRate = Field(0.01, description="Step size: a number, or a schedule table such as { "
                                                          'schedule = "exponential_decay", ... }.')
    momentum: float = Field(0.0, ge=0, le=1, description="Fraction of the previous update kept in the next (0: plain "
                                                         "SGD).")
    nesterov: bool = Field(False, description="Nesterov momentum: the gradient step looks ahead along the velocity.")


@registry.optimizers.register("sgd", spec=SGDSpec)
class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum."""

    spec: SGDSpec

    def __init__(self, spec: SGDSpec, params: dict[str, Tensor]) -> None:
        # a one_cycle schedule's momentum needs the slot even when the spec's own momentum is 0 (as in PyTorch)
        self.slot_names = ("momentum",) if spec.momentum > 0 or cycles_momentum(spec.learning_rate) else ()
        super().__init__(spec, params)

    def _update(self, kernels: ModuleType, w: np.ndarray, g: np.ndarray, rows: np.ndarray,
                slots: dict[str, np.ndarray], lr: float, scale: float, clip_value: float) -> None:
        if "momentum" in slots:
            kernels.sgd_momentum_update(w, g, rows, zero_row(w, g, rows, self._every_row), slots["momentum"], lr,
                                        self._momentum(self.spec.momentum), self.spec.nesterov, self._every_row,
                                        scale, clip_value)
        else:
            kernels.sgd_update(w, g, rows, lr, scale, clip_value)


class RMSpropSpec(OptimizerSpec):
    """optimizer = { type = "rmsprop", ... }."""

    type: Literal["rmsprop"] = "rmsprop"
    rho: float = Field(0.9, ge=0, lt=1, description="Decay of the moving average of squared gradients.")
    momentum: float = Field(0.0, ge=0, le=1, description="Momentum applied to the scaled update (0: none).")
    epsilon: float = Field(1e-7, ge=0, description="Added to the denominator, for numerical stability.")
    centered: bool = Field(False, description="Divide by an estimate of the gradients' variance (the mean square "
                                              "minus the squared mean) instead of the mean square.")


@registry.optimizers.register("rmsprop", spec=RMSpropSpec)
class RMSprop(Optimizer):
    """Divides the gradient by a running root mean square of recent gradients."""

    spec: RMSpropSpec

    def __init__(self, spec: RMSpropSpec, params: dict[str, Tensor]) -> None:
        # slots a configuration does not use are not kept, so checkpoints hold only real state
        self.slot_names = ("velocity",) + (("average_gradient",) if spec.centered else ()) + (
            ("momentum",) if spec.momentum > 0 or cycles_momentum(spec.learning_rate) else ())
        super().__init__(spec, params)

    def _update(self, kernels: ModuleType, w: np.ndarray, g: np.ndarray, rows: np.ndarray,
                slots: dict[str, np.ndarray], lr: float, scale: float, clip_value: float) -> None:
        s = self.spec
        kernels.rmsprop_update(w, g, rows, zero_row(w, g, rows, self._every_row), slots["velocity"],
                               slots.get("average_gradient"), slots.get("momentum"), lr, s.rho,
                               self._momentum(s.momentum), s.epsilon, self._every_row, scale, clip_value)


class AdagradSpec(OptimizerSpec):
    """optimizer = { type = "adagrad", ... }."""

    type: Literal["adagrad"] = "adagrad"
    initial_accumulator_value: float = Field(0.1, ge=0, description="The sum of squared gradients each weight starts "
                                                                    "from.")
    epsilon: float = Field(1e-7, ge=0, description="Added to the denominator, for numerical stability.")


@registry.optimizers.register("adagrad", spec=AdagradSpec)
class Adagrad(Optimizer):
    """Scales each entry's step by the root of its summed squared gradients."""

    spec: AdagradSpec
    slot_names = ("accumulator",)

    def _initial_slot(self, slot: str, value: np.ndarray) -> np.ndarray:
        if slot != "accumulator":
            return super()._initial_slot(slot, value)
        return np.full(value.size, self.spec.initial_accumulator_value, value.dtype)

    def _update(self, kernels: ModuleType, w: np.ndarray, g: np.ndarray, rows: np.ndarray,
                slots: dict[str, np.ndarray], lr: float, scale: float, clip_value: float) -> None:
        kernels.adagrad_update(w, g, rows, slots["accumulator"], lr, self.spec.epsilon, scale, clip_value)


class AdamSpec(OptimizerSpec):
    """optimizer = { type = "adam", ... }."""

    type: Literal["adam"] = "adam"
    beta_1: float = Field(0.9, ge=0, lt=1, description="Decay of the moving average of gradients (the first moment).")
    beta_2: float = Field(0.999, ge=0, lt=1, description="Decay of the moving average of squared gradients (the "
                                                         "second moment).")
    epsilon: float = Field(1e-7, ge=0, description="Added to the denominator, for numerical stability.")
    amsgrad: bool = Field(False, description="Divide by the largest second moment seen so far (AMSGrad).")


@registry.optimizers.register("adam", spec=AdamSpec)
class Adam(Optimizer):
    """Adaptive moment estimation: bias-corrected running means of the gradient and its square."""

    spec: AdamSpec

    def __init__(self, spec: AdamSpec, params: dict[str, Tensor]) -> None:
        self.slot_names = ("momentum", "velocity", "velocity_hat") if spec.amsgrad else ("momentum", "velocity")
        super().__init__(spec, params)

    def _update(self, kernels: ModuleType, w: np.ndarray, g: np.ndarray, rows: np.ndarray,
                slots: dict[str, np.ndarray], lr: float, scale: float, clip_value: float) -> None:
        s, t = self.spec, self.iterations + 1
        beta_1 = self._momentum(s.beta_1)  # a cycled beta_1 enters the bias correction too, as in PyTorch's Adam
        alpha = lr * math.sqrt(1 - s.beta_2**t) / (1 - beta_1**t)
        kernels.adam_update(w, g, rows, zero_row(w, g, rows, self._every_row), slots["momentum"], slots["velocity"],
                            slots.get("velocity_hat"), alpha, beta_1, s.beta_2, s.epsilon, self._every_row, scale,
                            clip_value)


class AdamWSpec(AdamSpec):
    """optimizer = { type = "adamw", ... }."""

    type: Literal["adamw"] = "adamw"  # type: ignore[assignment]
    weight_decay: float | None = Field(0.004, ge=0, description="Decoupled weight decay: each weight is multiplied by "
                                                               "1 - weight_decay * learning_rate before each update "
                                                               "(Keras' AdamW default 0.004).")


@registry.optimizers.register("adamw", spec=AdamWSpec)
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), Keras' AdamW: weight_decay 0.004 by default."""

    spec: AdamWSpec


def create_optimizer(config: str | dict | OptimizerSpec, params: dict[str, Tensor]) -> Optimizer:
    """An optimizer over `params` from a name, a table with `type`, or a validated spec."""
    if isinstance(config, str):
        config = {"type": config}
    if isinstance(config, dict):
        config = registry.optimizers.entry(config["type"]).spec.model_validate(config)
    return registry.optimizers.get(config.type)(config, params)
