"""The study on Optuna: its storage (SQLite in the study folder by default; any database URL Optuna accepts, to
share one study between machines), its sampler and pruner, and what it records about the search it belongs to.

A study remembers the spec document, the search space, the metric and its direction (as user attributes), so
that running the same command again continues it, and a different search is refused instead of mixed in.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dlcli.errors import SpecError
from dlcli.tune.space import SearchSpace

if TYPE_CHECKING:
    from optuna import Study
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler
    from optuna.storages import RDBStorage

INSTALL = "pip install 'dlcli[tune]'"
STUDY_DB = "study.db"
WORKERS = "workers"  # the study folder's sub-folder of worker lock files
RECORD = "dlcli"  # the study's user attribute holding what the search is
HEARTBEAT_SECONDS = 30  # a running trial writes a heartbeat this often; another machine fails it after GRACE
GRACE_SECONDS = 120


def require_optuna() -> ModuleType:
    """Optuna, quiet about each trial (dlcli reports them); SpecError naming the extra when it is missing."""
    try:
        import optuna
    except ImportError:
        raise SpecError(f"dlcli tune needs Optuna, which is not installed: {INSTALL}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass(frozen=True)
class StudyPlace:
    """Where a study lives: its folder (trial run directories, best.toml, locks), its storage and its name."""

    directory: Path
    storage_url: str
    name: str

    @classmethod
    def of(cls, directory: Path, name: str, storage_url: str | None = None) -> StudyPlace:
        """The study NAME in `storage_url`, or by default in DIRECTORY/study.db (SQLite)."""
        directory = Path(os.path.abspath(directory))
        return cls(directory, storage_url or f"sqlite:///{directory / STUDY_DB}", name)

    @property
    def default_storage(self) -> bool:
        """Whether the study is the SQLite file in its own folder."""
        return self.storage_url == f"sqlite:///{self.directory / STUDY_DB}"

    def trial_dir(self, number: int) -> Path:
        """Where trial `number` trains when a process of this folder starts it."""
        return self.directory / f"trial-{number}"

    def worker_lock(self, name: str) -> Path:
        """A worker's lock file."""
        return self.directory / WORKERS / name

    def record_path(self, path: Path) -> str:
        """How the study records a path in this folder (a trial's run directory, a worker's lock file). In the
        folder's own study.db relative to the folder, so that a folder moved or copied is a whole study, and a
        copy never reaches back into the original; in a database given by --storage absolute, since the study is
        shared by the folders of several processes and each trial is in the folder of the one that ran it."""
        return path.relative_to(self.directory).as_posix() if self.default_storage else str(path)

    def recorded_path(self, recorded: str, folder: str = "") -> Path:
        """A path record_path recorded (`folder`: the sub-folder of the study folder such paths are in). In the
        folder's own study.db it is always inside this folder: an absolute path there was recorded by dlcli
        before paths were relative, and names the same file of the folder, which may since have moved or been
        copied."""
        path = Path(recorded)
        if self.default_storage:
            return self.directory / folder / path.name
        return path if path.is_absolute() else self.directory / path

    def run_dir_of(self, trial: Any) -> Path | None:
        """The run directory a trial (an Optuna FrozenTrial) recorded, None before one was."""
        recorded = trial.user_attrs.get("run_dir")
        return self.recorded_path(recorded) if recorded else None

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive lock on DIRECTORY/.NAME.lock, waited for: one process at a time on this machine (and
        on others sharing the folder) creates the study, or counts its trials and starts the next."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


