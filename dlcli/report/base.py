"""Reporter: a Callback that writes progress somewhere and has to be closed when training stops."""

from __future__ import annotations

from types import TracebackType

from dlcli.train.callbacks import Callback


class Reporter(Callback):
    """A training Callback that prints; `close()` ends its output even when an exception cut training short.

    Used as a context manager, or with `close()` in a `finally`, so a live progress display never stays
    on screen over an error message. This base class prints nothing: it is what `--quiet` uses.
    """

    def close(self) -> None:
        """Finish the output; safe to call more than once, and after on_train_end."""

    def __enter__(self) -> "Reporter":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
