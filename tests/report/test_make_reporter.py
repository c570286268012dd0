"""make_reporter: which reporter each --output choice, terminal and CI setting gets."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from dlcli.report import JsonRecords, PlainRecords, Reporter, make_reporter
from dlcli.report.progress import RichProgress
from tests.report.scripted import replay


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_auto_on_a_terminal_outside_ci_is_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    reporter = make_reporter("auto", FakeTerminal())
    assert isinstance(reporter, RichProgress)
    reporter.close()


def test_auto_with_ci_set_to_empty_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "")
    assert isinstance(make_reporter("auto", FakeTerminal()), RichProgress)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_auto_in_ci_is_plain_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    assert type(make_reporter("auto", FakeTerminal())) is PlainRecords


def test_auto_on_a_pipe_is_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    stream = io.StringIO()
    reporter = make_reporter("auto", stream)
    assert type(reporter) is PlainRecords and reporter.stream is stream


def test_auto_defaults_to_stdout(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CI", raising=False)
    reporter = make_reporter("auto")  # pytest's captured stdout is not a terminal
    assert type(reporter) is PlainRecords
    reporter.on_checkpoint(None, "a.safetensors", "best")
    assert capsys.readouterr().out == "checkpoint kind=best path=a.safetensors\n"


def test_explicit_choices_ignore_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert type(make_reporter("plain", FakeTerminal())) is PlainRecords
    assert type(make_reporter("json", FakeTerminal())) is JsonRecords


def test_quiet_prints_nothing_at_all() -> None:
    stream = FakeTerminal()
    reporter = make_reporter("quiet", stream)
    assert type(reporter) is Reporter
    with reporter:
        replay(reporter)
    assert stream.getvalue() == ""


def test_unknown_output_is_a_bug() -> None:
    with pytest.raises(ValueError, match="auto, plain, json, quiet"):
        make_reporter("fancy")


def test_importing_report_does_not_import_rich() -> None:
    code = "import sys, dlcli.report; print('rich' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
