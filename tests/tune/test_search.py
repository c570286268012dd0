"""dlcli tune end to end, in this process: the issue's small study of the digits spec, its best.toml, running it
again, its report, refusals, and trials whose sampled spec is invalid."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dlcli.cli import commands  # noqa: F401 - adds the subcommands
from dlcli.cli.main import cli

REPO = Path(__file__).resolve().parents[2]
DIGITS = str(REPO / "specs" / "digits_mlp.toml")
SPACE = ("--param", "train.optimizer.learning_rate=loguniform(1e-4, 1e-2)",
         "--param", "model.layers[1].units=int(16, 128, log)")
SMALL = ("--set", "train.epochs=3", *SPACE, "--metric", "val_accuracy", "--trials", "8", "--sampler", "tpe",
         "--pruner", "median")


def run(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    """`dlcli ARGS --json` in this process: exit code, events, stderr."""
    result = CliRunner().invoke(cli, [*args, "--json"])
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, events, result.stderr


def best_epoch(events: list[dict[str, Any]], metric: str = "val_accuracy") -> float:
    """A training run's best epoch value of `metric`, as a trial is scored."""
    return max(e[metric] for e in events if e["event"] == "epoch")


@pytest.fixture(scope="module")
def small_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The issue's small tune: 8 trials of the digits spec, 3 epochs each, TPE, median pruner."""
    folder = tmp_path_factory.mktemp("tune")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        code, events, stderr = run("tune", DIGITS, *SMALL)
        assert code == 0, stderr
        default_code, default_events, stderr = run("train", DIGITS, "--set", "train.epochs=3")
        assert default_code == 0, stderr
    return {"folder": folder, "events": events, "default": best_epoch(default_events)}


def _ends(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "trial_end"]


def test_the_small_study_runs_each_trial_once_and_keeps_its_run_directory(small_study: dict[str, Any]) -> None:
    events, folder = small_study["events"], small_study["folder"]
    ends = _ends(events)
    assert sorted(e["number"] for e in ends) == list(range(8))
    summary = events[-1]
    assert summary["event"] == "study_end" and summary["trials"] == 8
    assert summary["complete"] + summary["pruned"] + summary["fail"] == 8 and summary["fail"] == 0
    for end in ends:
        run_dir = folder / "runs" / "digits-mlp-tune" / f"trial-{end['number']}"
        assert Path(end["run_dir"]) == run_dir and (run_dir / "checkpoints" / "last.safetensors").is_file()
        spec = json.loads((run_dir / "spec.json").read_text())
        assert spec["model"]["layers"][1]["units"] == end["params"]["model.layers[1].units"]
        assert spec["train"]["optimizer"]["learning_rate"] == end["params"]["train.optimizer.learning_rate"]
        stop = json.loads((run_dir / "summary.json").read_text()).get("stop_reason")
        assert stop == ("pruned" if end["state"] == "pruned" else None)  # a pruned trial is marked so
        history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
        if end["state"] == "complete":  # its value is its best epoch's
            assert end["value"] == max(row["val_accuracy"] for row in history) and len(history) == 3


def test_trial_0_is_the_spec_itself_so_the_best_is_at_least_the_default_run(small_study: dict[str, Any]) -> None:
    ends = {e["number"]: e for e in _ends(small_study["events"])}
    assert ends[0]["params"] == {"train.optimizer.learning_rate": 0.003, "model.layers[1].units": 64}
    assert ends[0]["value"] == small_study["default"]  # the same seed and spec: the same run
    best = small_study["events"][-1]["best"]
    assert best["value"] >= small_study["default"]
    assert best["value"] == max(e["value"] for e in ends.values() if e["state"] == "complete")


