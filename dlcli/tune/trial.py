"""One trial: its values written into the spec, validated, trained as an ordinary run in its own run directory
(runs/<name>-tune/trial-<n>/), and its outcome told to the study: complete with its value, pruned, or failed
with the reason. A spec the values make invalid, or a run that diverges, fails the trial and not the study."""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlcli.errors import DivergedError, DlcliError, RunInterruptedError, SpecError
from dlcli.spec.load import validate_spec
from dlcli.train.callbacks.pruning import PruneTrial
from dlcli.train.fit import fit_run
from dlcli.train.resume import resume_run
from dlcli.train.rundir import RunDirectory
from dlcli.tune.claims import Job, heartbeat
from dlcli.tune.events import TuneObserver
from dlcli.tune.space import SearchSpace
from dlcli.tune.study import StudyPlace, require_optuna, trial_row

if TYPE_CHECKING:
    from optuna import Study
    from optuna.storages import RDBStorage


@dataclass
class TrialContext:
    """What every trial of a search shares."""

    study: Study
    storage: RDBStorage
    place: StudyPlace
    space: SearchSpace
    document: dict[str, Any]  # the spec file with its --set overrides, without [tune]
    spec_path: Path  # relative data paths in the document are relative to its folder
    metric: str
    maximize: bool
    observer: TuneObserver


@dataclass
class _Outcome:
    state: str  # "complete", "pruned" or "fail"
    value: float | None = None
    reason: str | None = None
    epochs_run: int = 0


def run_trial(context: TrialContext, job: Job) -> dict[str, Any]:
    """Train the job's trial and tell the study how it ended; returns its row. RunInterruptedError (a signal
    stopped its training after a checkpoint) and data or checkpoint errors leave the study after recording."""
    started = time.perf_counter()
    trial, storage = job.trial, context.storage
    stored = dict(trial.params) if job.resumed else context.space.sample(trial)
    context.observer.on_trial_begin({"number": trial.number, "params": context.space.values(stored),
                                     "resumed": job.resumed, "run_dir": str(job.run_dir)})
    error: DlcliError | None = None
    try:
        with heartbeat(storage, trial._trial_id):
            outcome = _train(context, job, stored)
    except RunInterruptedError as err:
        name = signal.Signals(err.exit_code - 128).name if err.exit_code > 128 else "a signal"
        storage.set_trial_user_attr(trial._trial_id, "interrupted", f"stopped by {name}")
        raise  # the trial stays running in the study until the next search settles or resumes it
    except (SpecError, DivergedError) as err:  # these values make no trainable run: the study goes on
        outcome = _Outcome("fail", reason=str(err))
    except DlcliError as err:  # data or checkpoint trouble no other values would avoid: stop after recording
        outcome, error = _Outcome("fail", reason=str(err)), err
    row = _tell(context, job, outcome, time.perf_counter() - started)
    context.observer.on_trial_end(row)
    if error is not None:
        raise error
    return row


def _train(context: TrialContext, job: Job, stored: dict[str, Any]) -> _Outcome:
    """Validate and train the trial's spec (or continue it), then read its outcome from its history."""
    number = job.trial.number

    def on_epoch(epoch: int, value: float | None) -> None:
        context.observer.on_trial_epoch(number, epoch, epochs, value)

    if job.resumed:
        assert job.directory is not None
        epochs = int(json.loads((job.run_dir / "spec.json").read_text())["train"]["epochs"])
        pruning = PruneTrial(job.trial, context.metric, epochs, on_epoch)
        resume_run(job.run_dir, (), job.directory, [pruning])
    else:
        spec = validate_spec(context.space.apply(context.document, stored), context.spec_path)
        epochs = spec.train.epochs
        pruning = PruneTrial(job.trial, context.metric, epochs, on_epoch)
        fit_run(spec, RunDirectory.fresh(job.run_dir), [pruning])
    return _read_outcome(job.run_dir, context.metric, context.maximize, pruning.pruned_at)


def _read_outcome(run_dir: Path, metric: str, maximize: bool, pruned_at: int | None) -> _Outcome:
    """The trial's value: its best epoch's metric (as KerasTuner scores a trial), from history.jsonl."""
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line.strip()]
    values = [row.get(metric) for row in history]
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    summary_path = run_dir / "summary.json"
    stop_reason = json.loads(summary_path.read_text()).get("stop_reason") if summary_path.is_file() else None
    if pruned_at is not None or stop_reason == "pruned":
        last = finite[-1] if finite else None
        return _Outcome("pruned", last, f"pruned after epoch {pruned_at or len(history)}: {metric} = {last}",
                        len(history))
    if not finite:
        return _Outcome("fail", reason=f"{metric} was never a finite number in its {len(history)} epochs",
                        epochs_run=len(history))
    return _Outcome("complete", max(finite) if maximize else min(finite), epochs_run=len(history))


def _tell(context: TrialContext, job: Job, outcome: _Outcome, seconds: float) -> dict[str, Any]:
    """Record the outcome in the study; the row the table shows."""
    states = require_optuna().trial.TrialState
    trial_id, storage = job.trial._trial_id, context.storage
    storage.set_trial_user_attr(trial_id, "seconds", seconds)
    storage.set_trial_user_attr(trial_id, "epochs_run", outcome.epochs_run)
    if outcome.reason is not None:
        storage.set_trial_user_attr(trial_id, "reason", outcome.reason)
    if outcome.state == "complete":
        frozen = context.study.tell(job.trial, outcome.value)
    else:
        frozen = context.study.tell(job.trial, state=states.PRUNED if outcome.state == "pruned" else states.FAIL)
    return trial_row(frozen, context.space, context.place)
