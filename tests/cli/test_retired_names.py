"""A retired name in a spec: the run goes on, and the user reads one line saying what to write instead."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli import metrics, registry  # noqa: F401 - metrics registers "accuracy", whichever test runs first
from dlcli.cli import commands  # noqa: F401 - registers the subcommands
from dlcli.cli.main import cli
from dlcli.registry import Entry

DIGITS = Path(__file__).resolve().parents[2] / "specs" / "digits_mlp.toml"


def test_a_retired_metric_name_validates_with_one_warning_line(monkeypatch: pytest.MonkeyPatch) -> None:
    accuracy = registry.metrics.entry("accuracy")
    retired = Entry("old_accuracy", accuracy.target, accuracy.spec, accuracy.doc, "accuracy", retired=True)
    monkeypatch.setitem(registry.metrics._entries, "old_accuracy", retired)
    monkeypatch.setattr(registry.metrics, "_warned", set())
    result = CliRunner().invoke(cli, ["validate", str(DIGITS), "--set", 'train.metrics=["old_accuracy"]'])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert notes == ["warning: metric 'old_accuracy' is a retired name; write 'accuracy', which means the same "
                     "(the old name keeps working)"]
    assert "registry.py" not in result.stderr  # not Python's report with a file and a line


def test_a_synonym_validates_silently() -> None:
    result = CliRunner().invoke(cli, ["validate", str(DIGITS), "--set", 'train.metrics=["acc"]'])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


BINARY = Path(__file__).resolve().parents[2] / "specs" / "breast_cancer_binary.toml"


def test_precision_and_recall_take_keras_thresholds_and_the_old_threshold_with_one_warning_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Keras 3's Precision and Recall name the key `thresholds`; dlcli named it `threshold` and refused thresholds
    monkeypatch.setattr(registry, "_warned_keys", set())
    keras = CliRunner().invoke(cli, ["validate", str(BINARY), "--set",
                                     'train.metrics=[{ type = "precision", thresholds = 0.7 }]'])
    assert keras.exit_code == 0, keras.output
    assert "warning" not in keras.stderr
    old = CliRunner().invoke(cli, ["validate", str(BINARY), "--set",
                                   'train.metrics=[{ type = "recall", threshold = 0.7 }]'])
    assert old.exit_code == 0, old.output
    assert [line for line in old.stderr.splitlines() if line.startswith("warning:")] == [
        "warning: recall's key 'threshold' is a retired name; write 'thresholds', which means the same (the old "
        "name keeps working)"]
    both = CliRunner().invoke(cli, ["validate", str(BINARY), "--set",
                                    'train.metrics=[{ type = "recall", threshold = 0.7, thresholds = 0.7 }]'])
    assert both.exit_code == 2 and "give thresholds only (threshold is its retired name)" in both.stderr
    # Keras' thresholds also takes a list, giving one value each; dlcli's metric reports one value: a number only
    listed = CliRunner().invoke(cli, ["validate", str(BINARY), "--set",
                                      'train.metrics=[{ type = "precision", thresholds = [0.3, 0.7] }]'])
    assert listed.exit_code == 2 and "train.metrics[0]: thresholds: one number, e.g. thresholds = 0.5: this metric " \
                                     "reports one value, so Keras' list of thresholds is not taken" in listed.stderr


def test_the_old_threshold_key_counts_as_thresholds_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from dlcli.metrics import create_metric

    monkeypatch.setattr(registry, "_warned_keys", set())
    y_pred, y_true = np.array([[0.9], [0.6], [0.3]], np.float32), np.array([[1], [0], [1]])
    for key in ("threshold", "thresholds"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            metric = create_metric({"type": "precision", key: 0.7})
        assert [str(w.message).split(";")[0] for w in caught] == \
            (["precision's key 'threshold' is a retired name"] if key == "threshold" else [])
        metric.update(y_pred, y_true)
        assert metric.spec.thresholds == 0.7 and metric.result() == 1.0  # 0.6 is below 0.7: no false positive
