"""Watching one logged value: Keras' improvement test (mode, min_delta), and the tracker of the run's best epoch."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from dlcli.train.callbacks.base import CallbackSpec, Mode

_MAXIMIZED = ("acc", "auc", "precision", "recall")


class MonitoredSpec(CallbackSpec):
    """Keys of a callback that watches one logged value."""

    monitor: str = Field("val_loss", description="The logged value to watch: loss, val_loss, val_accuracy, ...")
    mode: Mode = Field("auto", description='"min": lower is better; "max": higher is better; "auto": higher for '
                                           'accuracies, AUC, precision and recall, lower for the rest.')


def monitor_mode(monitor: str, mode: str) -> Literal["min", "max"]:
    """'min' or 'max': as given, or guessed from the name (accuracies, AUC, precision and recall go up)."""
    if mode in ("min", "max"):
        return mode  # type: ignore[return-value]
    return "max" if any(part in monitor for part in _MAXIMIZED) else "min"


class Monitor:
    """Keras' test of improvement (MonitorCallback): better than a reference by more than min_delta."""

    def __init__(self, name: str, mode: Literal["min", "max"], min_delta: float = 0.0) -> None:
        self.name, self.mode = name, mode
        self.min_delta = abs(min_delta)  # Keras takes the size of min_delta and ignores its sign

    def is_improvement(self, value: float, reference: float | None) -> bool:
        """Whether `value` improves on `reference`; anything improves on no reference (the first value watched,
        even NaN, is the best so far). Compared in float32, as Keras' ops compare logged values."""
        if reference is None:
            return True
        if self.mode == "min":
            return bool(np.float32(value + self.min_delta) < np.float32(reference))
        return bool(np.float32(value - self.min_delta) > np.float32(reference))


def float_state(value: float | None) -> float | str | None:
    """A float for checkpoint metadata, whose JSON has no NaN or infinity: those are kept as "nan", "inf", "-inf"."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


def float_from_state(value: Any) -> float | None:
    """The float float_state() kept."""
    return None if value is None else float(value)


class Watch:
    """The run's best epoch by train.monitor (checkpoints/best): the best finite value so far and its epoch."""

    def __init__(self, monitor: str, mode: Literal["min", "max"]) -> None:
        self.monitor, self.mode = monitor, mode
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = 0
        self.wait = 0  # epochs since the best one

    def update(self, epoch: int, logs: dict[str, float]) -> bool:
        """Record an epoch; True when its value is finite and better than the best so far."""
        value = logs[self.monitor]
        better = value < self.best if self.mode == "min" else value > self.best
        if better and math.isfinite(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True
        self.wait += 1
        return False

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of it (and what summary.json's "best" says)."""
        return {"monitor": self.monitor, "best": self.best if math.isfinite(self.best) else None,
                "best_epoch": self.best_epoch, "wait": self.wait}

    def load(self, state: dict[str, Any]) -> None:
        """Continue from `state()`; the state of another monitored value (a resume changed train.monitor, or lost
        the validation data the default val_loss needs) is not this one's best: the best starts afresh."""
        if state.get("monitor", self.monitor) != self.monitor:
            return
        if state.get("best") is not None:
            self.best = float(state["best"])
        self.best_epoch, self.wait = int(state.get("best_epoch", 0)), int(state.get("wait", 0))
