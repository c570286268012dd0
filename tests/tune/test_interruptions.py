"""dlcli tune in subprocesses, as a shell or CI runs it: killed mid-trial and run again (the study ends with
exactly the trials asked for, none numbered twice), --resume-trials, two processes sharing one SQLite study,
and --jobs (its workers stop with their parent)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from dlcli.tune.parallel import worker_environment
from tests.train import faults

REPO = Path(__file__).resolve().parents[2]
DIGITS = str(REPO / "specs" / "digits_mlp.toml")
ARGS = ["--set", "train.epochs=3", "--set", "train.steps_per_epoch=8", "--metric", "val_accuracy",
        "--param", "train.optimizer.learning_rate=loguniform(1e-4, 1e-2)",
        "--param", "model.layers[1].units=int(16, 128, log)"]


def start(folder: Path, *extra: str, pause: float = 0.0) -> subprocess.Popen[str]:
    """`dlcli tune DIGITS ARGS EXTRA --json` in `folder`, each training step slowed by `pause` seconds."""
    env = {**faults.env(DLCLI_TEST_PAUSE_STEP=str(pause)), "CI": "true"}
    return subprocess.Popen([sys.executable, "-m", "dlcli", "tune", DIGITS, *ARGS, *extra, "--json"], cwd=folder,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]], str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, [json.loads(line) for line in out.splitlines() if line.strip()], err


def kill_during(process: subprocess.Popen[str], number: int) -> list[dict[str, Any]]:
    """SIGKILL the process once trial `number` has checkpointed its first epoch (and has more to do)."""
    assert process.stdout is not None
    events = []
    for line in process.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "trial_epoch" and events[-1]["number"] == number:
            # the epoch's value is reported before its checkpoint is written: wait for the file
            last = Path(next(e["run_dir"] for e in events if e.get("number") == number and "run_dir" in e))
            deadline = time.monotonic() + 30
            while not (last / "checkpoints" / "last.safetensors").is_file() and time.monotonic() < deadline:
                time.sleep(0.01)
            process.kill()
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, events
    return events


def study_trials(folder: Path, name: str = "digits-mlp") -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{folder / 'runs' / 'digits-mlp-tune' / 'study.db'}"
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (by its path there) with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def started(events: list[dict[str, Any]], resumed: bool = False) -> list[int]:
    return [e["number"] for e in events if e["event"] == "trial_start" and bool(e.get("resumed")) == resumed]


def assert_exactly(trials: list[optuna.trial.FrozenTrial], count: int) -> None:
    """The study holds `count` trials, numbered 0..count-1 once each, every one finished."""
    assert sorted(t.number for t in trials) == list(range(count))
    assert all(t.state.is_finished() for t in trials), [(t.number, t.state) for t in trials]


def test_killed_during_trial_3_and_run_again_the_study_ends_with_exactly_the_trials_asked(tmp_path: Path) -> None:
    first = kill_during(start(tmp_path, "--trials", "6", pause=0.05), number=3)
    assert started(first) == [0, 1, 2, 3]
    run_dir = tmp_path / "runs" / "digits-mlp-tune" / "trial-3"
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    code, again, err = finish(start(tmp_path, "--trials", "6"))
    assert code == 0, err
    assert started(again) == [4, 5]  # 3 is never started again, and no number is given twice
    (settled,) = [e for e in again if e["event"] == "trial_end" and e["number"] == 3]
    assert settled["state"] == "fail"
    assert settled["reason"] == ("interrupted (its process died mid-trial); --resume-trials continues such a trial "
                                 "from its last checkpoint")
    trials = study_trials(tmp_path)
    assert_exactly(trials, 6)
    assert again[-1]["trials"] == 6 and again[-1]["fail"] == 1
    assert json.loads((run_dir / "run.json").read_text())["run_id"] == run_id  # its folder is left as it was


def test_resume_trials_finishes_the_killed_trial_from_its_checkpoint(tmp_path: Path) -> None:
    kill_during(start(tmp_path, "--trials", "5", pause=0.05), number=3)
    code, again, err = finish(start(tmp_path, "--trials", "5", "--resume-trials"))
    assert code == 0, err
    assert started(again, resumed=True) == [3] and started(again) == [4]
    (ended,) = [e for e in again if e["event"] == "trial_end" and e["number"] == 3]
    assert ended["state"] in ("complete", "pruned")
    run_dir = tmp_path / "runs" / "digits-mlp-tune" / "trial-3"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_run"] == ended["epochs_run"] and str(run_dir / "checkpoints") in \
        json.dumps(summary)  # the run directory it started in
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, len(epochs) + 1))  # continued after epoch 1, never restarted
    assert_exactly(study_trials(tmp_path), 5)


def test_resume_trials_in_a_copied_study_folder_trains_the_copy_and_leaves_the_original_alone(tmp_path: Path) -> None:
    kill_during(start(tmp_path, "--trials", "2", pause=0.05), number=1)
    original = tmp_path / "runs" / "digits-mlp-tune"
    copy = tmp_path / "runs" / "copy-tune"
    shutil.copytree(original, copy)
    before = files(original / "trial-1")
    code, again, err = finish(start(tmp_path, "--trials", "2", "--resume-trials", "--study-dir", str(copy)))
    assert code == 0, err
    (ended,) = [e for e in again if e["event"] == "trial_end" and e["number"] == 1]
    assert ended["state"] in ("complete", "pruned") and ended["run_dir"] == str(copy / "trial-1")
    epochs = [json.loads(line)["epoch"] for line in (copy / "trial-1" / "history.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, ended["epochs_run"] + 1)) and len(epochs) > 1  # continued in the copy
    # before, the copy's study trained in the original's trial-1, which its own study.db still has as running
    assert files(original / "trial-1") == before
    assert [t.state.name for t in study_trials(tmp_path)] == ["COMPLETE", "RUNNING"]


def test_two_processes_share_one_sqlite_study_without_running_a_trial_twice(tmp_path: Path) -> None:
    processes = [start(tmp_path, "--trials", "6", pause=0.01) for _ in range(2)]
    results = [finish(process) for process in processes]
    for code, _, err in results:
        assert code == 0, err
    numbers = [started(events) for _, events, _ in results]
    assert numbers[0] and numbers[1], numbers  # both took trials
    assert sorted(numbers[0] + numbers[1]) == list(range(6))
    assert_exactly(study_trials(tmp_path), 6)
    assert not list((tmp_path / "runs" / "digits-mlp-tune" / "workers").iterdir())  # both workers left


def test_jobs_runs_trials_in_worker_processes_that_stop_with_their_parent(tmp_path: Path) -> None:
    parent = start(tmp_path, "--trials", "6", "--jobs", "2", pause=0.05)
    events = kill_during(parent, number=1)
    assert events[0]["event"] == "study_start" and events[0]["jobs"] == 2
    workers = tmp_path / "runs" / "digits-mlp-tune" / "workers"
    deadline = time.monotonic() + 60
    while list(workers.iterdir()) and time.monotonic() < deadline:  # SIGTERM: they checkpoint and leave
        time.sleep(0.2)
    assert not list(workers.iterdir())
    running = [t.number for t in study_trials(tmp_path) if t.state == optuna.trial.TrialState.RUNNING]
    assert 1 in running
    code, again, err = finish(start(tmp_path, "--trials", "6", "--jobs", "2"))
    assert code == 0, err
    settled = [e for e in again if e["event"] == "trial_end" and e["number"] in running]
    assert all(e["state"] == "fail" and e["reason"].startswith("interrupted (stopped by SIGTERM)") for e in settled)
    assert_exactly(study_trials(tmp_path), 6)


def test_jobs_split_the_threads_between_workers(monkeypatch: Any) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    environment = worker_environment(3)
    assert [environment[name] for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                           "NUMBA_NUM_THREADS")] == ["2"] * 4
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert worker_environment(len(os.sched_getaffinity(0)) * 4)["OMP_NUM_THREADS"] == "1"
