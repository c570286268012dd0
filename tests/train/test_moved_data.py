"""A run resumed after its workspace moved (a CI cache restored at another path): its data files are followed
to their new place when they hold the bytes the run recorded, and refused when they do not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from dlcli.cli import commands  # noqa: F401 - adds the subcommands to the group
from dlcli.cli.main import cli
from tests.train.test_fit import write_blobs

SPEC = """name = "moved"
seed = 4
[data]
train = "data/blobs.npz"
validation_split = 0.25
[model]
input = { shape = [2] }
[[model.layers]]
type = "dense"
units = 3
activation = "softmax"
[train]
loss = "sparse_categorical_crossentropy"
epochs = 1
batch_size = 32
"""


def _workspace(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    write_blobs(root / "data" / "blobs.npz")
    (root / "spec.toml").write_text(SPEC)
    return root


def _epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "history.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("form", ["run", "spec"])
def test_a_run_resumes_after_its_workspace_moved_when_the_data_is_the_same(tmp_path: Path, monkeypatch,
                                                                           form: str) -> None:
    old = _workspace(tmp_path / "old")
    monkeypatch.chdir(old)
    assert CliRunner().invoke(cli, ["train", "spec.toml", "--run-dir", "runs/m", "--quiet"]).exit_code == 0
    new = tmp_path / "new"
    shutil.move(old, new)
    monkeypatch.chdir(new)
    target = "runs/m" if form == "run" else "spec.toml"
    args = ["train", target, "--resume", "--set", "train.epochs=2"] + (["--run-dir", "runs/m"] if form == "spec" else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "same sha256" in result.output, result.output
    assert _epochs(new / "runs" / "m") == [1, 2]
    saved = json.loads((new / "runs" / "m" / "spec.json").read_text())
    assert saved["data"]["train"] == str(new / "data" / "blobs.npz")  # the next resume needs no following


@pytest.mark.parametrize("form", ["run", "spec"])
def test_a_moved_workspace_whose_data_changed_is_still_refused(tmp_path: Path, monkeypatch, form: str) -> None:
    old = _workspace(tmp_path / "old")
    monkeypatch.chdir(old)
    assert CliRunner().invoke(cli, ["train", "spec.toml", "--run-dir", "runs/m", "--quiet"]).exit_code == 0
    new = tmp_path / "new"
    shutil.move(old, new)
    write_blobs(new / "data" / "blobs.npz", seed=9)  # other examples at the same place
    monkeypatch.chdir(new)
    target = "runs/m" if form == "run" else "spec.toml"
    args = ["train", target, "--resume", "--set", "train.epochs=2"] + (["--run-dir", "runs/m"] if form == "spec" else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (2, 3), result.output  # spec: a changed data.train; run: its file is gone
    assert "data.train" in result.output and "Traceback" not in result.output, result.output
    assert _epochs(new / "runs" / "m") == [1]
