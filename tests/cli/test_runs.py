"""dlcli runs and dlcli compare: listing runs with their status, and what differs between runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.runs_fixture import history, invoke, train, write_spec


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/slow (learning rate 0.01, 4 epochs) and runs/fast (0.05, 3 epochs), trained in that order."""
    folder = tmp_path_factory.mktemp("runs")
    spec = write_spec(folder)
    train(spec, folder / "runs" / "slow")
    train(spec, folder / "runs" / "fast", "--set", "train.optimizer.learning_rate=0.05", "--set", "train.epochs=3")
    return folder / "runs"


def _best(run: Path) -> tuple[float, int]:
    rows = history(run)
    best = min(rows, key=lambda row: row["val_loss"])
    return best["val_loss"], best["epoch"]


def test_runs_lists_status_epochs_best_value_time_and_start(runs: Path) -> None:
    result = invoke("runs", str(runs))
    assert result.exit_code == 0, result.output
    header, slow, fast = result.stdout.splitlines()
    assert header.split() == ["run", "status", "epochs", "best", "time", "started"]
    value, epoch = _best(runs / "slow")
    assert slow.split()[:4] == ["slow", "finished", "4/4", f"val_loss={value:.4g}"] and f"@{epoch}" in slow
    assert fast.split()[:3] == ["fast", "finished", "3/3"]  # started later: listed after slow


def test_runs_json_gives_one_record_per_run_and_sorts_by_best_first(runs: Path) -> None:
    result = invoke("runs", str(runs), "--json", "--sort", "best")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    values = {name: _best(runs / name) for name in ("slow", "fast")}
    assert [r["run"] for r in records] == sorted(values, key=lambda name: values[name][0])
    for record in records:
        assert record["event"] == "run" and record["status"] == "finished"
        assert (record["best"], record["best_epoch"]) == pytest.approx(values[record["run"]])
        assert record["monitor"] == "val_loss" and record["seconds"] >= 0
        assert record["run_id"] == json.loads((runs / record["run"] / "run.json").read_text())["run_id"]
    reverse = [json.loads(line)["run"] for line in invoke("runs", str(runs), "--json", "--sort", "name",
                                                           "--reverse").stdout.splitlines()]
    assert reverse == ["slow", "fast"]


def test_runs_of_an_empty_folder_and_a_missing_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke("runs", str(tmp_path)).stdout.strip() == f"no runs in {tmp_path}"
    # a folder that is not there, named by the user: a usage error (it was 4, a checkpoint error)
    missing = invoke("runs", str(tmp_path / "nope"))
    assert missing.exit_code == 2 and missing.stderr.startswith(f"error: {tmp_path / 'nope'}: no such folder")
    # no runs/ yet, where a new user first types `dlcli runs`: nothing to list, which is no error
    monkeypatch.chdir(tmp_path)
    fresh = invoke("runs")
    assert (fresh.exit_code, fresh.stdout, fresh.stderr) == (0, "no runs in runs (dlcli train puts them there)\n", "")
    assert (invoke("runs", "--json").exit_code, invoke("runs", "--json").stdout) == (0, "")


def test_runs_lists_the_runs_of_k_fold_folders_and_tune_studies_too(runs: Path, tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    shutil.copytree(runs / "slow", folder / "slow")
    shutil.copytree(runs / "fast", folder / "blobs-kfold" / "fold-1")  # what a K-fold folder and a study hold
    shutil.copytree(runs / "slow", folder / "blobs-tune" / "trial-0")
    (folder / "blobs-kfold" / "kfold.json").write_text("{}")
    result = invoke("runs", str(folder), "--sort", "name", "--json")
    assert result.exit_code == 0, result.output
    listed = [(record["run"], record["path"]) for record in map(json.loads, result.stdout.splitlines())]
    assert listed == [("blobs-kfold/fold-1", str(folder / "blobs-kfold" / "fold-1")),
                      ("blobs-tune/trial-0", str(folder / "blobs-tune" / "trial-0")), ("slow", str(folder / "slow"))]
    assert [line.split()[0] for line in invoke("runs", str(folder / "blobs-kfold")).stdout.splitlines()] == \
        ["run", "fold-1"]


def test_compare_prints_spec_differences_as_key_paths_then_final_and_best_metrics(runs: Path) -> None:
    result = invoke("compare", str(runs / "slow"), str(runs / "fast"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:3] == ["spec differences (slow -> fast):", "  train.epochs: 4 -> 3",
                         "  train.optimizer.learning_rate: 0.01 -> 0.05"]
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["run", "status", "epochs", "loss", "accuracy", "val_loss", "val_accuracy"]
    final = history(runs / "slow")[-1]
    assert table[1].split() == ["slow", "finished", "4/4", "final", *(f"{final[k]:.4g}" for k in
                                                                      ("loss", "accuracy", "val_loss", "val_accuracy"))]
    value, epoch = _best(runs / "slow")
    assert f"{value:.4g} @{epoch}" in table[2] and table[2].split()[0] == "best"


def test_compare_json_and_plot(runs: Path) -> None:
    record = json.loads(invoke("compare", str(runs / "slow"), str(runs / "fast"), "--json").stdout)
    assert record["differences"] == [{"key": "train.epochs", "values": [4, 3]},
                                     {"key": "train.optimizer.learning_rate", "values": [0.01, 0.05]}]
    assert record["metrics"][1]["final"]["loss"] == history(runs / "fast")[-1]["loss"]
    drawn = invoke("compare", str(runs / "slow"), str(runs / "fast"), "--plot").stdout
    assert "● slow loss" in drawn and "■ fast loss" in drawn and "□ fast val_loss" in drawn


def test_compare_needs_two_runs_and_real_run_directories(runs: Path, tmp_path: Path) -> None:
    one = invoke("compare", str(runs / "slow"))
    assert one.exit_code == 2 and "needs two runs or more" in one.stderr
    (tmp_path / "empty").mkdir()
    other = invoke("compare", str(runs / "slow"), str(tmp_path / "empty"))
    assert other.exit_code == 4 and "not a run directory" in other.stderr
