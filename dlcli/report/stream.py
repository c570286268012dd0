"""Guarded stdout: a failed write (the reader left, the disk is full, the descriptor is closed) never kills a run.

Every reporter writes through a GuardedStream. Its first OSError (EPIPE, ENOSPC, EIO, EBADF, ...) switches it
off: everything after that is dropped, and it says so once on stderr, so the training loop never sees the
error and finishes its run directory. `dlcli train spec.toml | head -1` therefore trains to the end (exit 0):
the run is the expensive part, and its run directory, not stdout, is its record.

The command line makes stdout itself a strict GuardedStream: the first failure raises OutputGoneError once
(for commands whose stdout is their result, such as `predict` or `list`, that ends the command), and the
stream is silent after that. A reporter wraps that strict stream in its own lenient one, which turns the
error into the note and goes on.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from typing import Any, TextIO

TRAINING_GOES_ON = "training goes on, output stops"


class OutputGoneError(OSError):
    """A write to stdout failed; raised once by a strict GuardedStream, with the errno of the failure."""


class GuardedStream:
    """A text stream whose first failed write or flush switches it off instead of raising into the caller.

    `stream` None stands for a closed stdout (Python makes sys.stdout None when descriptor 1 is closed).
    Lenient (`strict=False`): the failure is one line on stderr, "note: stdout is not writable (REASON);
    CONSEQUENCE". Strict: the failure raises OutputGoneError once and says nothing; the caller reports it.
    Either way the underlying descriptor is pointed at /dev/null, so that the interpreter's final flush of
    what is still buffered succeeds instead of printing "Exception ignored ...".
    """

    def __init__(self, stream: TextIO | Any | None, consequence: str = TRAINING_GOES_ON,
                 strict: bool = False) -> None:
        self.stream = stream
        self.consequence = consequence
        self.strict = strict
        self.error: OSError | None = None
        self._lock = threading.Lock()  # rich refreshes its bars from a thread of its own

    @property
    def encoding(self) -> str:
        """The underlying stream's encoding (click and rich read it)."""
        return getattr(self.stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str:
        """The underlying stream's error handler (click compares it before wrapping a stream)."""
        return getattr(self.stream, "errors", None) or "strict"

    def write(self, text: str) -> int:
        """Write `text`, or drop it once the stream has failed; never raises but the strict first failure."""
        if not isinstance(text, str):  # click probes streams with b"": a text stream refuses it untouched
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self.error is None and text:  # "" is a probe too: it must not count as a failed write
            try:
                self._target().write(text)
                self._inherit_failure()
            except (OSError, ValueError) as err:  # ValueError: the stream object itself was closed
                self._fail(err)
        return len(text)

    def flush(self) -> None:
        """Flush, or do nothing once the stream has failed."""
        if self.error is None:
            try:
                self._target().flush()
                self._inherit_failure()
            except (OSError, ValueError) as err:
                self._fail(err)

    def isatty(self) -> bool:
        """Whether the underlying stream is a terminal (False once failed, closed or missing)."""
        try:
            return self.error is None and self.stream is not None and bool(self.stream.isatty())
        except (AttributeError, OSError, ValueError):
            return False

    def fileno(self) -> int:
        """The underlying descriptor (OSError when there is none)."""
        if self.stream is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return int(self.stream.fileno())

    def writable(self) -> bool:
        """True: writes are always accepted (and dropped after a failure)."""
        return True

    def _target(self) -> Any:
        if self.stream is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return self.stream

    def _inherit_failure(self) -> None:
        """A guard over a guard that already failed (its error raised, then swallowed by someone) fails too."""
        inner = self.stream.error if isinstance(self.stream, GuardedStream) else None
        if inner is not None:
            raise inner

    def _fail(self, err: OSError | ValueError) -> None:
        with self._lock:
            if self.error is not None:
                return
            if isinstance(err, OSError) and err.errno is not None:
                self.error = err
            else:  # a closed file object: the same as a closed descriptor to the user
                self.error = OSError(errno.EBADF, os.strerror(errno.EBADF))
        point_at_devnull(self.stream)
        if self.strict:
            raise OutputGoneError(self.error.errno, self.error.strerror) from err
        _note(f"note: stdout is not writable ({self.error.strerror}); {self.consequence}")


def guarded(stream: TextIO | Any | None, consequence: str = TRAINING_GOES_ON) -> GuardedStream:
    """`stream` behind a lenient GuardedStream (itself when it already is one): what a reporter writes to."""
    if isinstance(stream, GuardedStream) and not stream.strict:
        return stream
    return GuardedStream(stream, consequence)


def point_at_devnull(stream: Any) -> None:
    """Make a failed stream's descriptor /dev/null: what is still buffered then flushes without an error."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # no descriptor (a StringIO, a closed stdout)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


def _note(line: str) -> None:
    """One line on the real stderr, past rich's redirection of sys.stderr under a live display."""
    stderr = sys.stderr
    stderr = getattr(stderr, "rich_proxied_file", stderr)
    if stderr is None:
        return
    try:
        stderr.write(line + "\n")
        stderr.flush()
    except (OSError, ValueError):  # stderr is gone too: nobody is left to tell
        pass
