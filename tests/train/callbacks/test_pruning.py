"""The pruning callback with a real Optuna trial: each epoch reported, a pruned run stopped cleanly and marked."""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from dlcli.spec.load import load_spec
from dlcli.train.callbacks.pruning import PruneTrial
from dlcli.train.fit import fit_run

REPO = Path(__file__).resolve().parents[3]


def _trial(pruner: optuna.pruners.BasePruner) -> optuna.Trial:
    return optuna.create_study(direction="maximize", pruner=pruner).ask()


def test_a_pruned_trial_stops_after_the_epoch_and_keeps_its_run_directory_marked(tmp_path: Path) -> None:
    spec = load_spec(REPO / "specs" / "digits_mlp.toml", ["train.epochs=4", "train.steps_per_epoch=3"])
    trial = _trial(optuna.pruners.ThresholdPruner(lower=2.0))  # no accuracy reaches 2: pruned at the first epoch
    seen: list[tuple[int, float | None]] = []
    pruning = PruneTrial(trial, "val_accuracy", 4, on_epoch=lambda epoch, value: seen.append((epoch, value)))
    summary = fit_run(spec, tmp_path / "run", [pruning])
    assert pruning.pruned_at == 1 and [epoch for epoch, _ in seen] == [1]
    assert summary["stop_reason"] == "pruned" and summary["epochs_run"] == 1
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stop_reason"] == "pruned"
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").is_file()
    frozen = trial.study.trials[0]
    assert frozen.intermediate_values == {1: seen[0][1]}


def test_every_epoch_is_reported_and_the_last_is_never_pruned(tmp_path: Path) -> None:
    spec = load_spec(REPO / "specs" / "digits_mlp.toml", ["train.epochs=2", "train.steps_per_epoch=3"])
    # prunes from the second epoch on: that is the last one, so the run completes
    trial = _trial(optuna.pruners.ThresholdPruner(lower=2.0, n_warmup_steps=2))
    pruning = PruneTrial(trial, "val_accuracy", 2)
    summary = fit_run(spec, tmp_path / "run", [pruning])
    assert pruning.pruned_at is None and "stop_reason" not in summary and summary["epochs_run"] == 2
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert trial.study.trials[0].intermediate_values == {1: history[0]["val_accuracy"],
                                                         2: history[1]["val_accuracy"]}