@dataclass(frozen=True)
class SearchRecord:
    """What a study is a search of: kept with it, compared when the command runs again."""

    document: dict[str, Any]  # the spec file with its --set overrides, as TOML read it
    spec_path: str
    space: dict[str, str]  # key -> distribution, as written
    metric: str
    direction: str  # "maximize" or "minimize", as Optuna says

    def as_attribute(self) -> dict[str, Any]:
        """The user attribute a study keeps."""
        return {"document": self.document, "spec_path": self.spec_path, "space": self.space, "metric": self.metric,
                "direction": self.direction}

    @classmethod
    def of(cls, study: Study) -> SearchRecord:
        """The record a study keeps; SpecError for a study dlcli did not make."""
        kept = study.user_attrs.get(RECORD)
        if not isinstance(kept, dict):
            raise SpecError(f"study {study.study_name!r} was not made by dlcli tune (it has no {RECORD!r} record); "
                            "give another --study-name")
        return cls(kept["document"], kept["spec_path"], kept["space"], kept["metric"], kept["direction"])

    def differences(self, other: SearchRecord) -> list[str]:
        """What differs from another record, in words (the spec path may move: the document is what counts)."""
        found = []
        if self.document != other.document:
            found.append("the spec (or its --set overrides)")
        if self.space != other.space:
            found.append(f"the search space ({_space_text(self.space)} then, {_space_text(other.space)} now)")
        if (self.metric, self.direction) != (other.metric, other.direction):
            found.append(f"the objective ({self.metric}, {self.direction} then; {other.metric}, {other.direction} "
                         "now)")
        return found


def _space_text(space: dict[str, str]) -> str:
    return ", ".join(f"{key}={text}" for key, text in space.items())


def open_storage(place: StudyPlace, create: bool = True) -> RDBStorage:
    """Optuna's database storage of the study, with heartbeats (its folder made for the default SQLite file,
    unless not `create`: a report only reads); SpecError naming the database when it cannot be used."""
    optuna = require_optuna()
    url = place.storage_url
    where = f"--storage {url}"
    if place.default_storage and create:
        where = str(place.directory / STUDY_DB)
        try:
            place.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SpecError(f"cannot make the study folder {place.directory}: {err.strerror}; give --study-dir "
                            "DIR in a place you can write") from None
    from sqlalchemy.exc import SQLAlchemyError  # Optuna's own dependency

    # SQLite: wait for another process's write instead of failing at once ("database is locked")
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        # under the folder's lock: two processes making a new database's tables at once collide
        with place.lock("study") if create else contextlib.nullcontext(), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat is documented
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
                                              grace_period=GRACE_SECONDS)
    except (ImportError, ValueError, SQLAlchemyError) as err:  # no driver, a URL it cannot parse, no database
        raise SpecError(f"{where}: cannot open it ({str(err).splitlines()[0]}); give a database URL Optuna accepts, "
                        "e.g. postgresql://user:password@host/db or sqlite:///path/study.db") from None


def open_study(place: StudyPlace, record: SearchRecord, storage: RDBStorage, spec_values: dict[str, Any],
               grid: list[dict[str, Any]] | None = None, budget: int = 0) -> Study:
    """The study at `place`: created (its first trial queued with the spec's own values) or continued; SpecError
    when it exists for another search. With a `grid` (--sampler grid), its points are queued as trials, in
    order, until the study holds `budget` trials."""
    optuna = require_optuna()
    with place.lock("study"):
        names = optuna.get_all_study_names(storage)
        if place.name in names:
            study = optuna.load_study(study_name=place.name, storage=storage)
            kept = SearchRecord.of(study)
            changed = kept.differences(record)
            if changed:
                raise SpecError(f"study {place.name!r} in {_where(place)} is a search with other settings: "
                                f"{'; '.join(changed)}. Running the same command again continues a study; for a "
                                "new search give --study-dir DIR (or --study-name NAME), or remove "
                                f"{place.directory}")
        else:
            leftovers = sorted(path.name for path in place.directory.glob("trial-*"))
            if place.default_storage and leftovers:
                raise SpecError(f"{place.directory} holds trial folders ({', '.join(leftovers[:3])}...) but no "
                                f"study {place.name!r} in {STUDY_DB}; they belong to a study that is gone. Remove "
                                "them, or give --study-dir DIR for a new study")
            study = optuna.create_study(storage=storage, study_name=place.name, direction=record.direction)
            study.set_user_attr(RECORD, record.as_attribute())
            if spec_values and grid is None:  # trial 0 trains the spec as written: the best is at least as good
                study.enqueue_trial(spec_values, user_attrs={"spec_values": True})
        if grid is not None:
            _queue_grid(study, grid, budget)
        return study


