"""The Callback protocol: the hooks the train loop calls, and the run handle every hook receives.

A callback watches and acts through the run handle (`Run`): it can stop training with a reason, read and scale
the learning rate, read and set the model's weights, and write or remove checkpoints in the run directory.
The callbacks a spec names (`[[train.callbacks]]`) are registered in `registry.callbacks` with their spec;
reporters (report/) and the tests' fault injection are callbacks too. The train loop knows none by name.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np

from dlcli.registry import StrictSpec

Mode = Literal["auto", "min", "max"]


class CallbackSpec(StrictSpec):
    """Keys every callback takes."""

    type: str


class Run(Protocol):
    """The run as its callbacks see it: what they may read, and what they may do to it.

    Under MPI every rank calls its callbacks with the same logs (rank 0's, agreed before the hooks run), so
    callbacks that decide from logs decide alike on every rank; only rank 0 writes files, and reporters print
    and loggers (train.loggers) log only there.
    """

    @property
    def info(self) -> dict[str, Any]:
        """What on_train_begin received: run name, run_dir, epochs, steps_per_epoch, samples, parameters, ..."""

    @property
    def run_id(self) -> str | None:
        """The run's identity (run.json's run_id), the same in every session of a resumed run."""

    @property
    def history(self) -> list[dict[str, Any]]:
        """The finished epochs' values, as history.jsonl holds them: a resumed run's restored epochs first."""

    def spec_keys(self) -> dict[str, Any]:
        """The resolved spec as key paths, as `--set` and `dlcli compare` write them ("train.epochs": 10,
        "model.layers[1].units": 64, ...)."""

    @property
    def epoch(self) -> int:
        """The epoch in progress, counted from 1."""

    @property
    def step(self) -> int:
        """Optimizer updates applied since the run began (a resumed run counts on from its checkpoint)."""

    @property
    def rank(self) -> int:
        """This process's rank: 0 in a single-process run, and the rank that writes files under MPI."""

    @property
    def stop_reason(self) -> str | None:
        """Why training is stopping, once a callback has asked it to (None until then)."""

    def stop(self, reason: str) -> None:
        """Stop training cleanly, marked with `reason` (summary.json's stop_reason, e.g. "early_stopping").

        From on_epoch_end: after this epoch's checkpoints. From on_batch_end: the epoch ends after this step,
        as in Keras (validation, history and checkpoints as for a full epoch), and training ends with it.
        """

    @property
    def learning_rate(self) -> float:
        """The learning rate the next update uses (the spec's rate or schedule times lr_scale)."""

    @property
    def lr_scale(self) -> float:
        """The factor on the spec's learning rate or schedule; saved in checkpoints with the optimizer."""

    @lr_scale.setter
    def lr_scale(self, value: float) -> None: ...

    def weights(self) -> dict[str, np.ndarray]:
        """The model's arrays by checkpoint name ("param/<layer>/<weight>", "state/<layer>/<array>"): the live
        arrays, not copies, so copy what must be kept."""

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Copy arrays (all or some, named as weights() names them) into the model."""

    def direction(self, name: str) -> Literal["min", "max"]:
        """Whether the logged value `name` gets better going down (losses, errors) or up (accuracies, AUC,
        precision, recall): Keras' "auto" mode, from the metric's type even when it has its own name."""

    def save_checkpoint(self, name: str, kind: str = "periodic") -> None:
        """Write checkpoints/<name> (from on_epoch_end only): it is written after the epoch's best and last and
        the history, so it holds every callback's decision for the epoch; on_checkpoint then reports `kind`."""

    def checkpoint_names(self) -> list[str]:
        """The checkpoints in the run directory, by name (sorted; rank 0 sees them, other ranks none)."""

    def remove_checkpoint(self, name: str) -> None:
        """Delete checkpoints/<name> (rank 0 does; best, last and previous belong to the run and cannot be)."""


class Callback:
    """Receives the run's events and may act on the run through the handle each hook gets; every hook is optional.

    Events, in order (plain JSON-able payloads):
      on_train_begin(run, info): run name, run_dir, epochs, steps_per_epoch, batch_size, samples, seed,
          parameter counts, resumed_from (or None); a resumed run calls it too, after load_state, with
          resumed_after_stop (the stop reason, "early_stopping") when the run it continues had stopped early
      on_epoch_begin(run, epoch, steps): epoch counts from 1; steps is the number of batches in it
      on_batch_begin(run, epoch, step) and on_batch_end(run, epoch, step, logs): step counts from 1 within the
          epoch; logs hold running means so far in the epoch ("loss", metric names)
      on_epoch_end(run, epoch, logs): the epoch's training and validation values ("loss", "accuracy",
          "val_loss", "val_accuracy", ...), plus "seconds" and "learning_rate" (the optimizer's rate at the
          epoch's end, as Keras logs it: with a schedule, the next update's). Every callback decides here before
          the epoch's checkpoints are written, so `last` holds the rate, the stop and the counts they chose
      on_checkpoint(run, path, kind): a checkpoint file was written; kind is "last", "best" or "periodic"
      on_train_end(run, summary): final values, "epochs_run", "seconds", "stopped_early" (and "stop_reason")
          and "run_dir". The spec's callbacks get it first and may add keys (early stopping's "restored_epoch");
          summary.json is written then, and the other callbacks (loggers, reporters) get it after. Not called
          when training fails: then
      on_train_abort(run, status): training stopped without finishing; status is "interrupted" (a signal; a
          checkpoint was written), "diverged" or "failed", as run.json says. Loggers close their files and mark
          the tracker's run; an OSError or dlcli error raised here is dropped (the run's own error goes on), and
          the other callbacks still hear it

    A stateful callback returns its counts from state() and takes them back in load_state(), so a resumed run
    decides exactly as the uninterrupted one: JSON-able values, plus NumPy arrays under "arrays" (kept as
    checkpoint tensors). Only the spec's callbacks are saved, by their index in train.callbacks.
    """

    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        """Training is about to start."""

    def on_epoch_begin(self, run: Run, epoch: int, steps: int) -> None:
        """An epoch is about to start."""

    def on_batch_begin(self, run: Run, epoch: int, step: int) -> None:
        """A training step is about to start."""

    def on_batch_end(self, run: Run, epoch: int, step: int, logs: dict[str, float]) -> None:
        """A training step finished."""

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        """An epoch finished, validation included."""

    def on_checkpoint(self, run: Run, path: str, kind: str) -> None:
        """A checkpoint was written."""

    def on_train_end(self, run: Run, summary: dict[str, Any]) -> None:
        """Training finished (normally or stopped early)."""

    def on_train_abort(self, run: Run, status: str) -> None:
        """Training stopped without finishing: "interrupted", "diverged" or "failed"."""

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of this callback (nothing, unless it counts something)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from what state() returned."""


def listening(callbacks: list[Callback], hook: str) -> list[Callback]:
    """The callbacks, in order, whose `hook` does something: those that define their own rather than Callback's
    empty one. The train loop calls the per-step hooks on these alone, and builds a step's logs only for them."""
    empty = getattr(Callback, hook)
    return [callback for callback in callbacks if getattr(type(callback), hook, empty) is not empty]
