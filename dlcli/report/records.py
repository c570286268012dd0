"""Machine-readable progress: one plain key=value line per event, or one JSON object per line with --json.

Plain lines (a pipe, CI):
    start run=mnist-mlp epochs=5 steps_per_epoch=422 samples=54000 params=407050 ...
    epoch=1/5 loss=0.2563 accuracy=0.9251 val_loss=0.129 val_accuracy=0.961 learning_rate=0.001 seconds=1.82
    checkpoint kind=best path=runs/mnist-mlp/checkpoints/best.safetensors
    end epochs_run=5 loss=0.0712 ... stopped_early=false seconds=9.1 run_dir=runs/mnist-mlp
Floats are written with 4 significant digits (`{:.4g}`: 0.2563, 0.001, 1.5e-05, 1.235e+04, nan, inf),
so small learning rates stay readable and every value parses back with float(). Booleans are
true/false, None values are left out, nested dicts become dotted keys (params.trainable=...), and a
string with a space, a quote, `=` or `,` is written as a JSON string ("my run"; dlcli/output_text.py).

JSON lines carry full precision; a non-finite float becomes the string "NaN", "Infinity" or
"-Infinity" (dlcli/output_text.py: bare NaN is not JSON), which float() still parses.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO

import numpy as np

from dlcli.output_text import json_line, plain_value_text
from dlcli.report.base import Reporter
from dlcli.report.stream import guarded
from dlcli.train.callbacks import Run

# the order keys are printed in, where present; other keys follow in the order they came
START_FIRST = ("run", "name", "epochs", "steps_per_epoch", "samples", "params")
END_FIRST = ("epochs_run",)
# training values come before validation values; these go last so the metrics line up from epoch to epoch
LAST = ("stopped_early", "learning_rate", "seconds", "run_dir")


END_OMITTED = ("seconds_per_epoch",)


def format_value(value: Any) -> str:
    """One value as it appears after `key=` in a plain line."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(item) for item in value)
    return plain_value_text(str(value))


def ordered_items(values: Mapping[str, Any], first: Iterable[str] = (), last: Iterable[str] = LAST,
                  ) -> list[tuple[str, Any]]:
    """values' items: `first` keys, then training values, then val_ values, then `last` keys."""
    first, last = tuple(first), tuple(last)
    middle = [key for key in values if key not in first and key not in last]
    keys = [k for k in first if k in values] + [k for k in middle if not k.startswith("val_")] + \
        [k for k in middle if k.startswith("val_")] + [k for k in last if k in values]
    return [(key, values[key]) for key in keys]


def format_pairs(items: Iterable[tuple[str, Any]], prefix: str = "") -> str:
    """key=value pairs separated by single spaces; None is left out and dicts become dotted keys."""
    return " ".join(_pairs(items, prefix))


def _pairs(items: Iterable[tuple[str, Any]], prefix: str) -> Iterator[str]:
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, Mapping):
            yield from _pairs(value.items(), f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}={format_value(value)}"


def epoch_label(epoch: int, epochs: int | None) -> str:
    """"3/5", or "3" when the total is not known."""
    return f"{epoch}/{epochs}" if epochs else str(epoch)


class PlainRecords(Reporter):
    """One plain key=value line per event (start, epoch, checkpoint, end) for pipes, CI logs and grep."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.out = guarded(self.stream)  # a failed write stops the output, never the training
        self.epochs: int | None = None

    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        """Write the start line."""
        self.epochs = info.get("epochs")
        self._write("start " + format_pairs(ordered_items(info, START_FIRST)))

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        """Write the epoch's line: epoch=E/N then its values."""
        self._write(" ".join(filter(None, [f"epoch={epoch_label(epoch, self.epochs)}",
                                           format_pairs(ordered_items(logs))])))

    def on_checkpoint(self, run: Run, path: str, kind: str) -> None:
        """Write a checkpoint line for best and periodic checkpoints (last is rewritten every epoch: no news)."""
        if kind != "last":
            self._write(f"checkpoint kind={format_value(kind)} path={format_value(str(path))}")

    def on_train_end(self, run: Run, summary: dict[str, Any]) -> None:
        """Write the end line with the final values (per-epoch timings stay in summary.json)."""
        concise = {k: v for k, v in summary.items() if k not in END_OMITTED}
        self._write("end " + format_pairs(ordered_items(concise, END_FIRST)))

    def close(self) -> None:
        """Flush the stream."""
        self.out.flush()

    def _write(self, line: str) -> None:
        self.out.write(line.rstrip() + "\n")
        self.out.flush()  # CI shows a log as it arrives only if every line is flushed


def json_record(event: str, payload: Mapping[str, Any]) -> str:
    """One JSON line (no newline) for an event: {"event": event, ...payload}."""
    record = {"event": event, **{key: value for key, value in payload.items() if key != "event"}}
    return json_line(record)


def json_error(err: BaseException) -> str:
    """The error record the command line prints with --json: {"event": "error", "exit_code", "message"}."""
    return json_record("error", {"exit_code": getattr(err, "exit_code", 1), "message": str(err)})


class JsonRecords(Reporter):
    """One JSON object per line for every start, epoch, checkpoint and end event, and nothing else."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.out = guarded(self.stream)  # a failed write stops the output, never the training
        self.epochs: int | None = None

    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        """Write {"event": "start", ...info}."""
        self.epochs = info.get("epochs")
        self._write(json_record("start", info))

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        """Write {"event": "epoch", "epoch": E, "epochs": N, ...logs}."""
        self._write(json_record("epoch", {"epoch": epoch, "epochs": self.epochs, **logs}))

    def on_checkpoint(self, run: Run, path: str, kind: str) -> None:
        """Write {"event": "checkpoint", "kind": kind, "path": path}."""
        self._write(json_record("checkpoint", {"kind": kind, "path": str(path)}))

    def on_train_end(self, run: Run, summary: dict[str, Any]) -> None:
        """Write {"event": "end", ...summary}."""
        self._write(json_record("end", summary))

    def close(self) -> None:
        """Flush the stream."""
        self.out.flush()

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()  # a consumer reading the pipe sees each record as soon as it happens
