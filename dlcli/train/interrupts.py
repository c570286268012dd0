"""SIGINT and SIGTERM during training: note the request, let the current step finish, stop at a checkpoint.

`dlcli train` holds CommandSignals from its start to its end, so that no signal is ever Python's default
KeyboardInterrupt (or SIGTERM's silent death). A KeyboardInterrupt can land anywhere: inside an import (CPython
then may leave a module lock held, and the thread compiling ahead waited on it forever: a run that never
exited), or inside a C extension that swallows it (pyarrow reading a CSV: the run trained to the end and exited
0). Before the run begins there is nothing to save, so a signal ends the process at once, saying so; from the
run's first file on, StopSignals stops it at a checkpoint; after training a signal is only noted.
"""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType
from typing import Any

from dlcli.output_text import json_line

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
_WORDS = {signal.SIGINT: "interrupted by SIGINT", signal.SIGTERM: "terminated by SIGTERM"}


class CommandSignals:
    """Context manager for a whole `dlcli train`: until a run begins (the first StopSignals block), a signal says
    so in one line and ends the process by that signal (nothing is trained or written yet: stopping in the middle
    of loading data is safe, and prompt); afterwards, outside StopSignals, a signal is recorded in `requested` and
    the next StopSignals (a K-fold run's next fold) starts with it, or the command notes it at its end."""

    def __init__(self, as_json: bool = False, speaks: bool = True) -> None:
        self.as_json, self.speaks = as_json, speaks  # speaks: False on MPI ranks other than 0
        self.requested: int | None = None
        self.began = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.began:
            if self.speaks:
                _say(f"{_WORDS[signum]} before training began; nothing was trained (run the same command again)",
                     EXIT_CODES[signum], self.as_json)
            die_by_signal(signum)
        if self.requested is None:
            self.requested = signum

    def __enter__(self) -> CommandSignals:
        global _command
        try:
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous.clear()
            return self
        _command = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _command
        if _command is self:
            _command = None
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


_command: CommandSignals | None = None  # the CommandSignals in force, if any


def _say(message: str, exit_code: int, as_json: bool) -> None:
    """One error line, written straight to the file descriptors: the handler may run in the middle of a write
    to sys.stderr or sys.stdout, where writing through them again would raise."""
    lines = [(2, f"error: {message}")]
    if as_json:
        record = json_line({"event": "error", "exit_code": exit_code, "message": message})
        lines = [(1, record), (2, record)]
    for fd, line in lines:
        with contextlib.suppress(OSError):
            os.write(fd, (line + "\n").encode("utf-8", "backslashreplace"))


class StopSignals:
    """Context manager: while active, SIGINT/SIGTERM only record themselves in `requested` (the first one wins).

    A second signal while the checkpoint is being written is recorded too and changes nothing, so the
    file is never torn. Handlers are installed only in the main thread (Python's rule) and put back on exit.
    """

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is None:
            self.requested = signum

    def __enter__(self) -> StopSignals:
        try:
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous.clear()
            return self
        if _command is not None:  # the run begins: from here on a signal stops at a checkpoint
            _command.began = True
            self.requested = _command.requested  # one that came between two blocks (CommandSignals)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self._previous and _command is not None and _command.requested is None:
            _command.requested = self.requested


def die_by_signal(signum: int) -> None:
    """End the process by `signum` with its default action, so a parent sees the signal death (128 + signum)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
