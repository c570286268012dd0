"""A run directory as its readers see it: manifest, resolved spec, history and summary, read without the lock.

`dlcli runs`, `compare`, `plot`, `log` and `reproduce` read runs through RunRecord. A run written before
run.json existed still reads: its status comes from summary.json, its times from its files.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcli.errors import CheckpointError
from dlcli.output_text import numbers_from_json
from dlcli.train.callbacks.monitor import monitor_mode
from dlcli.train.manifest import observed_status, parse_time
from dlcli.train.rundir import CHECKPOINTS, MANIFEST

# the history's bookkeeping columns, not metrics
NOT_METRICS = ("epoch", "seconds", "learning_rate")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot be read ({err}); the run directory is damaged") from None


def is_run_directory(path: Path) -> bool:
    """Whether `path` holds a run (its manifest, resolved spec or checkpoints)."""
    return path.is_dir() and any((path / name).exists() for name in (MANIFEST, "spec.json", CHECKPOINTS))


@dataclass
class Best:
    """The run's best epoch by its monitored value."""

    monitor: str
    value: float | None
    epoch: int
    mode: str  # "min" or "max": which way is better


@dataclass
class RunRecord:
    """What a run directory holds, read once."""

    path: Path
    manifest: dict[str, Any]
    spec: dict[str, Any]
    summary: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        """Read a run directory; CheckpointError (exit 4) for a folder that holds no run."""
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"{path}: no such run directory")
        if not is_run_directory(path):
            raise CheckpointError(f"{path}: not a run directory (it has no run.json, spec.json or checkpoints/); "
                                  "give a folder that dlcli train wrote, e.g. runs/<name>")
        history = []
        try:
            lines = (path / "history.jsonl").read_text().splitlines()
        except FileNotFoundError:
            lines = []
        except OSError as err:
            raise CheckpointError(f"{path / 'history.jsonl'}: cannot be read ({err})") from None
        for number, line in enumerate(lines, start=1):
            try:
                history.append(numbers_from_json(json.loads(line)))
            except ValueError:
                raise CheckpointError(f"{path / 'history.jsonl'}, line {number}: not JSON; the run directory is "
                                      "damaged") from None
        summary = _json(path / "summary.json")
        if isinstance(summary, dict):  # its metric values, not its names: a run may be called "NaN"
            summary.update({key: numbers_from_json(summary[key]) for key in ("final", "best") if key in summary})
        return cls(path, _json(path / MANIFEST) or {}, _json(path / "spec.json") or {}, summary, history)

    @property
    def name(self) -> str:
        """The run directory's name (runs/<name>)."""
        return self.path.name

    @property
    def status(self) -> str:
        """running, finished, interrupted, diverged, failed, or killed (run.json says running, but no process
        holds the run's lock); a run from before run.json: finished when it has a summary, else unknown."""
        if self.manifest.get("status"):
            return observed_status(self.path, self.manifest)
        return "finished" if self.summary is not None else "unknown"

    @property
    def epochs(self) -> tuple[int, int | None]:
        """(epochs finished, epochs the spec asks for)."""
        total = self.spec.get("train", {}).get("epochs")
        return len(self.history), int(total) if total is not None else None

    @property
    def started(self) -> datetime.datetime | None:
        """When the run's first process started."""
        return parse_time(self.manifest.get("started") or self.manifest.get("created"))

    def wall_seconds(self) -> float | None:
        """Seconds its processes ran, over every session (a live one up to now, a killed one up to its last
        epoch); without sessions, the epochs' own seconds."""
        total, counted = 0.0, False
        live = self.status == "running"
        progress = (self.manifest.get("progress") or {}).get("updated")
        sessions = self.manifest.get("sessions") or []
        for index, each in enumerate(sessions):
            start = parse_time(each.get("started"))
            last = index == len(sessions) - 1
            end = parse_time(each.get("ended")) or (datetime.datetime.now().astimezone() if last and live else
                                                    parse_time(progress) if last else None)
            if start is not None and end is not None:
                total, counted = total + max(0.0, (end - start).total_seconds()), True
        if counted:
            return total
        seconds = [row.get("seconds") for row in self.history if isinstance(row.get("seconds"), (int, float))]
        return float(sum(seconds)) if seconds else None

    def best(self) -> Best | None:
        """The best epoch by train.monitor: as summary.json or run.json recorded it, else from the history."""
        train = self.spec.get("train", {})
        recorded = (self.summary or {}).get("best") or (self.manifest.get("progress") or {}).get("best")
        monitor = (recorded or {}).get("monitor") or train.get("monitor", "val_loss")
        if monitor not in self.metric_columns() and monitor == "val_loss" and "loss" in self.metric_columns():
            monitor = "loss"  # no validation data: the run followed the training loss
        configured = train.get("monitor_mode", "auto")
        mode = configured if configured in ("min", "max") else monitor_mode(monitor, "auto")
        if recorded and recorded.get("best_epoch"):
            value = recorded.get("best")
            return Best(monitor, None if value is None else float(value), int(recorded["best_epoch"]), mode)
        values = [(row[monitor], row["epoch"]) for row in self.history
                  if isinstance(row.get(monitor), (int, float)) and math.isfinite(row[monitor])]
        if not values:
            return None
        value, epoch = (min if mode == "min" else max)(values, key=lambda pair: pair[0])
        return Best(monitor, float(value), int(epoch), mode)

    def final(self) -> dict[str, float]:
        """The last epoch's values (training and validation metrics)."""
        if not self.history:
            return {}
        return {k: v for k, v in self.history[-1].items() if k not in NOT_METRICS}

    def metric_columns(self) -> list[str]:
        """The history's value columns in order: loss, metrics, val_ ones."""
        return [k for k in dict.fromkeys(key for row in self.history for key in row) if k not in NOT_METRICS]

    def series(self, column: str) -> list[tuple[int, float]]:
        """(epoch, value) of one history column, non-finite values left out."""
        return [(int(row["epoch"]), float(row[column])) for row in self.history
                if isinstance(row.get(column), (int, float)) and math.isfinite(row[column])]
