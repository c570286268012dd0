"""Issue 13 on the command line: one paragraph (or one JSON error event) and the right exit code, nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DIGITS = str(REPO / "specs" / "digits_mlp.toml")

TINY = '''name = "tiny"
seed = 3
[data]
train = "tiny.npz"
validation_split = 0.25
[model]
input = { shape = [2] }
[[model.layers]]
type = "dense"
units = 4
activation = "relu"
[[model.layers]]
type = "dense"
units = 1
[train]
loss = "mse"
optimizer = "rmsprop"
metrics = ["mae"]
epochs = 2
batch_size = 16
'''


def dlcli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`dlcli ARGS` in a subprocess, as CI runs it."""
    return subprocess.run([sys.executable, "-m", "dlcli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "CI": "true"})


def tiny_spec(folder: Path, text: str = TINY) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2)).astype(np.float32)
    np.savez(folder / "tiny.npz", x=x, y=x.sum(axis=1, keepdims=True).astype(np.float32))
    (folder / "tiny.toml").write_text(text)
    return str(folder / "tiny.toml")


def assert_one_paragraph(result: subprocess.CompletedProcess[str], code: int, start: str) -> None:
    """Exit `code` and a stderr that is exactly one line starting with `start`: no usage text, no warning."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stderr.startswith(start), result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr


def assert_json_error(result: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    """Exit `code`, exactly one JSON error event on stdout and the same one on stderr."""
    assert result.returncode == code, (result.returncode, result.stderr)
    record = {"event": "error", "exit_code": code, "message": message}
    assert [json.loads(line) for line in result.stdout.splitlines()] == [record], result.stdout
    assert [json.loads(line) for line in result.stderr.splitlines()] == [record], result.stderr


def test_usage_errors_in_json_mode_are_one_json_error_event(tmp_path: Path) -> None:
    (tmp_path / "somefile").write_text("not a folder")
    cases = {
        ("train", DIGITS, "--run-dir", "somefile", "--json"):
            "Invalid value for '--run-dir': Directory 'somefile' is a file. See 'dlcli train --help'.",
        ("train", "--json"): "Missing argument 'SPEC'. See 'dlcli train --help'.",
        ("train", DIGITS, "--workers", "0", "--json"):
            "Invalid value for '--workers': 0 is not in the range x>=1. See 'dlcli train --help'.",
        ("train", DIGITS, "--bogus", "--json"): "No such option '--bogus'. See 'dlcli train --help'.",
        ("--bogus", "train", DIGITS, "--json"): "No such option '--bogus'. See 'dlcli --help'.",
        ("frobnicate", "--json"): "No such command 'frobnicate'. See 'dlcli --help'.",
        ("eval", "run", "--checkpoint", "worst", "--json"):
            "Invalid value for '--checkpoint': 'worst' is not one of 'best', 'last'. See 'dlcli eval --help'.",
        ("predict", "run", "--json"): "Missing argument 'INPUT'. See 'dlcli predict --help'.",
    }
    for args, message in cases.items():
        assert_json_error(dlcli(*args, cwd=tmp_path), 2, message)
    assert not (tmp_path / "runs").exists()


def test_usage_errors_without_json_keep_clicks_usage_text(tmp_path: Path) -> None:
    result = dlcli("train", DIGITS, "--workers", "0", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("Usage: dlcli train [OPTIONS] SPEC") and "'--workers': 0" in result.stderr


def test_a_json_flag_after_a_double_dash_is_an_argument_not_the_mode(tmp_path: Path) -> None:
    result = dlcli("train", "--workers", "0", "--", "--json", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == "" and result.stderr.startswith("Usage:")


def test_thousands_of_nested_arrays_are_a_spec_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "deep.toml").write_text('name = "deep"\nfoo = ' + "[" * 5000 + "]" * 5000 + "\n")
    assert_one_paragraph(dlcli("validate", "deep.toml", cwd=tmp_path), 2,
                         "error: deep.toml: invalid TOML: arrays or inline tables are nested too deeply")
    assert_json_error(dlcli("train", "deep.toml", "--json", cwd=tmp_path), 2,
                      "deep.toml: invalid TOML: arrays or inline tables are nested too deeply (hundreds of "
                      "levels) to read; no spec needs more than a few")


def test_a_spec_with_a_byte_order_mark_validates(tmp_path: Path) -> None:
    (tmp_path / "bom.toml").write_bytes(b"\xef\xbb\xbf" + Path(DIGITS).read_bytes())
    result = dlcli("validate", "bom.toml", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "" and result.stdout.endswith("bom.toml: valid\n")


def test_learning_rate_override_on_an_optimizer_given_by_name_trains(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path)
    result = dlcli("train", spec, "--set", "train.optimizer.learning_rate=1e-2", "--run-dir", "run", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    saved = json.loads((tmp_path / "run" / "spec.json").read_text())["train"]["optimizer"]
    assert saved["type"] == "rmsprop" and saved["learning_rate"] == 1e-2


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_non_finite_learning_rate_is_a_spec_error_before_training(tmp_path: Path, value: str) -> None:
    spec = tiny_spec(tmp_path)
    result = dlcli("train", spec, "--set", f"train.optimizer.learning_rate={value}", "--run-dir", "run", cwd=tmp_path)
    assert_one_paragraph(result, 2, f"error: tiny.toml: train.optimizer.learning_rate: must be a finite number, "
                                    f"got {value}")
    assert not (tmp_path / "run").exists()


def test_a_diverging_run_says_one_paragraph_and_no_numpy_warning(tmp_path: Path) -> None:
    # one step an epoch: the step that blows the weights up is followed by validation, outside the loss check
    spec = tiny_spec(tmp_path, TINY.replace('optimizer = "rmsprop"', 'optimizer = { type = "sgd", learning_rate = '
                                                                     '1e12 }\nsteps_per_epoch = 1'))
    result = dlcli("train", spec, "--run-dir", "run", cwd=tmp_path)
    assert_one_paragraph(result, 5, "error: the loss became")
    json_result = dlcli("train", spec, "--run-dir", "run2", "--json", cwd=tmp_path)
    assert json_result.returncode == 5 and len(json_result.stderr.splitlines()) == 1, json_result.stderr
    assert json.loads(json_result.stderr)["exit_code"] == 5


def test_eval_and_predict_of_huge_inputs_print_no_numpy_warning(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path)
    assert dlcli("train", spec, "--run-dir", "run", cwd=tmp_path).returncode == 0
    huge = np.full((8, 2), 3e38, np.float32)
    np.save(tmp_path / "huge.npy", huge)
    np.savez(tmp_path / "huge.npz", x=huge, y=np.ones((8, 1), np.float32))
    predicted = dlcli("predict", "run", "huge.npy", cwd=tmp_path)
    assert predicted.returncode == 0 and predicted.stderr == "", predicted.stderr
    evaluated = dlcli("eval", "run", "--data", "huge.npz", cwd=tmp_path)
    assert evaluated.stderr == "" and evaluated.returncode == 0, evaluated.stderr


@pytest.mark.parametrize("args", [["list", "layers"], ["--help"], ["--version"]])  # the last two: eager options
def test_a_command_whose_output_cannot_be_written_exits_1_with_one_paragraph(tmp_path: Path, args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "dlcli", *args], stdout=full, stderr=subprocess.PIPE,
                                text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert result.stderr == "error: cannot write the output: stdout is not writable (No space left on device)\n"


def test_a_reader_that_leaves_early_ends_a_listing_quietly(tmp_path: Path) -> None:
    result = subprocess.run(f"{sys.executable} -m dlcli list | head -1; exit ${{PIPESTATUS[0]}}", shell=True,
                            executable="/bin/bash", capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and result.stdout == "layers:\n" and result.stderr == ""


def test_validate_checks_monitored_names_against_what_the_run_reports(tmp_path: Path) -> None:
    result = dlcli("validate", DIGITS, "--set", 'train.callbacks=[{ type = "early_stopping", monitor = "val_acc" }]',
                   cwd=tmp_path)
    assert_one_paragraph(result, 2, "error: digits_mlp.toml: train.callbacks[0].monitor: 'val_acc' is not reported; "
                                    "the run reports loss, accuracy, val_loss, val_accuracy, seconds, learning_rate "
                                    "(did you mean val_accuracy?)")


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder no file can be made in: one without write permission, or /sys for root, whom permissions do not
    stop (sysfs refuses new files to anyone)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_an_output_file_that_cannot_be_written_is_a_usage_error(tmp_path: Path, as_json: bool) -> None:
    """exit 2, as for any other --output the command cannot write (a missing folder, an unknown suffix): not 4,
    the checkpoint's code, and never a traceback."""
    assert dlcli("train", tiny_spec(tmp_path), "--run-dir", "run", cwd=tmp_path).returncode == 0
    np.save(tmp_path / "x.npy", np.zeros((3, 2), np.float32))
    output = unwritable_folder(tmp_path) / "p.csv"
    result = dlcli("predict", "run", "x.npy", "--output", str(output), *(["--json"] if as_json else []), cwd=tmp_path)
    message = f"cannot write {output}: Permission denied; check that the folder exists, is writable and has free space"
    if as_json:
        assert_json_error(result, 2, message)
    else:
        assert_one_paragraph(result, 2, f"error: {message}")
    assert not output.exists()
