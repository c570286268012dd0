"""SIGINT and SIGTERM during training: note the request, let the current step finish, stop at a checkpoint."""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


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

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def die_by_signal(signum: int) -> None:
    """End the process by `signum` with its default action, so a parent sees the signal death (128 + signum)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
