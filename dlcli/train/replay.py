"""`dlcli log`: a run that has stopped, replayed into loggers it was not trained with.

The loggers see it as a run that resumes with nothing left to train: on_train_begin brings their tracker in
line with the run's history (each logs the epochs it misses, once), then on_train_end (a finished run: files
as artifacts) or on_train_abort (a run that stopped otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np

from dlcli import registry
from dlcli.checkpoint import load_checkpoint
from dlcli.errors import CheckpointError, RunDirectoryTakenError
from dlcli.spec.keys import flatten_keys
from dlcli.train.callbacks import Callback
from dlcli.train.callbacks.monitor import monitor_mode
from dlcli.train.manifest import KILLED
from dlcli.train.run_lock import held_message, lock_holder
from dlcli.train.rundir import checkpoint_path
from dlcli.train.runs import RunRecord


class ReplayedRun:
    """The Run protocol (train/callbacks/base.py) over a run directory: what loggers read; a replay trains
    nothing, so what would act on training raises."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.info = {"run": record.spec.get("name", record.name), "run_dir": str(record.path),
                     "epochs": record.epochs[1], "resumed_from": "replay", "world_size": 1}
        self.run_id: str | None = record.manifest.get("run_id")
        self.history = record.history
        self.epoch = len(record.history)
        self.step = _step(record)
        self.rank = 0
        self.stop_reason: str | None = None

    def spec_keys(self) -> dict[str, Any]:
        """The resolved spec as key paths."""
        return flatten_keys(self.record.spec)

    def direction(self, name: str) -> Literal["min", "max"]:
        """Keras' auto mode for a logged value."""
        return monitor_mode(name, "auto")

    def checkpoint_names(self) -> list[str]:
        """No checkpoint is written or removed in a replay."""
        return []

    def _trains_nothing(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("a replayed run trains nothing: its loggers may read it, not change it")

    stop = set_weights = save_checkpoint = remove_checkpoint = _trains_nothing

    def weights(self) -> dict[str, np.ndarray]:
        """A replay holds no model."""
        return {}

    @property
    def learning_rate(self) -> float:
        """The rate of the last epoch."""
        return float(self.history[-1].get("learning_rate", float("nan"))) if self.history else float("nan")

    @property
    def lr_scale(self) -> float:
        return 1.0


def _step(record: RunRecord) -> int:
    """The optimizer steps the run took: as run.json's progress says, else from checkpoints/last."""
    progress = record.manifest.get("progress") or {}
    if "step" in progress:
        return int(progress["step"])
    last = checkpoint_path(record.path, "last")
    if not last.is_file():
        return 0
    _, metadata = load_checkpoint(last)
    return int(metadata.get("step", 0))


def logger_for(record: RunRecord, name: str) -> Callback:
    """A logger of type `name` with the options the run's spec gave it, else its defaults."""
    entry = registry.loggers.entry(name)  # an unknown name: exit 2 with the known names
    configured = [each for each in record.spec.get("train", {}).get("loggers", [])
                  if isinstance(each, dict) and each.get("type") == entry.name]
    return entry.target(entry.spec.model_validate(configured[0] if configured else {"type": entry.name}))


def replay(path: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """Feed a stopped run to the loggers `names`; returns what was replayed."""
    record = RunRecord.read(path)
    holder = lock_holder(path)
    if holder is not None:
        raise RunDirectoryTakenError(f"{held_message(path)}; log it once it has stopped")
    if not record.history:
        raise CheckpointError(f"{path}: has no finished epoch to log (history.jsonl is empty or missing)")
    loggers = [logger_for(record, name) for name in names]
    run = ReplayedRun(record)
    status = record.status
    for logger in loggers:
        logger.on_train_begin(run, run.info)  # type: ignore[arg-type]
        if status == "finished" and record.summary is not None:
            logger.on_train_end(run, record.summary)  # type: ignore[arg-type]
        else:
            logger.on_train_abort(run, "interrupted" if status == KILLED else status)  # type: ignore[arg-type]
    return {"run_dir": str(path), "loggers": list(names), "epochs": len(record.history), "step": run.step,
            "status": status}