def test_best_toml_trains_to_the_best_value_again(small_study: dict[str, Any], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    summary = small_study["events"][-1]
    path = Path(summary["best_toml"])
    document = tomllib.loads(path.read_text())
    assert "tune" not in document and document["train"]["epochs"] == 3
    assert document["model"]["layers"][1]["units"] == summary["best"]["params"]["model.layers[1].units"]
    assert path.read_text().startswith(f"# Written by dlcli tune: the best of 8 trials of study 'digits-mlp'")
    monkeypatch.chdir(tmp_path)
    code, events, stderr = run("train", str(path))
    assert code == 0, stderr
    assert best_epoch(events) == summary["best"]["value"]


def test_the_same_command_again_finds_the_study_done(small_study: dict[str, Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(small_study["folder"])
    code, events, stderr = run("tune", DIGITS, *SMALL)
    assert code == 0, stderr
    assert not [e for e in events if e["event"] == "trial_start"]
    assert len(events[0]["rows"]) == 8 and events[-1]["best"] == small_study["events"][-1]["best"]


def test_the_report_prints_the_trials_again_with_importances(small_study: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(small_study["folder"])
    code, events, stderr = run("tune", "--report", "runs/digits-mlp-tune")
    assert code == 0, stderr
    (report,) = events
    assert [row["number"] for row in report["rows"]] == list(range(8))
    assert report["best"] == small_study["events"][-1]["best"]
    assert set(report["importances"]) == {"train.optimizer.learning_rate", "model.layers[1].units"}
    assert sum(report["importances"].values()) == pytest.approx(1.0)
    plain = CliRunner().invoke(cli, ["tune", "--report", "runs/digits-mlp-tune"])
    assert plain.exit_code == 0 and plain.stdout.count("\ntrial=") == 8
    assert "importance param=train.optimizer.learning_rate value=" in plain.stdout


def test_another_search_in_the_same_study_folder_is_refused(small_study: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(small_study["folder"])
    code, events, _ = run("tune", DIGITS, "--set", "train.epochs=3", "--param", "model.layers[1].units=int(8, 32)",
                          "--metric", "val_accuracy")
    assert code == 2
    message = events[-1]["message"]
    assert "is a search with other settings: the search space" in message
    assert "give --study-dir DIR (or --study-name NAME)" in message


def test_sampled_specs_that_are_invalid_fail_their_trial_with_the_reason(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    one_cycle = '{ schedule = "one_cycle", max_learning_rate = 0.01, total_steps = 50 }'
    code, events, stderr = run("tune", DIGITS, "--set", "train.epochs=1", "--set",
                               f"train.optimizer.learning_rate={one_cycle}", "--param",
                               'train.optimizer.type=choice("adam", "adagrad")', "--param",
                               "model.layers[1].units=choice(0, 8)", "--sampler", "grid", "--trials", "10")
    assert code == 0, stderr
    assert events[0]["trials"] == 4 and "the grid has 4 points" in events[0]["notes"][0]
    ends = {(e["params"]["train.optimizer.type"], e["params"]["model.layers[1].units"]): e for e in _ends(events)}
    assert ends[("adam", 8)]["state"] == "complete"
    assert ends[("adam", 0)]["state"] == "fail"
    assert "model.layers[1].units: must be a positive integer, got 0" in ends[("adam", 0)]["reason"]
    assert ends[("adagrad", 8)]["state"] == "fail"  # a combination: one_cycle cycles a momentum adagrad lacks
    assert "adagrad has none" in ends[("adagrad", 8)]["reason"]
    assert not (tmp_path / "runs" / "digits-mlp-tune" / f"trial-{ends[('adam', 0)]['number']}").exists()
    assert events[-1]["fail"] == 3 and events[-1]["best"]["params"]["train.optimizer.type"] == "adam"


def test_a_study_where_no_trial_completes_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, events, _ = run("tune", DIGITS, "--param", "model.layers[1].units=choice(0, -1)", "--sampler", "random",
                          "--trials", "2")
    assert code == 2 and events[-2]["event"] == "study_end" and events[-2]["fail"] == 2
    assert "no trial of study 'digits-mlp' completed (0 pruned, 2 failed)" in events[-1]["message"]
    assert not (tmp_path / "runs" / "digits-mlp-tune" / "best.toml").exists()


@pytest.mark.parametrize("args,message", [
    ((DIGITS, *SPACE, "--metric", "val_acuracy"), "--metric: 'val_acuracy' is not reported; the run reports "
                                                  "loss, accuracy, val_loss, val_accuracy, seconds, learning_rate "
                                                  "(did you mean val_accuracy?)"),
    ((DIGITS, "--param", "model.layers[1].unit=int(8, 9)"), r"--param model.layers[1].unit: not a key of the spec"),
    ((DIGITS, "--param", "model.layers[1].units=int(9, 8)"), "--param model.layers[1].units: int(9, 8): LOW must be "
                                                             "below HIGH"),
    ((DIGITS, "--param", "model.layers[1].units=uniform(2.5, 8.5)"),
     "--param model.layers[1].units: uniform(2.5, 8.5) draws numbers with a fraction, and the key takes an integer"),
    ((DIGITS,), "nothing to tune: give --param KEY=DISTRIBUTION"),
    ((DIGITS, *SPACE, "--sampler", "grid"), "--sampler grid: train.optimizer.learning_rate = loguniform(1e-4, "
                                            "1e-2) is a float range"),
    ((), "give SPEC to tune, or --report DIR to print a study"),
    (("--report", "nowhere"), "nowhere: no study.db here"),
    ((DIGITS, "--report", "nowhere"), "--report prints a study that exists; give no SPEC with it"),
])
def test_mistakes_exit_2_before_any_trial(args: tuple[str, ...], message: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, events, _ = run("tune", *args)
    assert code == 2 and events[-1]["event"] == "error"
    assert message in events[-1]["message"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("table,message", [
    ('"train.optimizer.learnin_rate" = "loguniform(1e-3, 1)"',
     'tt.toml: tune.params."train.optimizer.learnin_rate": not a key of the spec'),
    ('"model.layers[5].units" = "int(8, 64)"', 'tt.toml: tune.params."model.layers[5].units": model.layers[5] does '
                                               'not exist'),
    ('"train.optimizer.learning_rate" = "loguniform(1e-3, 0)"',
     'tt.toml: tune.params."train.optimizer.learning_rate": loguniform(1e-3, 0): LOW must be below HIGH'),
    ('"model.layers[x]" = "int(1, 2)"', 'tt.toml: tune.params."model.layers[x]": not a key path'),
])
def test_a_mistake_in_the_tune_table_names_the_spec_file_and_the_key_as_written(
        table: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tt.toml").write_text(Path(DIGITS).read_text() + f"\n[tune.params]\n{table}\n")
    code, events, _ = run("tune", "tt.toml")
    assert code == 2 and events[-1]["event"] == "error"
    assert events[-1]["message"].startswith(message), events[-1]["message"]  # not "--param ...": none was given
    assert not (tmp_path / "runs").exists()


def test_without_optuna_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "optuna", None)  # what an environment without the extra has
    code, events, _ = run("tune", DIGITS, *SPACE)
    assert code == 2
    assert events[-1]["message"] == "dlcli tune needs Optuna, which is not installed: pip install 'dlcli[tune]'"
