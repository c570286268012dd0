"""The callbacks a spec can name: early stopping, learning-rate reduction on plateaus, periodic checkpoints."""

from __future__ import annotations

import math
from typing import Any

from dlcli.errors import SpecError
from dlcli.optimizers import Optimizer
from dlcli.spec.callbacks import EarlyStoppingSpec, ModelCheckpointSpec, ReduceLROnPlateauSpec

_MAXIMIZED = ("acc", "auc", "precision", "recall")


def monitor_mode(monitor: str, mode: str) -> str:
    """'min' or 'max': as given, or guessed from the name as Keras does (accuracies and AUC go up)."""
    if mode != "auto":
        return mode
    return "max" if any(part in monitor for part in _MAXIMIZED) else "min"


class Watch:
    """Tracks the best value of one monitored log entry and how many epochs passed without improvement."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0, key: str = "train.monitor") -> None:
        self.monitor, self.key = monitor, key
        self.mode = monitor_mode(monitor, mode)
        self.min_delta = min_delta
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.wait = 0

    def value(self, logs: dict[str, float]) -> float:
        """The monitored value in `logs`; a name the logs do not have is a spec error listing the ones they do."""
        if self.monitor not in logs:
            known = ", ".join(k for k in logs if k not in ("seconds", "learning_rate"))
            raise SpecError(f"{self.key}: {self.monitor!r} is not reported; the run reports {known}")
        return logs[self.monitor]

    def update(self, epoch: int, logs: dict[str, float]) -> bool:
        """Record an epoch; True when it improved on the best by more than min_delta."""
        value = self.value(logs)
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if better and math.isfinite(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True
        self.wait += 1
        return False

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of it."""
        return {"monitor": self.monitor, "best": self.best if math.isfinite(self.best) else None,
                "best_epoch": self.best_epoch, "wait": self.wait}

    def load(self, state: dict[str, Any]) -> None:
        """Continue from `state()`."""
        if state.get("best") is not None:
            self.best = float(state["best"])
        self.best_epoch, self.wait = int(state.get("best_epoch", 0)), int(state.get("wait", 0))


class EarlyStopping:
    """Keras' EarlyStopping: stop after `patience` epochs without improvement; optionally restore the best."""

    def __init__(self, spec: EarlyStoppingSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self.watch = Watch(spec.monitor, spec.mode, spec.min_delta, key=f"train.callbacks[{index}].monitor")
        self.best_weights: dict[str, Any] | None = None

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps, so a resumed run stops when the uninterrupted one would."""
        return {"watch": self.watch.state()}

    def load(self, state: dict[str, Any]) -> None:
        """Continue from `state()`."""
        self.watch.load(state.get("watch", {}))

    def epoch_end(self, epoch: int, logs: dict[str, float], weights: dict[str, Any]) -> bool:
        """Record the epoch; True when training should stop."""
        if self.watch.update(epoch, logs) and self.spec.restore_best_weights:
            self.best_weights = {k: v.copy() for k, v in weights.items()}
        return self.watch.wait > self.spec.patience


class ReduceLROnPlateau:
    """Keras' ReduceLROnPlateau: multiply the learning rate by `factor` after `patience` flat epochs."""

    def __init__(self, spec: ReduceLROnPlateauSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self.watch = Watch(spec.monitor, spec.mode, spec.min_delta, key=f"train.callbacks[{index}].monitor")
        self.cooldown = 0

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps, so a resumed run lowers the rate when the uninterrupted one would."""
        return {"watch": self.watch.state(), "cooldown": self.cooldown}

    def load(self, state: dict[str, Any]) -> None:
        """Continue from `state()`."""
        self.watch.load(state.get("watch", {}))
        self.cooldown = int(state.get("cooldown", 0))

    def epoch_end(self, epoch: int, logs: dict[str, float], optimizer: Optimizer) -> None:
        """Record the epoch and lower the optimizer's rate when the value has stalled."""
        improved = self.watch.update(epoch, logs)
        if self.cooldown > 0:
            self.cooldown -= 1
            self.watch.wait = 0
        if improved or self.watch.wait <= self.spec.patience:
            return
        current = optimizer.learning_rate
        lowered = max(current * self.spec.factor, self.spec.min_lr)
        if current > 0 and lowered < current:
            optimizer.lr_scale *= lowered / current
        self.cooldown, self.watch.wait = self.spec.cooldown, 0


def periodic_epochs(specs: list[Any]) -> list[ModelCheckpointSpec]:
    """The model_checkpoint callbacks among the spec's callbacks."""
    return [s for s in specs if isinstance(s, ModelCheckpointSpec)]
