"""K-fold validation: folds that partition the training data, K ordinary run directories in a K-fold folder with
one summary (each value's mean and standard deviation), resuming fold by fold, and the keys it refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.cli import commands  # noqa: F401 - registers the subcommands
from dlcli.cli.main import cli
from dlcli.data import split_folds
from dlcli.errors import DataError
from dlcli.graph import build_model
from dlcli.spec.load import load_spec
from dlcli.train.datasets import load_splits
from dlcli.train.streams import Streams

SPEC = Path(__file__).resolve().parents[2] / "specs" / "boston_kfold.toml"


def test_folds_partition_the_examples_in_one_seeded_order() -> None:
    arrays = {"x": np.arange(10)}
    held = [split_folds(arrays, 4, fold, np.random.default_rng(5))[1]["x"] for fold in range(1, 5)]
    assert sorted(len(part) for part in held) == [2, 2, 3, 3]  # sizes differ by at most one
    assert sorted(np.concatenate(held).tolist()) == list(range(10))  # every example validates exactly once
    kept, part = split_folds(arrays, 4, 2, np.random.default_rng(5))
    assert sorted([*kept["x"], *part["x"]]) == list(range(10)) and not set(kept["x"]) & set(part["x"])
    with pytest.raises(DataError, match=r"the data holds 3 examples, fewer than the 4 folds"):
        split_folds({"x": np.arange(3)}, 4, 1, np.random.default_rng(0))


def test_each_fold_validates_on_its_own_quarter_of_boston() -> None:
    held = []
    for fold in range(1, 5):
        spec = load_spec(SPEC, [f"data.fold={fold}"])
        splits = load_splits(spec, build_model(spec.model, np.random.default_rng(0), spec), Streams(spec.seed).split)
        assert len(splits.train) == 303 and len(splits.validation) == 101 and len(splits.test) == 102
        held.append(splits.validation.inputs["input"])
    rows = np.concatenate(held)
    assert len(np.unique(rows, axis=0)) == 404  # the four validation parts are the 404 training examples


def _train(*args: str) -> object:
    return CliRunner().invoke(cli, ["train", str(SPEC), "--set", "train.epochs=2", *args])


def test_a_kfold_run_is_k_runs_and_one_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _train()
    assert result.exit_code == 0, result.output
    folder = tmp_path / "runs" / "boston-kfold"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == \
        ["fold-1", "fold-2", "fold-3", "fold-4", "kfold.json", "summary.json"]
    summary = json.loads((folder / "summary.json").read_text())
    finals = [json.loads((folder / f"fold-{i}" / "summary.json").read_text())["final"] for i in range(1, 5)]
    values = np.array([final["val_mae"] for final in finals])
    assert summary["mean"]["val_mae"] == pytest.approx(values.mean()) and summary["std"]["val_mae"] == \
        pytest.approx(values.std())
    assert summary["final"] == finals and summary["epochs_run"] == [2, 2, 2, 2]
    for i in range(1, 5):  # each fold is an ordinary run of the spec with data.fold = i
        assert json.loads((folder / f"fold-{i}" / "spec.json").read_text())["data"]["fold"] == i
    assert "4 folds in runs/boston-kfold" in result.output
    row = next(line for line in result.output.splitlines() if line.startswith("val_mae"))
    assert row.split()[-2:] == [f"{values.mean():.4g}", f"{values.std():.4g}"]
    again = _train("--json")  # a second K-fold run takes the next free folder, as a run does
    assert again.exit_code == 0 and (tmp_path / "runs" / "boston-kfold-2" / "summary.json").is_file()
    event = json.loads(again.output.splitlines()[-1])
    assert event["event"] == "folds" and event["run_dir"] == "runs/boston-kfold-2"


def test_resuming_a_kfold_folder_finishes_each_fold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _train().exit_code == 0
    folder = tmp_path / "runs" / "boston-kfold"
    fold_3 = json.loads((folder / "fold-3" / "run.json").read_text())["run_id"]
    for entry in (folder / "fold-4").iterdir():  # fold 4 stopped before its first checkpoint
        if entry.name not in ("run.json", "spec.json"):
            entry.unlink() if entry.is_file() else shutil.rmtree(entry)
    result = CliRunner().invoke(cli, ["train", "runs/boston-kfold", "--resume", "--set", "train.epochs=3"])
    assert result.exit_code == 0, result.output
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["epochs_run"] == [3, 3, 3, 3]
    assert json.loads((folder / "fold-3" / "run.json").read_text())["run_id"] == fold_3  # continued, not replaced
    assert "fold-4 had no checkpoint to resume; it was begun again" in result.output
    done = CliRunner().invoke(cli, ["train", str(SPEC), "--resume", "--set", "train.epochs=3"])
    assert done.exit_code == 0 and "nothing to do" in done.output


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "data.validation_split=0.2"], "folds holds out each fold in turn for validation"),
    (["--set", "data.fold=5"], "fold = 5 is past the 4 folds"),
    (["--workers", "2"], "the folds train one after another in one process"),
])
def test_keys_kfold_cannot_take_are_refused_before_anything_is_written(tmp_path: Path, args: list[str],
                                                                      message: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _train(*args)
    assert result.exit_code == 2 and message in result.output and not (tmp_path / "runs").exists()
