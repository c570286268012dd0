"""`dlcli train --resume`: which spec changes a checkpoint can follow, and what a resume does with the run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlcli.errors import SpecError
from dlcli.train.resume import resume_run
from tests.train import faults
from tests.train.run_invariants import assert_run_consistent
from tests.train.test_fit import fit, spec_doc, write_blobs
from tests.train.test_interrupts import digest

DIGITS = Path(__file__).resolve().parents[2] / "specs" / "digits_mlp.toml"


@pytest.fixture
def blobs_run(tmp_path: Path) -> Path:
    """A finished 1-epoch run on the blobs (validation_split 0.25, monitor val_loss)."""
    fit(spec_doc(write_blobs(tmp_path / "blobs.npz"), epochs=1), tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize("override,key", [
    ("data.validation_split=0.5", "data.validation_split: 0.25 -> 0.5"),  # validating on examples it trained on
    ("data.validation_split=0.0", "data.validation_split: 0.25 -> 0.0"),  # best would follow loss, not val_loss
    ('train.monitor_mode="max"', "train.monitor_mode: 'auto' -> 'max'"),  # best compared the other way round
])
def test_resume_refuses_keys_that_only_start_like_a_safe_one(blobs_run: Path, override: str, key: str) -> None:
    before = (blobs_run / "checkpoints" / "best.safetensors").read_bytes()
    with pytest.raises(SpecError) as info:
        resume_run(blobs_run, ("train.epochs=2", override), None, [])
    assert info.value.exit_code == 2
    assert f"cannot resume {blobs_run}: the spec changed in ways its checkpoint cannot follow: {key}" \
        == str(info.value)
    assert (blobs_run / "checkpoints" / "best.safetensors").read_bytes() == before


def test_resume_refuses_a_changed_validation_split_in_the_edited_spec_file(blobs_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "blobs.npz"
    edited = tmp_path / "blobs.toml"
    edited.write_text(f'name = "blobs"\nseed = 5\n[data]\ntrain = "{data}"\nvalidation_split = 0.1\n[model]\n'
                      'input = { shape = [2] }\n[[model.layers]]\ntype = "dense"\nunits = 16\nactivation = "relu"\n'
                      '[[model.layers]]\ntype = "dropout"\nrate = 0.2\n[[model.layers]]\ntype = "dense"\nunits = 3\n'
                      'activation = "softmax"\n[train]\nloss = "sparse_categorical_crossentropy"\n'
                      'optimizer = { type = "adam", learning_rate = 0.01 }\nmetrics = ["accuracy"]\nepochs = 2\n'
                      'batch_size = 16\n')
    with pytest.raises(SpecError, match=r"data\.validation_split: 0\.25 -> 0\.1$"):
        resume_run(edited, (), blobs_run, [])


def test_resume_still_follows_the_safe_keys(blobs_run: Path) -> None:
    notes: list[str] = []
    summary = resume_run(blobs_run, ("train.epochs=2", 'description="longer"'),
                         None, [], notes)
    assert summary is not None and summary["epochs_run"] == 2 and notes == []


# --- a run stopped before its first checkpoint --------------------------------------------------------------------

def _dlcli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dlcli", *args], env=faults.env(CI="true", **env),
                          capture_output=True, text=True, timeout=300)


ONE_EPOCH = (str(DIGITS), "--set", "train.epochs=1")


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The digest of the digits MLP's one epoch, trained without a stop."""
    run = tmp_path_factory.mktemp("straight") / "run"
    assert _dlcli("train", *ONE_EPOCH, "--run-dir", str(run)).returncode == 0
    return digest(run / "checkpoints" / "last.safetensors")


