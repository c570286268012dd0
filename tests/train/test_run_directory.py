"""A run directory belongs to one run: new runs get new folders, a lock keeps out a second writer, --overwrite
is the only way to replace a run, and the files agree with each other through every fault."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from dlcli.checkpoint import load_checkpoint
from tests.train import faults
from tests.train.run_invariants import assert_run_consistent

REPO = Path(__file__).resolve().parents[2]
DIGITS = str(REPO / "specs" / "digits_mlp.toml")


def _env(**extra: str) -> dict[str, str]:
    return faults.env(CI="true", **extra)  # DLCLI_TEST_* faults in `extra` reach the process through the seam


def dlcli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dlcli", *args], cwd=cwd, env=_env(**env), capture_output=True,
                          text=True, timeout=300)


def start(*args: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "dlcli", *args], cwd=cwd, env=_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file below `folder`, by relative path; the lock file holds who locked it last, not the run."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.01)


def new_last_written(run: Path, old_id: str) -> bool:
    """Whether run/checkpoints/last is a checkpoint of a run other than `old_id`."""
    try:
        return load_checkpoint(run / "checkpoints" / "last.safetensors")[1]["run_id"] != old_id
    except Exception:  # missing, or being replaced right now
        return False


def test_each_new_run_of_a_spec_gets_its_own_folder_and_the_first_stays_byte_identical(tmp_path: Path) -> None:
    first = dlcli("train", DIGITS, "--set", "train.epochs=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "run_dir=runs/digits-mlp\n" in first.stdout.splitlines()[0] + "\n"
    before = digests(tmp_path / "runs" / "digits-mlp")
    second = dlcli("train", DIGITS, "--set", "train.epochs=1", "--json", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    start_event = json.loads(second.stdout.splitlines()[0])
    assert start_event["event"] == "start" and start_event["run_dir"] == "runs/digits-mlp-2"
    third = dlcli("train", DIGITS, "--set", "train.epochs=1", cwd=tmp_path)
    assert "run_dir=runs/digits-mlp-3" in third.stdout.splitlines()[0]
    assert digests(tmp_path / "runs" / "digits-mlp") == before
    for name in ("digits-mlp", "digits-mlp-2", "digits-mlp-3"):
        assert_run_consistent(tmp_path / "runs" / name)
    ids = {json.loads((tmp_path / "runs" / n / "run.json").read_text())["run_id"]
           for n in ("digits-mlp", "digits-mlp-2", "digits-mlp-3")}
    assert len(ids) == 3


def test_a_run_dir_that_holds_anything_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "history.csv").write_text("my,own\n1,2\n")
    (foreign / "summary.json").write_text('{"mine": true}\n')
    before = digests(foreign)
    result = dlcli("train", DIGITS, "--run-dir", str(foreign), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "already holds files (history.csv, summary.json)" in result.stderr
    assert "--resume" in result.stderr and "--overwrite" in result.stderr
    assert digests(foreign) == before and sorted(p.name for p in foreign.iterdir()) == ["history.csv",
                                                                                       "summary.json"]
    run = tmp_path / "run"
    assert dlcli("train", DIGITS, "--set", "train.epochs=1", "--run-dir", str(run), cwd=tmp_path).returncode == 0
    again = dlcli("train", DIGITS, "--run-dir", str(run), "--json", cwd=tmp_path)
    assert again.returncode == 2
    event = json.loads(again.stdout)
    assert event["event"] == "error" and "already holds a run" in event["message"]


def test_an_empty_folder_or_one_left_with_only_a_lock_is_free(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".lock").write_text("12345\ndlcli train old.toml\n")  # a killed run's lock: nobody holds it
    result = dlcli("train", DIGITS, "--set", "train.epochs=1", "--run-dir", str(empty), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_run_consistent(empty)


def test_overwrite_moves_the_old_run_aside_and_deletes_it_only_when_the_new_one_finishes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert dlcli("train", DIGITS, "--set", "train.epochs=2", "--run-dir", str(run), cwd=tmp_path).returncode == 0
    old = digests(run)
    old_id = json.loads((run / "run.json").read_text())["run_id"]
    # the replacing run is killed part-way: the old run is whole, aside; the folder holds only the new run
    proc = start("train", DIGITS, "--set", "train.epochs=3", "--set", "train.checkpoint_every_steps=5",
                 "--run-dir", str(run), "--overwrite", "--quiet", cwd=tmp_path, DLCLI_TEST_PAUSE_STEP="0.02")
    wait_until(lambda: new_last_written(run, old_id))
    proc.kill()
    proc.wait(timeout=30)
    asides = list(tmp_path.glob("run.replaced-*"))
    assert len(asides) == 1 and digests(asides[0]) == old
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["run_id"] != old_id and manifest["replaces"] == str(asides[0])
    assert_run_consistent(run)
    # resumed to the end, the new run completes the replacement
    resumed = dlcli("train", str(run), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(tmp_path.glob("run.replaced-*"))
    assert_run_consistent(run)
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 3
    # and a plain --overwrite of a finished run: replaced in one go
    again = dlcli("train", DIGITS, "--set", "train.epochs=1", "--run-dir", str(run), "--overwrite", "--json",
                  cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "replaced" in json.loads(again.stdout.splitlines()[0])
    assert not list(tmp_path.glob("run.replaced-*"))
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 1
    assert_run_consistent(run)


def test_overwrite_and_resume_together_are_a_usage_error(tmp_path: Path) -> None:
    result = dlcli("train", DIGITS, "--resume", "--overwrite", cwd=tmp_path)
    assert result.returncode == 2 and "give one" in result.stderr


@pytest.mark.parametrize("attempt", range(20))
def test_two_trainers_started_together_on_one_folder_exactly_one_trains(tmp_path: Path, attempt: int) -> None:
    run = tmp_path / "run"
    args = ("train", DIGITS, "--set", "train.epochs=2", "--run-dir", str(run))
    procs = [start(*args, cwd=tmp_path) for _ in range(2)]
    results = [(proc.wait(timeout=120), *proc.communicate()) for proc in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert "is being written by PID" in loser or "already holds a run" in loser, loser
    assert "Traceback" not in loser and loser.count("\n") == 1
    assert_run_consistent(run)
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2


def test_a_second_writer_is_refused_naming_the_holder_and_readers_still_read(tmp_path: Path) -> None:
    run = tmp_path / "run"
    # 30 epochs at 0.01 s a step: the first writer is still training (it is killed below) when the second
    # starts, however slowly a loaded machine starts it
    proc = start("train", DIGITS, "--set", "train.epochs=30", "--run-dir", str(run), "--quiet", cwd=tmp_path,
                 DLCLI_TEST_PAUSE_STEP="0.01")
    try:
        wait_for(run / "checkpoints" / "last.safetensors")
        second = dlcli("train", str(run), "--resume", "--set", "train.epochs=32", cwd=tmp_path)
        assert second.returncode == 2
        assert f"is being written by PID {proc.pid} (dlcli train {DIGITS}" in second.stderr
        # eval only reads: no lock, and never a half-written file
        for _ in range(3):
            evaluated = dlcli("eval", str(run), "--checkpoint", "last", "--json", cwd=tmp_path)
            assert evaluated.returncode == 0, evaluated.stderr
            assert json.loads(evaluated.stdout)["samples"] == 360
    finally:
        proc.kill()
        proc.wait(timeout=30)
    # flock died with its holder: the killed run resumes at once
    resumed = dlcli("train", str(run), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_run_consistent(run)


def test_resume_with_nothing_to_do_says_so_and_writes_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert dlcli("train", DIGITS, "--set", "train.epochs=2", "--run-dir", str(run), cwd=tmp_path).returncode == 0
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    same = dlcli("train", str(run), "--resume", cwd=tmp_path)
    assert same.returncode == 0 and same.stdout == ""
    assert same.stderr == (f"note: nothing to do: {run} already has 2 of 2 epochs and train.epochs asks for 2; to "
                           "train longer, resume with --set train.epochs=N for N above 2\n")
    fewer = dlcli("train", str(run), "--resume", "--set", "train.epochs=1", cwd=tmp_path)
    assert fewer.returncode == 2
    assert "it already has 2 epochs; give more than 2" in fewer.stderr
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before
    more = dlcli("train", str(run), "--resume", "--set", "train.epochs=3", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 3
    assert json.loads((run / "spec.json").read_text())["train"]["epochs"] == 3
    assert_run_consistent(run)


def test_resume_of_a_run_that_stopped_early_has_nothing_to_do(tmp_path: Path) -> None:
    run = tmp_path / "run"
    stop = ["--set", 'train.callbacks=[{type="early_stopping", monitor="loss", min_delta=10.0, patience=0}]']
    first = dlcli("train", DIGITS, *stop, "--set", "train.epochs=5", "--run-dir", str(run), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_early"] and summary["epochs_run"] < 5
    again = dlcli("train", str(run), "--resume", cwd=tmp_path)
    assert again.returncode == 0 and f"{run} stopped early at epoch {summary['epochs_run']} of 5" in again.stderr


def test_spec_resume_takes_the_newest_run_of_the_spec_and_says_so(tmp_path: Path) -> None:
    for _ in range(2):
        assert dlcli("train", DIGITS, "--set", "train.epochs=1", cwd=tmp_path).returncode == 0
    result = dlcli("train", DIGITS, "--resume", "--set", "train.epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming runs/digits-mlp-2, the newest of 2 runs" in result.stderr
    assert json.loads((tmp_path / "runs" / "digits-mlp-2" / "summary.json").read_text())["epochs_run"] == 2
    assert json.loads((tmp_path / "runs" / "digits-mlp" / "summary.json").read_text())["epochs_run"] == 1


def test_run_dir_paths_that_cannot_be_a_folder_are_one_paragraph(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    under_file = dlcli("train", DIGITS, "--run-dir", str(tmp_path / "afile" / "run"), cwd=tmp_path)
    # an output that cannot be written, 2 (as an export's); 4 is for a bad checkpoint, which a script may branch on
    assert under_file.returncode == 2, under_file.stderr
    assert f"cannot create run directory {tmp_path / 'afile' / 'run'}: a part of the path is a file" \
        in under_file.stderr and "Traceback" not in under_file.stderr
    long_name = tmp_path / ("r" * 300)
    too_long = dlcli("train", DIGITS, "--run-dir", str(long_name), cwd=tmp_path)
    assert too_long.returncode == 2 and "longer than this system allows" in too_long.stderr
    assert "Traceback" not in too_long.stderr


def test_eval_of_a_missing_last_checkpoint_lists_the_ones_there_are(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert dlcli("train", DIGITS, "--set", "train.epochs=1", "--run-dir", str(run), cwd=tmp_path).returncode == 0
    (run / "checkpoints" / "last.safetensors").unlink()
    result = dlcli("eval", str(run), "--checkpoint", "last", cwd=tmp_path)
    assert result.returncode == 4
    assert f"{run}: has no last checkpoint; it has best: use --checkpoint best" in result.stderr


def test_after_divergence_last_holds_the_last_state_whose_loss_was_finite(tmp_path: Path) -> None:
    run = tmp_path / "run"
    # plain SGD at 1e3 on the housing prices: steps 1 and 2 finite, step 3 infinite; a checkpoint after every step
    result = dlcli("train", str(REPO / "specs" / "boston_regression.toml"), "--set",
                   'train.optimizer={type="sgd", learning_rate=1e3}', "--set", "train.checkpoint_every_steps=1",
                   "--run-dir", str(run), cwd=tmp_path)
    assert result.returncode == 5, result.stderr
    assert "the loss became inf at step 3" in result.stderr
    assert "rolled back to its previous state (epoch 0, step 1)" in result.stderr
    _, metadata = load_checkpoint(run / "checkpoints" / "last.safetensors")
    assert metadata["step"] == 1
    evaluated = dlcli("eval", str(run), "--checkpoint", "last", "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert isinstance(json.loads(evaluated.stdout)["loss"], float)  # JSON would say "Infinity"/"NaN" otherwise
    assert_run_consistent(run)


def test_after_divergence_with_no_good_state_saved_last_is_removed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = dlcli("train", str(REPO / "specs" / "boston_regression.toml"), "--set",
                   'train.optimizer={type="sgd", learning_rate=1e5}', "--set", "train.checkpoint_every_steps=1",
                   "--run-dir", str(run), cwd=tmp_path)
    assert result.returncode == 5
    assert "the loss became inf at step 2" in result.stderr and "last.safetensors was removed" in result.stderr
    assert not (run / "checkpoints" / "last.safetensors").exists()
    assert_run_consistent(run)


def test_sigint_leaves_a_consistent_run_at_every_stage(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = start("train", DIGITS, "--set", "train.epochs=3", "--run-dir", str(run), "--quiet", cwd=tmp_path,
                 DLCLI_TEST_PAUSE_STEP="0.01")
    wait_for(run / "checkpoints" / "best.safetensors")
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert_run_consistent(run)


@pytest.mark.parametrize("delay", [0.05, 0.6, 1.2, 2.0])
def test_an_overwrite_killed_at_any_moment_leaves_the_old_run_whole_and_the_folder_all_old_or_all_new(
        tmp_path: Path, delay: float) -> None:
    run = tmp_path / "run"
    assert dlcli("train", DIGITS, "--set", "train.epochs=1", "--run-dir", str(run), cwd=tmp_path).returncode == 0
    old = digests(run)
    old_id = json.loads((run / "run.json").read_text())["run_id"]
    proc = start("train", DIGITS, "--set", "train.epochs=2", "--set", "train.checkpoint_every_steps=3",
                 "--run-dir", str(run), "--overwrite", "--quiet", cwd=tmp_path, DLCLI_TEST_PAUSE_STEP="0.01")
    time.sleep(delay)
    proc.kill()
    proc.wait(timeout=30)
    asides = list(tmp_path.glob("run.replaced-*"))
    if not asides and json.loads((run / "run.json").read_text())["run_id"] == old_id:
        assert digests(run) == old  # killed before the rename: the old run is untouched in place
        return
    assert_run_consistent(run)
    if (run / "summary.json").exists():  # the new run finished (the machine was fast): only cleaning up was left
        assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2
        assert all(digests(aside) == old for aside in asides)
        return
    assert len(asides) == 1 and digests(asides[0]) == old  # the old run, whole, until the new one completes
    if not (run / "run.json").exists():  # killed after the rename, before the new run began: nothing of it yet
        assert not run.exists() or all(p.name == ".lock" for p in run.iterdir()), sorted(run.iterdir())
        return
    assert json.loads((run / "run.json").read_text())["run_id"] != old_id
    assert_run_consistent(run)
