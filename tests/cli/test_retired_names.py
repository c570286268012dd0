"""A retired name in a spec: the run goes on, and the user reads one line saying what to write instead."""

from __future__ import annotations

from pathlib import Path

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
