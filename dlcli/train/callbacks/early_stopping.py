"""early_stopping: stop when a watched value stops improving, as Keras 3's EarlyStopping does."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from dlcli import registry
from dlcli.train.callbacks.base import Callback, Run
from dlcli.train.callbacks.monitor import Monitor, MonitoredSpec, float_from_state, float_state


class EarlyStoppingSpec(MonitoredSpec):
    """[[train.callbacks]] type = "early_stopping"."""

    type: Literal["early_stopping"] = "early_stopping"
    patience: int = Field(0, ge=0, description="Epochs without improvement after which training stops.")
    min_delta: float = Field(0.0, description="The least change that counts as an improvement (its sign is "
                                              "ignored, as in Keras).")
    baseline: float | None = Field(None, description="A value to beat: the patience count restarts only at an "
                                                     "epoch that beats both it and the best so far.")
    restore_best_weights: bool = Field(False, description="When training ends, stopped early or not, give the "
                                                          "model the weights of the best watched epoch (Keras 3).")
    start_from_epoch: int = Field(0, ge=0, description="Epochs to train before watching starts (a warm-up in "
                                                       "which training never stops).")


@registry.callbacks.register("early_stopping", spec=EarlyStoppingSpec)
class EarlyStopping(Callback):
    """Stop when a monitored value has not improved for `patience` epochs (Keras EarlyStopping)."""

    def __init__(self, spec: EarlyStoppingSpec) -> None:
        self.spec = spec
        self.monitor = Monitor(spec.monitor, "min", spec.min_delta)  # the mode is settled when training begins
        self.wait = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.best_weights: dict[str, np.ndarray] | None = None

    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        """Settle "auto" mode from what the monitored value measures. A resume of a run that early stopping ended
        (train.epochs raised, as its note advises) starts the patience count again, as Keras' on_train_begin does
        in a new fit(); the best value so far stays, so the run stops again after `patience` epochs that do not
        beat it. Any other resume continues the count: it decides as the uninterrupted run."""
        mode = self.spec.mode
        self.monitor.mode = run.direction(self.spec.monitor) if mode == "auto" else mode
        if info.get("resumed_after_stop") == "early_stopping":
            self.wait = 0

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        """Count the epoch and stop the run when patience has run out (Keras' order of tests, step by step)."""
        if epoch <= self.spec.start_from_epoch:  # Keras counts epochs from 0: epoch E here is its E - 1
            return
        current = logs[self.spec.monitor]
        if self.spec.restore_best_weights and self.best_weights is None:
            self._keep_weights(run, epoch)  # the first watched epoch is the best one so far
        self.wait += 1
        if self.monitor.is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.spec.restore_best_weights:
                self._keep_weights(run, epoch)
            # patience restarts only at an epoch that beats the baseline as well as the best so far
            if self.spec.baseline is None or self.monitor.is_improvement(current, self.spec.baseline):
                self.wait = 0
            return
        if self.wait >= self.spec.patience and epoch > 1:
            run.stop("early_stopping")

    def on_train_end(self, run: Run, summary: dict[str, Any]) -> None:
        """With restore_best_weights, give the model the best epoch's weights, whether training stopped early or
        ran out of epochs (Keras 3; Keras 2 restored only after an early stop), and say so in the summary."""
        if self.spec.restore_best_weights and self.best_weights is not None:
            run.set_weights(self.best_weights)
            summary["restored_epoch"] = self.best_epoch

    def _keep_weights(self, run: Run, epoch: int) -> None:
        self.best_weights = {name: array.copy() for name, array in run.weights().items()}
        self.best_epoch = epoch

    def state(self) -> dict[str, Any]:
        """The patience count, the best value and epoch, and the best weights when they are to be restored."""
        state: dict[str, Any] = {"wait": self.wait, "best": float_state(self.best), "best_epoch": self.best_epoch}
        if self.best_weights is not None:
            state["arrays"] = self.best_weights
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from state(); a checkpoint from before the callbacks' own files kept {"watch": {...}}."""
        counts = state.get("watch", state)
        self.wait, self.best_epoch = int(counts.get("wait", 0)), int(counts.get("best_epoch", 0))
        self.best = float_from_state(counts.get("best"))
        if state.get("arrays"):
            self.best_weights = dict(state["arrays"])
