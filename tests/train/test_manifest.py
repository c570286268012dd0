"""run.json, the manifest: what a run records about where it came from, and its status on every way out."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytest

from dlcli.errors import DivergedError, RunInterruptedError
from dlcli.train.callbacks import Callback, Run
from dlcli.train.manifest import observed_status, parse_time
from dlcli.train.run_lock import lock_holder
from dlcli.train.rundir import RunDirectory
from tests.cli.runs_fixture import invoke
from tests.train import faults
from tests.train.test_fit import fit, spec_doc, write_blobs
from tests.train.test_interrupts import SignalAt


def manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "run.json").read_text())


def test_a_finished_run_records_its_source_environment_data_and_times(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    fit(spec_doc(data, epochs=2), tmp_path / "run")
    found = manifest(tmp_path / "run")
    assert found["status"] == "finished" and found["error"] is None
    started, ended = parse_time(found["started"]), parse_time(found["ended"])
    assert started is not None and ended is not None and started <= ended
    env = found["environment"]
    assert (env["python"], env["numpy"], env["numba"]) == (platform.python_version(), np.__version__,
                                                         numba.__version__)
    assert env["blas"] and env["cpu"] and env["threads"]["numba"] == numba.config.NUMBA_NUM_THREADS
    assert found["seed"] == 5 and found["world_size"] == 1
    assert found["data"] == {"train": {"path": str(data), "sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
                                       "bytes": data.stat().st_size}}
    assert found["progress"]["epoch"] == 2 and found["progress"]["step"] == 2 * 12
    assert found["progress"]["best"]["monitor"] == "val_loss"
    assert [s["status"] for s in found["sessions"]] == ["finished"]
    assert found["spec_file"] is None and found["git"] is None  # fit_run was given no spec file


def test_a_registry_dataset_records_the_sha256_its_files_are_checked_against(tmp_path: Path) -> None:
    from dlcli.data.catalog import BUNDLED_SHA256

    doc = spec_doc(tmp_path / "unused.npz", epochs=1)
    doc["data"] = {"dataset": "iris", "validation_split": 0.2}
    doc["model"]["input"]["shape"] = [4]
    fit(doc, tmp_path / "run")
    assert manifest(tmp_path / "run")["data"] == {"dataset": {"dataset": "iris", "options": {},
                                                              "files": {"iris.csv": BUNDLED_SHA256["iris.csv"]}}}


def _git(folder: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def test_the_command_line_and_the_spec_folders_git_commit_are_recorded(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    write_blobs(repo / "blobs.npz")
    spec = repo / "blobs.toml"
    spec.write_text('name = "blobs"\n[data]\ntrain = "blobs.npz"\n[model]\ninput = { shape = [2] }\n'
                    '[[model.layers]]\ntype = "dense"\nunits = 3\nactivation = "softmax"\n'
                    '[train]\nloss = "sparse_categorical_crossentropy"\nepochs = 1\n')
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "spec")
    commit = _git(repo, "rev-parse", "HEAD")
    spec.write_text(spec.read_text().replace("epochs = 1", "epochs = 2"))  # changed since the commit
    result = subprocess.run([sys.executable, "-m", "dlcli", "train", str(spec), "--run-dir", str(tmp_path / "run"),
                             "--quiet"], capture_output=True, text=True, env=faults.env())
    assert result.returncode == 0, result.stderr
    found = manifest(tmp_path / "run")
    assert found["git"] == {"commit": commit, "spec_modified": True, "root": str(repo)}
    assert found["command"] == f"dlcli train {spec} --run-dir {tmp_path / 'run'} --quiet"
    assert found["spec_file"] == str(spec) and found["cwd"] == os.getcwd()


def test_a_diverged_run_says_diverged_with_the_error(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    doc = spec_doc(data, epochs=3, optimizer={"type": "sgd", "learning_rate": 1e30})
    with pytest.raises(DivergedError):
        fit(doc, tmp_path / "run")
    found = manifest(tmp_path / "run")
    assert found["status"] == "diverged" and "the loss became" in found["error"]
    assert found["sessions"][-1]["status"] == "diverged" and found["ended"] is not None


class Explode(Callback):
    """A bug in the middle of training (what any unexpected exception does)."""

    def on_batch_end(self, run: Run, epoch: int, step: int, logs: dict[str, float]) -> None:
        if run.step == 15:
            raise ZeroDivisionError("a bug")


class Watcher(Callback):
    """Records what its hooks hear about how training ended."""

    def __init__(self) -> None:
        self.aborted: list[str] = []
        self.ended = False

    def on_train_abort(self, run: Run, status: str) -> None:
        self.aborted.append(status)

    def on_train_end(self, run: Run, summary: dict[str, Any]) -> None:
        self.ended = True


def test_an_unexpected_error_marks_the_run_failed_and_callbacks_hear_it(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    watcher = Watcher()
    with pytest.raises(ZeroDivisionError):
        fit(spec_doc(data, epochs=3), tmp_path / "run", [watcher, Explode()])
    found = manifest(tmp_path / "run")
    assert found["status"] == "failed" and found["error"] == "a bug"
    assert found["progress"]["epoch"] == 1  # current to the last epoch that finished
    assert watcher.aborted == ["failed"] and not watcher.ended


class BrokenCloser(Callback):
    """A logger whose file cannot be closed while the run stops on another error."""

    def on_train_abort(self, run: Run, status: str) -> None:
        raise OSError("No space left on device")


def test_a_callback_failing_as_the_run_stops_does_not_hide_the_error_that_stopped_it(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    watcher = Watcher()
    with pytest.raises(ZeroDivisionError, match="a bug"):
        fit(spec_doc(data, epochs=3), tmp_path / "run", [BrokenCloser(), watcher, Explode()])
    assert manifest(tmp_path / "run")["status"] == "failed"
    assert watcher.aborted == ["failed"]  # the callbacks after the one that failed still hear it


def test_an_interrupted_run_says_so_and_its_resume_adds_a_finished_session(tmp_path: Path) -> None:
    from dlcli.train.resume import resume_run

    data = write_blobs(tmp_path / "blobs.npz")
    watcher = Watcher()
    with pytest.raises(RunInterruptedError):
        fit(spec_doc(data, epochs=2), tmp_path / "run", [watcher, SignalAt(5, signal.SIGTERM)])
    found = manifest(tmp_path / "run")
    assert found["status"] == "interrupted" and "stopped by SIGTERM" in found["error"]
    assert watcher.aborted == ["interrupted"]
    resume_run(tmp_path / "run", (), None, [])
    found = manifest(tmp_path / "run")
    assert found["status"] == "finished" and found["error"] is None
    assert [s["status"] for s in found["sessions"]] == ["interrupted", "finished"]
    assert found["started"] == found["sessions"][0]["started"] and found["ended"] == found["sessions"][1]["ended"]


def test_a_killed_run_reads_as_killed_once_no_process_holds_its_lock(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz", n=2000)
    doc = spec_doc(data, epochs=50)
    spec = tmp_path / "blobs.json"
    spec.write_text(json.dumps(doc))
    script = ("import json, sys\nfrom pathlib import Path\nfrom tests.train.test_fit import fit\n"
              "fit(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))\n")
    job = subprocess.Popen([sys.executable, "-c", script, str(spec), str(tmp_path / "run")],
                           env=faults.env(DLCLI_TEST_CALLBACKS="tests.train.faults", DLCLI_TEST_PAUSE_STEP="0.02"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "run.json").exists():
        assert time.monotonic() < deadline and job.poll() is None, job.stderr.read() if job.stderr else ""
        time.sleep(0.02)
    assert lock_holder(tmp_path / "run") == job.pid
    assert observed_status(tmp_path / "run", manifest(tmp_path / "run")) == "running"
    job.kill()
    job.wait(timeout=30)
    assert manifest(tmp_path / "run")["status"] == "running"  # nothing could write it
    assert lock_holder(tmp_path / "run") is None
    assert observed_status(tmp_path / "run", manifest(tmp_path / "run")) == "killed"
    listed = json.loads(invoke("runs", str(tmp_path), "--json").stdout)
    assert listed["run"] == "run" and listed["status"] == "killed"


def test_lock_holder_reads_the_lock_without_taking_it(tmp_path: Path) -> None:
    directory = RunDirectory.fresh(tmp_path / "run")
    try:
        assert lock_holder(tmp_path / "run") == os.getpid()
        assert lock_holder(tmp_path / "run") == os.getpid()  # asking twice changed nothing
        (tmp_path / "run" / "x").write_text("")  # a folder with a run in it keeps its lock file on close
    finally:
        directory.close()
    assert lock_holder(tmp_path / "run") is None
    assert lock_holder(tmp_path / "missing") is None
