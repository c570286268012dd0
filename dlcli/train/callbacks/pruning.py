"""The pruning callback of `dlcli tune`: each epoch's value of the tuned metric goes to the trial, and a trial
its pruner gives up on stops cleanly, its run directory marked pruned (summary.json's stop_reason)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

from dlcli.train.callbacks.base import Callback, Run


class ReportingTrial(Protocol):
    """What the callback needs of an Optuna trial (dlcli's callbacks do not import Optuna)."""

    def report(self, value: float, step: int) -> None:
        """Record the value after `step` (the epoch)."""

    def should_prune(self) -> bool:
        """Whether the pruner gives this trial up, from the values reported so far."""


class PruneTrial(Callback):
    """Reports the metric after every epoch and stops the run with the reason "pruned" when the pruner says so.

    Not a spec callback (it needs the trial): `dlcli tune` adds it to every trial's run. The last epoch is
    reported but never pruned: stopping then saves nothing, and a complete trial tells the sampler more.
    `on_epoch` (epoch, value) hears every epoch's value, for the live table.
    """

    def __init__(self, trial: ReportingTrial, metric: str, epochs: int,
                 on_epoch: Callable[[int, float | None], None] | None = None) -> None:
        self.trial, self.metric, self.epochs, self.on_epoch = trial, metric, epochs, on_epoch
        self.pruned_at: int | None = None

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        """Report the epoch's value; stop the run if the trial is pruned."""
        value = logs.get(self.metric)
        finite = value is not None and math.isfinite(value)
        if self.on_epoch is not None:
            self.on_epoch(epoch, float(value) if finite else None)
        if not finite:
            return  # a NaN cannot be compared with other trials: the trial's value decides at the end
        self.trial.report(float(value), epoch)
        if epoch < self.epochs and self.trial.should_prune():
            self.pruned_at = epoch
            run.stop("pruned")