def _queue_grid(study: Study, points: list[dict[str, Any]], budget: int) -> None:
    """Queue the grid's points the study does not hold yet, in order, until it holds `budget` trials. Optuna's
    GridSampler would pick points as trials start, but it stops the study from inside, which only works within
    study.optimize; queued trials are taken one each by whichever process asks next."""
    trials = study.get_trials(deepcopy=False)
    held = [dict(t.params) or dict(t.system_attrs.get("fixed_params", {})) for t in trials]
    count = len(trials)
    for point in points:
        if count >= budget:
            return
        if point not in held:
            study.enqueue_trial(point)
            count += 1


def load_study(place: StudyPlace) -> tuple[Study, SearchRecord]:
    """An existing study and its record, for a report; SpecError when there is none."""
    optuna = require_optuna()
    if place.default_storage and not (place.directory / STUDY_DB).is_file():
        raise SpecError(f"{place.directory}: no {STUDY_DB} here; give the folder `dlcli tune` made "
                        "(runs/<name>-tune), or --storage URL for a study in a database")
    storage = open_storage(place, create=False)
    names = optuna.get_all_study_names(storage)
    name = place.name or (names[0] if len(names) == 1 else "")
    if name not in names:
        raise SpecError(f"{_where(place)} holds {len(names)} studies ({', '.join(names) or 'none'}); name one with "
                        "--study-name")
    study = optuna.load_study(study_name=name, storage=storage)
    return study, SearchRecord.of(study)


def _where(place: StudyPlace) -> str:
    return str(place.directory / STUDY_DB) if place.default_storage else place.storage_url


def make_sampler(kind: str, seed: int) -> BaseSampler:
    """Optuna's sampler for --sampler, seeded (a new one per trial: see trial_seed). A grid's trials are queued
    with their values (open_study), so any sampler serves it."""
    samplers = require_optuna().samplers
    return samplers.TPESampler(seed=seed) if kind == "tpe" else samplers.RandomSampler(seed=seed)


GRID_LIMIT = 100_000


def grid_points(space: SearchSpace, seed: int) -> list[dict[str, Any]]:
    """Every combination of the grid, in a seeded random order (a timeout then leaves a spread-out sample)."""
    import itertools

    import numpy as np

    axes = space.grid()
    size = int(np.prod([len(values) for values in axes.values()]))
    if size > GRID_LIMIT:
        raise SpecError(f"--sampler grid: the grid has {size} points, more than {GRID_LIMIT}; narrow the ranges or "
                        "use --sampler tpe or random")
    points = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    order = np.random.default_rng(seed).permutation(len(points))
    return [points[index] for index in order]


def trial_seed(spec_seed: int, number: int) -> int:
    """The sampler's seed for trial `number`: trial n's values depend on the spec's seed, n and the trials before
    it, and not on which process runs it or whether the search was interrupted."""
    return (spec_seed * 1_000_003 + number) % 2**32


def make_pruner(kind: str, epochs: int) -> BasePruner:
    """Optuna's pruner for --pruner: median (Optuna's defaults), hyperband over 1..epochs, or none."""
    pruners = require_optuna().pruners
    if kind == "median":
        return pruners.MedianPruner()
    if kind == "hyperband":
        return pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    return pruners.NopPruner()


STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "fail", "RUNNING": "running", "WAITING": "waiting"}


def trial_row(trial: Any, space: SearchSpace, place: StudyPlace) -> dict[str, Any]:
    """A trial as the table shows it: number, params (spec values), value, state, seconds, reason, run_dir (where
    it is from the study folder in use)."""
    seconds = None
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    value = trial.value if trial.value is not None and math.isfinite(trial.value) else None
    state = STATES.get(trial.state.name, trial.state.name.lower())
    reason = trial.user_attrs.get("reason")
    if state == "fail" and reason is None:
        reason = "its process stopped sending heartbeats (it or its machine died)"
    run_dir = place.run_dir_of(trial)
    return {"number": trial.number, "state": state, "value": value, "params": space.values(dict(trial.params)),
            "seconds": trial.user_attrs.get("seconds", seconds), "epochs_run": trial.user_attrs.get("epochs_run"),
            "reason": reason, "run_dir": str(run_dir) if run_dir else None}


def finished_counts(study: Study) -> dict[str, int]:
    """How many trials completed, were pruned and failed."""
    counts = {"complete": 0, "pruned": 0, "fail": 0}
    for trial in study.get_trials(deepcopy=False):
        state = STATES.get(trial.state.name)
        if state in counts:
            counts[state] += 1
    return counts
