"""csv logger: every epoch's values streamed to a CSV file as each epoch ends (Keras' CSVLogger)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import Field

from dlcli import registry
from dlcli.errors import SpecError
from dlcli.train.callbacks.base import Callback, CallbackSpec, Run


class CsvLoggerSpec(CallbackSpec):
    """[train] loggers = ["csv"] or [{ type = "csv", filename = "...", separator = ";" }]."""

    type: Literal["csv"] = "csv"
    filename: str = Field("log.csv", min_length=1, description="The CSV file, relative to the run directory (or "
                                                               "absolute, e.g. a CI artifacts folder).")
    separator: str = Field(",", min_length=1, max_length=1, description="The character between columns.")


def log_path(run: Run, name: str) -> Path:
    """A logger's file or folder: `name` as given when absolute, else inside the run directory."""
    path = Path(name)
    return path if path.is_absolute() else Path(run.info["run_dir"]) / path


@registry.loggers.register("csv", spec=CsvLoggerSpec)
class CsvLogger(Callback):
    """Stream each epoch's values to a CSV file as it ends (Keras' CSVLogger; epochs counted from 1)."""

    def __init__(self, spec: CsvLoggerSpec) -> None:
        self.spec = spec
        self.file: TextIO | None = None
        self.columns: list[str] | None = None

    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        """Start the file with the epochs the run already has (a resumed run's), each once: the file always holds
        the run's epochs, neither repeated nor missing."""
        path = log_path(run, self.spec.filename)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "w", newline="")  # noqa: SIM115 - open until the run ends: a stream, row by row
        except OSError as err:  # an output that cannot be written is a usage error (exit 2), as for an export
            raise SpecError(f"cannot write {path}: {err.strerror or err}; check that the folder exists and is "
                            "writable, or give the csv logger another filename (an absolute path)") from None
        self.columns = None
        for row in run.history:
            self._write(row)

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        """One row: the epoch, then the values in Keras' order (sorted by name)."""
        self._write({"epoch": epoch, **logs})

    def _write(self, row: dict[str, Any]) -> None:
        if self.file is None:
            return
        writer = csv.writer(self.file, delimiter=self.spec.separator, lineterminator="\n")
        if self.columns is None:
            self.columns = ["epoch", *sorted(k for k in row if k != "epoch")]
            writer.writerow(self.columns)
        writer.writerow(["" if row.get(k) is None else _cell(row[k]) for k in self.columns])
        self.file.flush()  # a reader (tail -f, a CI step) sees each epoch as it ends

    def on_train_end(self, run: Run, summary: dict[str, Any]) -> None:
        """Close the file."""
        self._close()

    def on_train_abort(self, run: Run, status: str) -> None:
        """Close the file; the rows written so far stay."""
        self._close()

    def _close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _cell(value: Any) -> Any:
    return "nan" if isinstance(value, float) and math.isnan(value) else value
