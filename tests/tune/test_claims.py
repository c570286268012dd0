"""Who takes which trial, checked on a real SQLite study in this process: abandoned trials (their worker's lock
is free) are failed with their reason, or taken back one at a time with --resume-trials and kept from Optuna's
stale-heartbeat failing meanwhile; a live worker's trial is left alone; the budget counts running trials."""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path

import optuna
import pytest

from dlcli.tune import claims, study as tune_study
from dlcli.tune.claims import Worker, next_turn
from dlcli.tune.space import SearchSpace
from dlcli.tune.study import StudyPlace, open_storage

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # study.ask outside optimize

SPACE = SearchSpace.from_options({}, ["model.layers[0].units=int(8, 64)"])


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StudyPlace:
    # heartbeats go stale after 1 second here, so that Optuna's failing of stale trials takes part in the test
    monkeypatch.setattr(tune_study, "GRACE_SECONDS", 1)
    monkeypatch.setattr(tune_study, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(claims, "GRACE_SECONDS", 1)
    return StudyPlace.of(tmp_path / "study", "s")


def _abandoned(study: optuna.Study, storage: optuna.storages.RDBStorage, place: StudyPlace, checkpoint: bool,
               alive: bool = False) -> tuple[optuna.Trial, int | None]:
    """A RUNNING trial whose worker's lock file is free (or held, when `alive`), with a run directory."""
    trial = study.ask()
    run_dir = place.directory / f"trial-{trial.number}"
    (run_dir / "checkpoints").mkdir(parents=True)
    if checkpoint:
        (run_dir / "checkpoints" / "last.safetensors").write_bytes(b"")
    lock = place.directory / "workers" / f"elsewhere-{trial.number}.lock"
    lock.parent.mkdir(exist_ok=True)
    lock.touch()
    held = None
    if alive:
        held = os.open(lock, os.O_RDWR)
        fcntl.flock(held, fcntl.LOCK_EX)
    for key, value in (("worker", f"host:{trial.number}:x"), ("worker_lock", str(lock)), ("run_dir", str(run_dir))):
        storage.set_trial_user_attr(trial._trial_id, key, value)
    storage.record_heartbeat(trial._trial_id)
    return trial, held


def test_resume_trials_takes_back_one_trial_a_turn_and_keeps_the_others_from_going_stale(place: StudyPlace) -> None:
    storage = open_storage(place)
    study = optuna.create_study(storage=storage, study_name="s")
    first, _ = _abandoned(study, storage, place, checkpoint=True)
    second, _ = _abandoned(study, storage, place, checkpoint=True)
    lost, _ = _abandoned(study, storage, place, checkpoint=False)
    time.sleep(1.5)  # every heartbeat is stale now
    with Worker(place) as worker:
        turn = next_turn(study, storage, place, worker, SPACE, 10, "tpe", 0, resume_trials=True)
        assert turn.job is not None and turn.job.resumed and turn.job.trial.number == first.number
        assert [t.number for t in turn.settled] == [lost.number]
        assert "it had no checkpoint to continue from" in turn.settled[0].user_attrs["reason"]
        states = {t.number: t.state for t in study.get_trials()}
        assert states[first.number] == states[second.number] == optuna.trial.TrialState.RUNNING
        turn.job.directory.close()
        study.tell(first.number, 1.0)
        later = next_turn(study, storage, place, worker, SPACE, 10, "tpe", 0, resume_trials=True)
        assert later.job is not None and later.job.resumed and later.job.trial.number == second.number
        later.job.directory.close()


def test_without_resume_trials_abandoned_trials_fail_and_live_ones_are_left_alone(tmp_path: Path) -> None:
    place = StudyPlace.of(tmp_path / "study", "s")  # Optuna's own grace period: no heartbeat goes stale here
    storage = open_storage(place)
    study = optuna.create_study(storage=storage, study_name="s")
    dead, _ = _abandoned(study, storage, place, checkpoint=True)
    alive, held = _abandoned(study, storage, place, checkpoint=True, alive=True)
    try:
        with Worker(place) as worker:
            turn = next_turn(study, storage, place, worker, SPACE, 3, "tpe", 0, resume_trials=False)
            assert [t.number for t in turn.settled] == [dead.number]
            assert turn.settled[0].user_attrs["reason"] == ("interrupted (its process died mid-trial); "
                                                            "--resume-trials continues such a trial from its last "
                                                            "checkpoint")
            # dead (failed) + alive (running) + this new one = 3: the budget is spent
            assert turn.job is not None and turn.job.trial.number == 2 and not turn.job.resumed
            assert next_turn(study, storage, place, worker, SPACE, 3, "tpe", 0, False).job is None
    finally:
        os.close(held)
    assert {t.number: t.state.name for t in study.get_trials()} == {0: "FAIL", 1: "RUNNING", 2: "RUNNING"}


def _interrupted_study(place: StudyPlace) -> optuna.storages.RDBStorage:
    """A study whose trial 0 was taken by a worker that then died (its lock released) after a checkpoint."""
    storage = open_storage(place)
    study = optuna.create_study(storage=storage, study_name="s")
    with Worker(place) as worker:
        job = next_turn(study, storage, place, worker, SPACE, 1, "tpe", 0, resume_trials=False).job
        assert job is not None
        (job.run_dir / "checkpoints").mkdir(parents=True)
        (job.run_dir / "checkpoints" / "last.safetensors").write_bytes(b"")
    storage.engine.dispose()  # this process lets go of study.db, as the dead one did
    return storage


def _take_back(place: StudyPlace) -> claims.Job | None:
    storage = open_storage(place)
    study = optuna.load_study(study_name="s", storage=storage)
    with Worker(place) as worker:
        job = next_turn(study, storage, place, worker, SPACE, 1, "tpe", 0, resume_trials=True).job
    if job is not None and job.directory is not None:
        job.directory.close()
    return job


@pytest.mark.parametrize("how", ["copy", "move"])
def test_a_copied_or_moved_study_folder_resumes_its_trial_in_its_own_trial_folder(tmp_path: Path, how: str) -> None:
    place = StudyPlace.of(tmp_path / "study", "s")
    _interrupted_study(place)
    there = tmp_path / "elsewhere"
    (shutil.copytree if how == "copy" else shutil.move)(place.directory, there)
    moved = StudyPlace.of(there, "s")
    job = _take_back(moved)
    # before: the copy trained in the original's trial-0, and the moved folder had "no checkpoint to continue from"
    assert job is not None and job.resumed and job.run_dir == there / "trial-0"
    (trial,) = optuna.load_study(study_name="s", storage=moved.storage_url).get_trials()
    assert trial.user_attrs["run_dir"] == "trial-0"  # recorded relative to the study folder
    assert trial.user_attrs["worker_lock"].startswith("workers/")
    assert tune_study.trial_row(trial, SPACE, moved)["run_dir"] == str(there / "trial-0")


def test_a_moved_study_written_with_absolute_paths_resolves_them_inside_its_folder(tmp_path: Path) -> None:
    place = StudyPlace.of(tmp_path / "study", "s")
    storage = open_storage(place)
    study = optuna.create_study(storage=storage, study_name="s")
    dead, _ = _abandoned(study, storage, place, checkpoint=True)  # absolute paths, as older dlcli recorded them
    alive, held = _abandoned(study, storage, place, checkpoint=True, alive=True)
    storage.engine.dispose()
    try:
        shutil.move(place.directory, tmp_path / "moved")  # the live worker's lock moves with it, still held
        moved = StudyPlace.of(tmp_path / "moved", "s")
        study = optuna.load_study(study_name="s", storage=moved.storage_url)
        storage = open_storage(moved)
        with Worker(moved) as worker:
            job = next_turn(study, storage, moved, worker, SPACE, 5, "tpe", 0, resume_trials=True).job
            assert job is not None and job.resumed and job.trial.number == dead.number
            assert job.run_dir == moved.directory / f"trial-{dead.number}"
            job.directory.close()
        states = {t.number: t.state.name for t in study.get_trials()}
        assert states == {dead.number: "RUNNING", alive.number: "RUNNING"}  # the live one left alone
    finally:
        os.close(held)


def test_a_shared_storage_records_absolute_run_directories_and_resumes_a_trial_where_it_ran(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = StudyPlace.of(tmp_path / "first", "s", url)
    _interrupted_study(first)
    second = StudyPlace.of(tmp_path / "second", "s", url)
    job = _take_back(second)
    assert job is not None and job.resumed and job.run_dir == first.directory / "trial-0"
    (trial,) = optuna.load_study(study_name="s", storage=url).get_trials()
    assert trial.user_attrs["run_dir"] == str(first.directory / "trial-0")
