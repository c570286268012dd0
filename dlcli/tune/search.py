"""`dlcli tune`: the search as one process runs it. `prepare` checks everything that can be checked before the
first trial (the spec, the space's keys, the metric); `run_search` opens the study and runs trials until the
study holds as many as asked for, the timeout passes, or a signal stops it; `finish_search` writes best.toml
and the summary."""

from __future__ import annotations

import copy
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.errors import RunInterruptedError, SpecError
from dlcli.graph import build_model
from dlcli.spec.load import apply_overrides, read_toml, validate_spec
from dlcli.spec.models import RunSpec
from dlcli.spec.search_space import TuneSpec
from dlcli.train.callbacks.monitor import monitor_mode
from dlcli.train.interrupts import EXIT_CODES, StopSignals
from dlcli.train.loop import Objective
from dlcli.train.monitored import log_directions, reported_names, unknown_monitor_error
from dlcli.tune.best import write_best_toml
from dlcli.tune.claims import Job, Worker, next_turn
from dlcli.tune.events import TuneObserver
from dlcli.tune.space import SearchSpace
from dlcli.tune.study import (
    SearchRecord, StudyPlace, finished_counts, grid_points, make_pruner, open_storage, open_study, trial_row,
)
from dlcli.tune.trial import TrialContext, run_trial


@dataclass
class TuneOptions:
    """The command line's choices; None where the spec's [tune] table (or its default) decides."""

    spec_path: Path
    overrides: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    metric: str | None = None
    direction: str | None = None
    trials: int | None = None
    timeout: float | None = None
    sampler: str | None = None
    pruner: str | None = None
    storage: str | None = None
    study_name: str | None = None
    study_dir: Path | None = None
    resume_trials: bool = False


@dataclass
class Search:
    """A search ready to run: its spec, space, objective, budget and study."""

    options: TuneOptions
    spec: RunSpec
    space: SearchSpace
    record: SearchRecord
    place: StudyPlace
    trials: int
    timeout: float | None
    sampler: str
    pruner: str
    notes: list[str] = field(default_factory=list)

    @property
    def maximize(self) -> bool:
        """Whether a higher metric is better."""
        return self.record.direction == "maximize"


def prepare(options: TuneOptions) -> Search:
    """Everything checked before a study is touched: SpecError for a spec, key, metric or option that is wrong."""
    document = apply_overrides(read_toml(options.spec_path), list(options.overrides))
    spec = validate_spec(copy.deepcopy(document), options.spec_path)
    table = spec.tune or TuneSpec()
    space = SearchSpace.from_options(table.params, options.params, options.spec_path.name)
    base = {key: value for key, value in document.items() if key != "tune"}  # trials train without [tune]
    space.check_keys(base)
    metric, direction = _objective(spec, options.metric or table.metric, options.direction or table.direction)
    sampler, pruner = options.sampler or table.sampler, options.pruner or table.pruner
    trials, notes = options.trials or table.trials, []
    if sampler == "grid":
        size = len(grid_points(space, spec.seed))
        if trials > size:
            notes.append(f"the grid has {size} points: the study ends after {size} trials, not {trials}")
            trials = size
    place = StudyPlace.of(options.study_dir or Path("runs") / f"{spec.name}-tune", options.study_name or spec.name,
                          options.storage)
    record = SearchRecord(base, str(options.spec_path.resolve()), space.expressions(), metric,
                          "maximize" if direction == "max" else "minimize")
    return Search(options, spec, space, record, place, trials, options.timeout or table.timeout, sampler, pruner,
                  notes)


def _objective(spec: RunSpec, metric: str | None, direction: str) -> tuple[str, str]:
    """The metric (train.monitor by default) and whether it goes up or down; the metric must be one the run
    logs, checked on the spec's own model before any trial."""
    model = build_model(spec.model, np.random.default_rng(0), spec)
    objective = Objective(model)
    validation = spec.data.validation is not None or spec.data.validation_split > 0
    names = reported_names(objective, validation)
    if metric is None:
        metric = spec.train.monitor if spec.train.monitor in names else "loss"
    if metric not in names:
        raise unknown_monitor_error("--metric", metric, names)
    if direction == "auto":
        direction = log_directions(model, objective).get(metric) or monitor_mode(metric, "auto")
    return metric, direction