def _stop_while_writing(run: Path, name: str, occurrence: int, signum: int) -> tuple[int, str]:
    """Start training into `run`, holding every file write half done, and send `signum` while the
    `occurrence`-th write of `name` is held (run.json: 1 is the first, 2 its rewrite with the environment and
    the data's sha256); returns the exit status and stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "dlcli", "train", *ONE_EPOCH, "--run-dir", str(run), "--quiet"],
                            env=faults.env(CI="true", DLCLI_TEST_PAUSE_WRITE="0.5"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (list(run.glob(f".{name}.tmp-*")) and (occurrence == 1 or (run / name).exists())):
        assert time.monotonic() < deadline and proc.poll() is None, f"no held write of {name}"
        time.sleep(0.002)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    return proc.returncode, err


# SIGTERM (a CI runner's timeout) at every moment; SIGINT where it differs from SIGTERM (once the run has begun),
# SIGKILL where only it can stop a write in the middle: the whole 3 x 3 matrix cost the suite about 30 s more
@pytest.mark.parametrize("signum,name,occurrence", [
    (signal.SIGTERM, "spec.json", 1), (signal.SIGTERM, "run.json", 1), (signal.SIGTERM, "run.json", 2),
    (signal.SIGINT, "run.json", 2), (signal.SIGKILL, "spec.json", 1),
], ids=["TERM-spec.json", "TERM-run.json", "TERM-run.json-described", "INT-run.json-described", "KILL-spec.json"])
def test_a_run_stopped_before_its_first_checkpoint_resumes_by_beginning_again(tmp_path: Path, straight: str,
                                                                             name: str, occurrence: int,
                                                                             signum: int) -> None:
    """Such a run could be neither resumed (no last checkpoint: exit 4) nor trained again (its folder holds files:
    exit 2, advising --resume); run.json still said "running" after Ctrl-C, and a SIGTERM's half-written temporary
    file alone blocked a new run. Whatever a stop leaves, the advice it gets works, and the run ends as one never
    stopped."""
    run = tmp_path / "run"
    code, err = _stop_while_writing(run, name, occurrence, signum)
    if signum == signal.SIGKILL:
        assert code == -signum
    elif occurrence == 1:  # SIGINT and SIGTERM wait for spec.json and run.json to be whole, then stop the run
        assert code == -signum and err == (f"error: stopped by {signal.Signals(signum).name} as the run began, "
                                           f"before its first checkpoint; continue with: dlcli train {run} --resume "
                                           "(it begins again)\n")
    else:  # later, the run has begun: the signal stops it at a checkpoint (at its first step), as in training
        # a shell sees 130 or 143 either way: death by the signal, or SIGINT's exit 130 after the checkpoint
        assert code in ((130, -signum) if signum == signal.SIGINT else (-signum,)), err
    at_a_checkpoint = signum != signal.SIGKILL and occurrence == 2
    assert bool(list(run.glob("checkpoints/*.safetensors"))) == at_a_checkpoint
    if signum != signal.SIGKILL and (signum == signal.SIGINT or occurrence == 1):
        assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    began = (run / "spec.json").exists()
    assert began == (signum != signal.SIGKILL or name != "spec.json")  # only a kill can stop a write in the middle
    fresh = _dlcli("train", *ONE_EPOCH, "--run-dir", str(run))
    if began:  # a new run is refused, and the advice is to resume it
        assert fresh.returncode == 2 and f"dlcli train {run} --resume" in fresh.stderr, fresh.stderr
        resumed = _dlcli("train", str(run), "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert (f"note: {run} was stopped before its first checkpoint, so nothing in it can be resumed: it was "
                "begun again" in resumed.stderr) != at_a_checkpoint
    else:  # a stop before spec.json is complete leaves at most a temporary file: nothing that blocks a new run
        assert fresh.returncode == 0, fresh.stderr
    assert digest(run / "checkpoints" / "last.safetensors") == straight
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert_run_consistent(run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "the stopped start is deleted once the run ends"
    assert not list(run.rglob(".*.tmp-*"))


def test_beginning_again_an_overwrite_stopped_before_its_first_checkpoint_deletes_both_old_folders(
        tmp_path: Path, straight: str) -> None:
    """--overwrite keeps the old run aside until the new one finishes; when the new one is stopped before its first
    checkpoint and begun again, the finished run deletes the stopped start and the run it was replacing."""
    run = tmp_path / "run"
    assert _dlcli("train", *ONE_EPOCH, "--set", "seed=1", "--run-dir", str(run)).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "dlcli", "train", *ONE_EPOCH, "--run-dir", str(run), "--overwrite"],
                            env=faults.env(CI="true", DLCLI_TEST_PAUSE_STEP="0.05"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    # the new run began (the old one aside, its own run.json written): its first checkpoint is a second of steps away
    while not (list(tmp_path.glob("run.replaced-*")) and (run / "run.json").exists()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.002)
    proc.kill()
    proc.wait(timeout=60)
    assert not (run / "checkpoints" / "last.safetensors").exists()
    assert len(list(tmp_path.glob("run.replaced-*"))) == 1  # the seed=1 run, kept until the new run finishes
    resumed = _dlcli("train", str(run), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert digest(run / "checkpoints" / "last.safetensors") == straight
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("kept", ["best", "none"])
def test_a_run_that_trained_and_lost_its_last_checkpoint_is_not_begun_again(tmp_path: Path, kept: str) -> None:
    # only a run that never reached a checkpoint begins again: one whose last is gone (deleted, or rolled back
    # after a divergence) kept its history and maybe best, which beginning again moved aside and deleted (exit 0)
    run = tmp_path / "run"
    assert _dlcli("train", *ONE_EPOCH, "--run-dir", str(run)).returncode == 0
    for path in (run / "checkpoints").glob("*.safetensors"):
        if path.stem != kept:
            path.unlink()
    resumed = _dlcli("train", str(run), "--resume", "--set", "train.epochs=2")
    has = "checkpoints best" if kept == "best" else "a history of trained epochs"
    assert resumed.returncode == 4 and f"{run}: nothing to resume: it has no last checkpoint, but it trained (it " \
                                       f"has {has})" in resumed.stderr, resumed.stderr
    assert (run / "history.jsonl").read_text() and not list(tmp_path.glob("run.*"))  # nothing moved aside
