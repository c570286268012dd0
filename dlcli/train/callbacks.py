"""Callback hooks the train loop calls; `report` implements them for output, this package for checkpoints."""

from __future__ import annotations

from typing import Any


class Callback:
    """Receives training events. Every hook is optional; `logs` maps metric names to floats.

    Event payloads (all plain JSON-able values):
      on_train_begin(info): run name, run_dir, epochs, steps_per_epoch, batch_size, samples, seed,
          parameter counts, resumed_from (or None)
      on_epoch_begin(epoch, steps): epoch counts from 1; steps is the number of batches in it
      on_batch_end(epoch, step, logs): step counts from 1 within the epoch; logs hold running means
          so far in the epoch ("loss", metric names)
      on_epoch_end(epoch, logs): the epoch's training and validation values ("loss", "accuracy",
          "val_loss", "val_accuracy", ...), plus "seconds" and "learning_rate"
      on_checkpoint(path, kind): a checkpoint file was written; kind is "last", "best" or "periodic"
      on_train_end(summary): final values, "epochs_run", "seconds", "stopped_early" and "run_dir"
    """

    def on_train_begin(self, info: dict[str, Any]) -> None:
        """Training is about to start."""

    def on_epoch_begin(self, epoch: int, steps: int) -> None:
        """An epoch is about to start."""

    def on_batch_end(self, epoch: int, step: int, logs: dict[str, float]) -> None:
        """A training step finished."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        """An epoch finished, validation included."""

    def on_checkpoint(self, path: str, kind: str) -> None:
        """A checkpoint was written."""

    def on_train_end(self, summary: dict[str, Any]) -> None:
        """Training finished (normally or stopped early)."""