def run_search(search: Search, observer: TuneObserver, announce: bool = True) -> dict[str, Any] | None:
    """Run trials until the study holds `search.trials` of them (or the timeout, or a signal); then, when
    `announce` (not a worker of a parallel search), best.toml and the summary, which is returned."""
    started = time.monotonic()
    storage, study = open_search(search)
    if announce:
        observer.on_study_begin(study_info(search, study))
    context = TrialContext(study, storage, search.place, search.space, search.record.document,
                           search.options.spec_path, search.record.metric, search.maximize, observer)
    with Worker(search.place) as worker, StopSignals() as signals:
        while search.timeout is None or time.monotonic() - started < search.timeout:
            if signals.requested:
                raise _interrupted(signals.requested, search, "between trials")
            turn = next_turn(study, storage, search.place, worker, search.space, search.trials, search.sampler,
                             search.spec.seed, search.options.resume_trials)
            for frozen in turn.settled:
                observer.on_trial_end(trial_row(frozen, search.space, search.place))
            if turn.job is None:
                break
            try:
                run_trial(context, turn.job)
            except RunInterruptedError as err:
                raise _interrupted(err.exit_code - 128, search, f"during trial {turn.job.trial.number}",
                                   turn.job) from None
    return finish_search(search, study, time.monotonic() - started, observer) if announce else None


def open_search(search: Search) -> tuple[Any, Any]:
    """The search's storage and study (created, or continued), with its pruner; a grid's points queued."""
    storage = open_storage(search.place)
    grid = grid_points(search.space, search.spec.seed) if search.sampler == "grid" else None
    study = open_study(search.place, search.record, storage, search.space.spec_values(search.spec.model_dump()),
                       grid, search.trials)
    study.pruner = make_pruner(search.pruner, search.spec.train.epochs)
    return storage, study


def _interrupted(signum: int, search: Search, when: str, job: Job | None = None) -> RunInterruptedError:
    """The error a signal ends the search with: where it stopped, and how to continue."""
    name = signal.Signals(signum).name
    again = f"dlcli tune {search.options.spec_path} with the same options"
    if job is None:
        text = f"stopped by {name} {when}; continue the study with {again}"
    else:
        number = job.trial.number
        text = (f"stopped by {name} {when}, after its checkpoint in {job.run_dir}; "
                f"continue the study with {again} (trial {number} is then recorded as failed), or add "
                f"--resume-trials to finish trial {number} from its checkpoint")
    return RunInterruptedError(text, exit_code=EXIT_CODES.get(signum, 130))


def study_info(search: Search, study: Any) -> dict[str, Any]:
    """on_study_begin's payload: the search, and the trials the study already holds."""
    return {"study": search.place.name, "study_dir": str(search.place.directory),
            "storage": search.place.storage_url, "metric": search.record.metric,
            "direction": "max" if search.maximize else "min", "sampler": search.sampler, "pruner": search.pruner,
            "trials": search.trials, "params": search.space.expressions(),
            "rows": [trial_row(t, search.space, search.place) for t in study.get_trials(deepcopy=False)
                     if t.state.name != "WAITING"], "notes": search.notes}


def finish_search(search: Search, study: Any, seconds: float, observer: TuneObserver) -> dict[str, Any]:
    """best.toml and the summary (on_study_end); SpecError when no trial completed, so there is no best."""
    counts = finished_counts(study)
    summary: dict[str, Any] = {"study": search.place.name, "study_dir": str(search.place.directory),
                               "trials": sum(counts.values()), **counts, "seconds": seconds, "best": None,
                               "best_toml": None}
    if counts["complete"]:
        best = study.best_trial
        path = search.place.directory / "best.toml"
        write_best_toml(path, search.record, search.space, best, search.place.name, sum(counts.values()))
        summary.update(best={"number": best.number, "value": best.value,
                             "params": search.space.values(dict(best.params))}, best_toml=str(path))
    observer.on_study_end(summary)
    if not counts["complete"]:
        failures = [t.user_attrs.get("reason") for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL"]
        first = f"; the first failure: {failures[0]}" if failures and failures[0] else ""
        raise SpecError(f"no trial of study {search.place.name!r} completed ({counts['pruned']} pruned, "
                        f"{counts['fail']} failed), so there is no best value and no best.toml{first}")
    return summary
