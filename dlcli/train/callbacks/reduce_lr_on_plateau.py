"""reduce_lr_on_plateau: lower the learning rate when a watched value stalls, as Keras 3's ReduceLROnPlateau does."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from dlcli import registry
from dlcli.train.callbacks.base import Callback, Run
from dlcli.train.callbacks.monitor import Monitor, MonitoredSpec, float_from_state, float_state


class ReduceLROnPlateauSpec(MonitoredSpec):
    """[[train.callbacks]] type = "reduce_lr_on_plateau" (Keras 3's keys and defaults)."""

    type: Literal["reduce_lr_on_plateau"] = "reduce_lr_on_plateau"
    factor: float = Field(0.1, gt=0, lt=1, description="The learning rate is multiplied by this when it is lowered.")
    patience: int = Field(10, ge=0, description="Epochs without improvement after which the rate is lowered.")
    min_delta: float = Field(1e-4, description="The least change that counts as an improvement (its sign is "
                                               "ignored, as in Keras).")
    cooldown: int = Field(0, ge=0, description="Epochs to wait after lowering the rate before counting again; as "
                                               "in Keras the last of them already counts (2 skips one epoch).")
    min_lr: float = Field(0.0, ge=0, description="The rate is never lowered below this.")


@registry.callbacks.register("reduce_lr_on_plateau", spec=ReduceLROnPlateauSpec)
class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when a monitored value stalls (Keras ReduceLROnPlateau)."""

    def __init__(self, spec: ReduceLROnPlateauSpec) -> None:
        self.spec = spec
        self.monitor = Monitor(spec.monitor, "min", spec.min_delta)  # the mode is settled when training begins
        self.wait = 0
        self.cooldown = 0  # epochs of cooldown left
        self.best: float | None = None

    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        """Settle "auto" mode from what the monitored value measures. A resume of a run that had ended by a stop
        (train.epochs raised) starts the patience and cooldown counts again, as Keras' on_train_begin does in a
        new fit(), and as early stopping's does; the best value stays. Any other resume continues the counts."""
        mode = self.spec.mode
        self.monitor.mode = run.direction(self.spec.monitor) if mode == "auto" else mode
        if info.get("resumed_after_stop"):
            self.wait = self.cooldown = 0

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        """Count the epoch and lower the rate when patience has run out (Keras' order: cooldown first)."""
        current = logs[self.spec.monitor]
        if self.cooldown > 0:
            self.cooldown -= 1
            self.wait = 0
        if self.monitor.is_improvement(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown == 0:  # tested after the count-down: the last cooldown epoch already counts
            self.wait += 1
            if self.wait >= self.spec.patience and self._lower(run):
                self.cooldown, self.wait = self.spec.cooldown, 0

    def _lower(self, run: Run) -> bool:
        """Multiply the rate by factor, not below min_lr; False when it is at min_lr already. Keras holds the rate
        in float32 and compares it so."""
        current = run.learning_rate
        if not np.float32(current) > np.float32(self.spec.min_lr):
            return False
        lowered = max(current * self.spec.factor, self.spec.min_lr)
        run.lr_scale *= lowered / current  # a scale, so a schedule keeps its shape under the lowered rate
        return True

    def state(self) -> dict[str, Any]:
        """The patience count, the cooldown left and the best value, so a resumed run lowers the rate on time."""
        return {"wait": self.wait, "cooldown": self.cooldown, "best": float_state(self.best)}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from state(); a checkpoint from before the callbacks' own files kept {"watch": {...}}."""
        counts = state.get("watch", state)
        self.wait, self.best = int(counts.get("wait", 0)), float_from_state(counts.get("best"))
        self.cooldown = int(state.get("cooldown", 0))
