"""Who runs which trial: each `dlcli tune` process is a worker that holds a lock file while it lives, and takes
the next trial under the study folder's lock, so that processes sharing a study never run a trial twice and
never start more trials than asked for.

A trial whose worker is gone (killed, or stopped by a signal mid-trial) is abandoned: its state is still RUNNING
in the study. The next worker to take a trial settles it first: it is recorded as failed, with the reason, or
(--resume-trials) taken back and continued from its run directory's last checkpoint under its own number.
On this machine a worker's death is seen at once (the kernel drops its lock); a worker on another machine is
known dead when its heartbeat stops (Optuna's heartbeat, failed after GRACE_SECONDS).
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
import threading
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlcli.errors import RunDirectoryTakenError
from dlcli.train.run_lock import try_lock
from dlcli.train.rundir import RunDirectory, checkpoint_path
from dlcli.tune.space import SearchSpace
from dlcli.tune.study import (
    GRACE_SECONDS, HEARTBEAT_SECONDS, WORKERS, StudyPlace, make_sampler, require_optuna, trial_seed,
)

if TYPE_CHECKING:
    from optuna import Study, Trial
    from optuna.storages import RDBStorage
    from optuna.trial import FrozenTrial


class Worker:
    """This process as a runner of trials: "host:pid:token", and DIR/workers/host-pid-token.lock held while it
    lives (the token: a later process given the same pid is another worker)."""

    def __init__(self, place: StudyPlace) -> None:
        self.host = socket.gethostname()
        token = uuid.uuid4().hex[:8]
        self.id = f"{self.host}:{os.getpid()}:{token}"
        self.place = place
        self.lock_path = place.worker_lock(f"{self.host}-{os.getpid()}-{token}.lock")
        self._fd: int | None = None

    def __enter__(self) -> Worker:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # our own pid: nobody else holds it
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            self.lock_path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def claim(self, storage: RDBStorage, trial_id: int, run_dir: Path) -> None:
        """Mark a trial as this worker's (in the study, where every process can see it); its paths as the study
        records them (StudyPlace.record_path)."""
        storage.set_trial_user_attr(trial_id, "worker", self.id)
        storage.set_trial_user_attr(trial_id, "worker_lock", self.place.record_path(self.lock_path))
        storage.set_trial_user_attr(trial_id, "run_dir", self.place.record_path(run_dir))


def is_abandoned(trial: FrozenTrial, worker: Worker) -> bool:
    """Whether a RUNNING trial's worker is gone, as far as this machine can tell."""
    owner, lock = trial.user_attrs.get("worker"), trial.user_attrs.get("worker_lock")
    if owner is None:  # killed between taking the trial and marking it (both happen under the study lock)
        started = trial.datetime_start or datetime.datetime.now()
        return (datetime.datetime.now() - started).total_seconds() > GRACE_SECONDS
    if owner == worker.id:
        return False
    path = worker.place.recorded_path(lock, WORKERS)
    if path.exists():
        return _lock_is_free(path)
    return owner.split(":")[0] == worker.host  # gone from this machine's folder: its worker ended


def _lock_is_free(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return True
    try:
        return try_lock(fd)  # taken for a moment, then released with the descriptor
    finally:
        os.close(fd)


@dataclass
class Job:
    """The next thing a worker does: a new trial, or an abandoned one taken back (`directory` claimed)."""

    trial: Trial
    run_dir: Path
    resumed: bool = False
    directory: RunDirectory | None = None


@dataclass
class Turn:
    """What one look at the study gave: the job (None when the budget is spent) and the abandoned trials it
    recorded as failed on the way."""

    job: Job | None
    settled: list[FrozenTrial] = field(default_factory=list)


def next_turn(study: Study, storage: RDBStorage, place: StudyPlace, worker: Worker, space: SearchSpace,
              budget: int, sampler: str, seed: int, resume_trials: bool) -> Turn:
    """Settle abandoned trials, then take the next job if the study has fewer than `budget` trials finished or
    running. Everything happens under the study folder's lock, so two workers never count the same slot."""
    optuna = require_optuna()
    states = optuna.trial.TrialState
    turn = Turn(None)
    with place.lock("ask"):
        for trial in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
            if not is_abandoned(trial, worker):
                continue
            if resume_trials and _resumable(place, trial):
                if turn.job is None:
                    turn.job = _take_back(study, storage, place, worker, trial)
                else:  # left for a later turn; its heartbeat renewed, so that it is not failed as stale meanwhile
                    storage.record_heartbeat(trial._trial_id)
                continue
            reason = _abandoned_reason(place, trial, resume_trials)
            storage.set_trial_user_attr(trial._trial_id, "reason", reason)
            turn.settled.append(study.tell(trial.number, state=states.FAIL, skip_if_finished=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental: Optuna's documented failure detection
            optuna.storages.fail_stale_trials(study)  # workers on other machines whose heartbeat stopped
        if turn.job is not None:
            return turn
        trials = study.get_trials(deepcopy=False)
        taken = sum(t.state in (states.COMPLETE, states.PRUNED, states.FAIL, states.RUNNING) for t in trials)
        if taken >= budget:
            return turn
        waiting = [t.number for t in trials if t.state == states.WAITING]
        number = min(waiting) if waiting else len(trials)  # the number ask() is about to give
        study.sampler = make_sampler(sampler, trial_seed(seed, number))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with optimize": ours beats itself
            trial = study.ask()
        run_dir = place.trial_dir(trial.number)
        worker.claim(storage, trial._trial_id, run_dir)
        turn.job = Job(trial, run_dir)
    return turn


def _resumable(place: StudyPlace, trial: FrozenTrial) -> bool:
    """Whether an abandoned trial's run directory holds a checkpoint to continue from."""
    run_dir = place.run_dir_of(trial)
    return run_dir is not None and checkpoint_path(run_dir, "last").is_file()


def _take_back(study: Study, storage: RDBStorage, place: StudyPlace, worker: Worker,
               frozen: FrozenTrial) -> Job | None:
    """--resume-trials: a resumable abandoned trial's run directory, claimed; None (the trial left as it is) when
    its old process still holds the directory after all."""
    run_dir = place.run_dir_of(frozen)
    assert run_dir is not None  # _resumable
    try:
        directory = RunDirectory.existing(run_dir)
    except RunDirectoryTakenError:  # its old process is still writing it after all
        return None
    worker.claim(storage, frozen._trial_id, run_dir)
    storage.record_heartbeat(frozen._trial_id)  # its old heartbeat may be stale: not to be failed before it runs
    trial = require_optuna().trial.Trial(study, frozen._trial_id)  # as ask() makes one, for an existing trial
    return Job(trial, run_dir, resumed=True, directory=directory)


def _abandoned_reason(place: StudyPlace, trial: FrozenTrial, resume_trials: bool) -> str:
    interrupted = trial.user_attrs.get("interrupted")
    why = f"interrupted ({interrupted})" if interrupted else "interrupted (its process died mid-trial)"
    if resume_trials:
        return f"{why}; it had no checkpoint to continue from"
    if _resumable(place, trial):
        return f"{why}; --resume-trials continues such a trial from its last checkpoint"
    return why


@contextmanager
def heartbeat(storage: RDBStorage, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat every HEARTBEAT_SECONDS while it runs (Optuna's failure detection)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            storage.record_heartbeat(trial_id)
            stop.wait(HEARTBEAT_SECONDS)

    thread = threading.Thread(target=beat, name="dlcli-tune-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()

