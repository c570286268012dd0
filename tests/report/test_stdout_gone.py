"""When stdout goes away (full device, closed descriptor, a reader that left), output stops and training goes on."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dlcli.report import JsonRecords, PlainRecords
from dlcli.report.progress import RichProgress
from dlcli.report.stream import GuardedStream, OutputGoneError, guarded
from tests.cli.test_robust_cli import TINY, tiny_spec
from tests.report.scripted import replay

FULL_NOTE = "note: stdout is not writable (No space left on device); training goes on, output stops\n"
CLOSED_NOTE = "note: stdout is not writable (Bad file descriptor); training goes on, output stops\n"


class FailingStream(io.StringIO):
    """A text stream whose writes succeed `good` times, then fail with `code` (and so does flush)."""

    def __init__(self, code: int = errno.ENOSPC, good: int = 0) -> None:
        super().__init__()
        self.code, self.good, self.attempts = code, good, 0

    def write(self, text: str) -> int:
        self.attempts += 1
        if self.attempts > self.good:
            raise OSError(self.code, os.strerror(self.code))
        return super().write(text)


def test_a_lenient_stream_notes_the_first_failure_once_and_drops_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    inner = FailingStream(good=1)
    stream = GuardedStream(inner)
    for line in ("one\n", "two\n", "three\n"):
        stream.write(line)
        stream.flush()
    assert inner.getvalue() == "one\n" and inner.attempts == 2  # nothing is tried after the failure
    assert isinstance(stream.error, OSError) and stream.error.errno == errno.ENOSPC
    assert capsys.readouterr().err == FULL_NOTE


def test_a_strict_stream_raises_once_then_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    stream = GuardedStream(FailingStream(errno.EPIPE), strict=True)
    with pytest.raises(OutputGoneError) as caught:
        stream.write("x")
    assert caught.value.errno == errno.EPIPE
    stream.write("y")
    stream.flush()
    assert capsys.readouterr().err == ""


def test_a_closed_stdout_is_a_bad_file_descriptor(capsys: pytest.CaptureFixture[str]) -> None:
    stream = GuardedStream(None)
    stream.write("x")
    assert stream.error is not None and stream.error.errno == errno.EBADF and not stream.isatty()
    assert capsys.readouterr().err == CLOSED_NOTE


def test_a_lenient_guard_over_a_strict_one_notes_even_when_the_strict_raise_was_swallowed(
        capsys: pytest.CaptureFixture[str]) -> None:
    strict = GuardedStream(FailingStream(), strict=True)
    try:
        strict.write("probe")  # e.g. a library that tries a write and ignores what it raises
    except OSError:
        pass
    lenient = guarded(strict)
    assert lenient is not strict
    lenient.write("epoch line\n")
    assert lenient.error is not None and capsys.readouterr().err == FULL_NOTE
    assert guarded(lenient) is lenient  # one guard per reporter, not a stack of them


def test_probes_with_bytes_or_empty_text_do_not_count_as_failures() -> None:
    stream = GuardedStream(None, strict=True)
    with pytest.raises(TypeError):
        stream.write(b"")  # type: ignore[arg-type]
    assert stream.write("") == 0 and stream.error is None


def test_a_failed_file_is_pointed_at_devnull_so_closing_it_does_not_fail() -> None:
    full = open("/dev/full", "w")  # noqa: SIM115 - closed below, which is the point of the test
    stream = GuardedStream(full, strict=True)
    with pytest.raises(OutputGoneError):
        stream.write("x" * 100_000)  # larger than the buffer: the write itself fails
    full.write("still buffered")
    full.close()  # flushes into /dev/null now, instead of raising ENOSPC


@pytest.mark.parametrize("make", [PlainRecords, JsonRecords,
                                  lambda s: RichProgress(Console(file=s, force_terminal=True, width=100))],
                         ids=["plain", "json", "rich"])
def test_every_reporter_survives_a_stream_that_fails_mid_run(make: Any, capsys: pytest.CaptureFixture[str]) -> None:
    reporter = make(FailingStream(good=1))
    replay(reporter)  # no exception reaches the training loop
    reporter.close()
    assert capsys.readouterr().err == FULL_NOTE


# the command line, in a subprocess: the run directory must be complete and the exit code 0


def _train(folder: Path, extra: list[str], **popen: Any) -> subprocess.CompletedProcess[str]:
    spec = tiny_spec(folder)
    return subprocess.run([sys.executable, "-m", "dlcli", "train", spec, "--run-dir", "run", *extra], cwd=folder,
                          stderr=subprocess.PIPE, text=True, timeout=300, env={**os.environ, "CI": "true"}, **popen)


def _assert_complete_run(folder: Path, epochs: int = 2) -> None:
    run = folder / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == epochs
    assert len((run / "history.jsonl").read_text().splitlines()) == epochs
    assert len((run / "history.csv").read_text().splitlines()) == epochs + 1
    assert (run / "checkpoints" / "last.safetensors").is_file() and (run / "checkpoints" / "best.safetensors").is_file()
    assert not list(run.rglob("*.tmp*"))


@pytest.mark.parametrize("flags", [[], ["--json"]], ids=["plain", "json"])
def test_training_to_a_full_device_finishes_its_run_with_one_note(tmp_path: Path, flags: list[str]) -> None:
    with open("/dev/full", "w") as full:
        result = _train(tmp_path, flags, stdout=full)
    assert result.returncode == 0 and result.stderr == FULL_NOTE, result.stderr
    _assert_complete_run(tmp_path)


@pytest.mark.parametrize("flags", [[], ["--json"]], ids=["plain", "json"])
def test_training_with_stdout_closed_finishes_its_run_with_one_note(tmp_path: Path, flags: list[str]) -> None:
    result = _train(tmp_path, flags, preexec_fn=lambda: os.close(1))
    assert result.returncode == 0 and result.stderr == CLOSED_NOTE, result.stderr
    _assert_complete_run(tmp_path)


def test_a_closed_standard_descriptor_is_reopened_on_devnull_before_the_run_opens_files() -> None:
    # else the first file the run opens would get descriptor 1, and a C library's message would land in it
    probe = ("import os, sys\nfrom dlcli.cli.main import _open_missing_standard_descriptors as reopen\nreopen()\n"
             "print(os.readlink('/proc/self/fd/1'), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe], stderr=subprocess.PIPE, text=True, timeout=60,
                            preexec_fn=lambda: os.close(1))
    assert result.stderr == "/dev/null\n"


def test_training_piped_into_head_trains_to_the_end(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path)
    command = f"{sys.executable} -m dlcli train {spec} --run-dir run | head -1; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(command, shell=True, executable="/bin/bash", capture_output=True, text=True,
                            cwd=tmp_path, timeout=300, env={**os.environ, "CI": "true"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("start run=tiny ") and result.stdout.count("\n") == 1
    # the note appears only if a write came after head left, which depends on timing; nothing else may
    assert result.stderr in ("", "note: stdout is not writable (Broken pipe); training goes on, output stops\n")
    _assert_complete_run(tmp_path)


def test_a_diverging_run_with_stdout_gone_still_exits_5_with_its_paragraph(tmp_path: Path) -> None:
    tiny_spec(tmp_path, TINY.replace('optimizer = "rmsprop"', 'optimizer = { type = "sgd", learning_rate = 1e12 }'))
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "dlcli", "train", "tiny.toml", "--json"], cwd=tmp_path,
                                stdout=full, stderr=subprocess.PIPE, text=True, timeout=300,
                                env={**os.environ, "CI": "true"})
    assert result.returncode == 5
    note, error = result.stderr.splitlines()
    assert note + "\n" == FULL_NOTE and json.loads(error)["exit_code"] == 5
