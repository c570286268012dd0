"""RunHandle: the run as its callbacks see it, and all they can do to it (the Run protocol of train/callbacks)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dlcli.errors import DlcliError
from dlcli.graph import Model
from dlcli.optimizers import Optimizer
from dlcli.spec.keys import flatten_keys
from dlcli.train.callbacks import Callback
from dlcli.train.callbacks.monitor import monitor_mode
from dlcli.train.distributed import World
from dlcli.train.rundir import CHECKPOINTS, SUFFIX, checkpoint_path
from dlcli.train.run_checkpoints import model_arrays

RUN_CHECKPOINTS = ("last", "best", "previous")  # the run's own: no callback writes or removes them


class RunHandle:
    """What every hook receives: the run's counters and the few actions a callback may take.

    The train loop moves `epoch` and `step`, reads `stop_reason` after every step and epoch, and writes the
    checkpoints collected in `requested` after the epoch's own.
    """

    def __init__(self, model: Model, optimizer: Optimizer, world: World, run_dir: Path, info: dict[str, Any],
                 directions: dict[str, Literal["min", "max"]], history: list[dict[str, Any]] | None = None,
                 spec_document: dict[str, Any] | None = None) -> None:
        self.model, self.optimizer, self.world, self.run_dir = model, optimizer, world, run_dir
        self.info = info
        self.directions = directions
        self.history: list[dict[str, Any]] = history if history is not None else []  # the run's own list
        self.spec_document = spec_document or {}
        self.run_id: str | None = None  # set once run.json or the resumed checkpoint names it
        self.epoch = 0  # from 1 once training starts
        self.step = 0  # updates applied, counted over the whole run
        self.stop_reason: str | None = None
        self.requested: list[tuple[str, str]] | None = None  # open while on_epoch_end runs

    def call(self, callbacks: list[Callback], hook: str, *args: Any) -> None:
        """Call one hook of each callback, in order, with this handle."""
        for callback in callbacks:
            getattr(callback, hook)(self, *args)

    def call_after_error(self, callbacks: list[Callback], hook: str, *args: Any) -> None:
        """call(), while an error stops the run: a callback failing now (a file it cannot close, a tracker out of
        reach) must neither hide the error that stopped the run nor keep the next callbacks from hearing it, so
        what our errors and the file system raise is dropped, callback by callback."""
        for callback in callbacks:
            with contextlib.suppress(OSError, DlcliError):
                getattr(callback, hook)(self, *args)

    def spec_keys(self) -> dict[str, Any]:
        """The resolved spec as key paths."""
        return flatten_keys(self.spec_document)

    @property
    def rank(self) -> int:
        """This process's rank (0 writes files)."""
        return self.world.rank

    def stop(self, reason: str) -> None:
        """Stop after this step or epoch (see Run.stop); the first reason given is the one kept."""
        if self.stop_reason is None:
            self.stop_reason = reason

    @property
    def learning_rate(self) -> float:
        """The rate the next update uses."""
        return self.optimizer.learning_rate

    @property
    def lr_scale(self) -> float:
        """The factor on the spec's rate or schedule."""
        return self.optimizer.lr_scale

    @lr_scale.setter
    def lr_scale(self, value: float) -> None:
        self.optimizer.lr_scale = float(value)

    def weights(self) -> dict[str, np.ndarray]:
        """The model's live arrays by checkpoint name."""
        return model_arrays(self.model, None)

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Copy arrays into the model's own, by checkpoint name."""
        live = self.weights()
        for name, value in weights.items():
            live[name][...] = value

    def direction(self, name: str) -> Literal["min", "max"]:
        """Whether the logged value `name` improves going down or up (Keras' auto mode)."""
        return self.directions.get(name) or monitor_mode(name, "auto")

    def save_checkpoint(self, name: str, kind: str = "periodic") -> None:
        """Ask for checkpoints/<name>, written after this epoch's best, last and history."""
        if self.requested is None:
            raise RuntimeError(f"save_checkpoint({name!r}) was called outside on_epoch_end")
        self.requested.append((_callback_checkpoint(name), kind))

    def checkpoint_names(self) -> list[str]:
        """The checkpoints in the run directory (rank 0's view)."""
        folder = self.run_dir / CHECKPOINTS
        if self.world.rank != 0 or not folder.is_dir():
            return []
        return sorted(path.name.removesuffix(SUFFIX) for path in folder.glob(f"*{SUFFIX}")
                      if not path.name.startswith("."))

    def remove_checkpoint(self, name: str) -> None:
        """Delete checkpoints/<name> (rank 0)."""
        if self.world.rank == 0:
            checkpoint_path(self.run_dir, _callback_checkpoint(name)).unlink(missing_ok=True)


def _callback_checkpoint(name: str) -> str:
    """A checkpoint name a callback may write or remove: a plain file name, not one of the run's own."""
    if not name or name in RUN_CHECKPOINTS or name.startswith(".") or "/" in name or os.sep in name:
        raise ValueError(f"{name!r} is not a checkpoint a callback may write or remove (a plain name, not "
                         f"{', '.join(RUN_CHECKPOINTS)})")
    return name
