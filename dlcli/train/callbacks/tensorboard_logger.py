"""tensorboard logger: scalars in TensorBoard event files under RUN/tensorboard/, through tensorboardX (the
optional extra dlcli[tensorboard]; no TensorFlow, no torch).

The layout is Keras' TensorBoard callback's: train/ and validation/ folders, so that TensorBoard draws loss and
val_loss as two runs on one chart; epoch values as `epoch_<name>` at step = the epoch (counted from 1, as
history.csv counts it), and with update_freq = N the running values of the epoch so far as `batch_<name>` every
N optimizer steps, at step = the run's step.

A resumed run (and `dlcli log`) first brings the files in line with the run: events past the checkpoint it
continues from (epochs after its last epoch, steps after its step: a run killed after logging them but before
saving them will log them again) are removed, and epochs the files miss are written from the run's history. So
every epoch and step is in the files exactly once, whatever stopped the run. Events are written synchronously
and flushed at every epoch end and logged step, so a kill loses nothing that a checkpoint holds.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import Field, PositiveInt

from dlcli import registry
from dlcli.errors import SpecError
from dlcli.train.callbacks.base import Callback, CallbackSpec, Run
from dlcli.train.callbacks.csv_logger import log_path

INSTALL = "pip install 'dlcli[tensorboard]'"
FOLDERS = ("train", "validation")
NOT_LOGGED = ("epoch", "seconds")  # bookkeeping, not a value to chart
_HEADER = struct.Struct("<Q")
_CRC = struct.Struct("<I")


class TensorBoardLoggerSpec(CallbackSpec):
    """[train] loggers = ["tensorboard"] or [{ type = "tensorboard", update_freq = 100 }]."""

    type: Literal["tensorboard"] = "tensorboard"
    log_dir: str = Field("tensorboard", min_length=1, description="The event files' folder, relative to the run "
                                                                  "directory (or absolute).")
    update_freq: Literal["epoch", "batch"] | PositiveInt = Field(
        "epoch", description='"epoch": scalars per epoch; N (or "batch" for 1): also the epoch\'s running values '
                             "every N steps, as batch_<name> (Keras' update_freq).")


def _modules() -> Any:
    """tensorboardX's protobuf classes, summary builder and checksum, or a SpecError naming the extra."""
    try:
        from tensorboardX import summary
        from tensorboardX.proto import event_pb2
        from tensorboardX.record_writer import masked_crc32c
    except ImportError:
        raise SpecError(f"the tensorboard logger needs tensorboardX, which is not installed: {INSTALL}") from None
    return event_pb2, summary, masked_crc32c


@registry.loggers.register("tensorboard", spec=TensorBoardLoggerSpec)
class TensorBoardLogger(Callback):
    """Log scalars to TensorBoard event files in RUN/tensorboard/ (train/ and validation/, as Keras does)."""

    def __init__(self, spec: TensorBoardLoggerSpec) -> None:
        self.spec = spec
        self.event_pb2, self.summary, self.crc = _modules()  # a missing extra fails before the run starts
        self.every = 1 if spec.update_freq == "batch" else spec.update_freq if isinstance(spec.update_freq, int) \
            else None
        self.folder: Path | None = None
        self.files: dict[str, BinaryIO] = {}

    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        """Bring existing event files in line with the run, then write the epochs they miss."""
        self.folder = log_path(run, self.spec.log_dir)
        present = self._trim(len(run.history), run.step)
        for row in run.history:
            self._epoch(int(row["epoch"]), row, present)
        self._flush()

    def on_batch_end(self, run: Run, epoch: int, step: int, logs: dict[str, float]) -> None:
        """Every update_freq steps: the epoch's running values so far."""
        if self.every is not None and run.step % self.every == 0:
            for name, value in logs.items():
                self._scalar("train", f"batch_{name}", value, run.step)
            self._flush()

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        """The epoch's values: training ones (and the learning rate) in train/, val_ ones in validation/."""
        self._epoch(epoch, logs, None)
        self._flush()

    def on_train_end(self, run: Run, summary: dict[str, Any]) -> None:
        """Flush and close the event files."""
        self._close()

    def on_train_abort(self, run: Run, status: str) -> None:
        """Flush and close the event files: what they hold stays valid."""
        self._close()

    def _epoch(self, epoch: int, logs: dict[str, Any], present: set[tuple[str, str, int]] | None) -> None:
        for name, value in logs.items():
            if name in NOT_LOGGED or value is None:
                continue
            folder, tag = ("validation", f"epoch_{name[4:]}") if name.startswith("val_") else ("train", f"epoch_{name}")
            if present is None or (folder, tag, epoch) not in present:
                self._scalar(folder, tag, float(value), epoch)

    def _scalar(self, folder: str, tag: str, value: float, step: int) -> None:
        event = self.event_pb2.Event(wall_time=time.time(), step=step, summary=self.summary.scalar(tag, value))
        self._record(self._file(folder), event.SerializeToString())

    def _file(self, folder: str) -> BinaryIO:
        """This process's event file in `folder`, started with the file-version event TensorBoard expects."""
        if folder not in self.files:
            assert self.folder is not None, "on_train_begin opens the folder"
            (self.folder / folder).mkdir(parents=True, exist_ok=True)
            name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.dlcli"
            self.files[folder] = open(self.folder / folder / name, "ab")  # noqa: SIM115 - open for the run
            version = self.event_pb2.Event(wall_time=time.time(), step=0, file_version="brain.Event:2")
            self._record(self.files[folder], version.SerializeToString())
        return self.files[folder]

    def _record(self, stream: BinaryIO, data: bytes) -> None:
        """One TFRecord: length, its checksum, the data, its checksum (TensorBoard's event file framing)."""
        header = _HEADER.pack(len(data))
        stream.write(header + _CRC.pack(self.crc(header)) + data + _CRC.pack(self.crc(data)))

    def _flush(self) -> None:
        for stream in self.files.values():
            stream.flush()  # to the OS: a killed process loses nothing it logged

    def _close(self) -> None:
        for stream in self.files.values():
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
        self.files = {}

    def _trim(self, epochs: int, step: int) -> set[tuple[str, str, int]]:
        """Remove events past the run's position (epoch_ tags after `epochs`, batch_ tags after `step`) and a
        record cut short by a kill; returns what the files then hold, as (folder, tag, step)."""
        present: set[tuple[str, str, int]] = set()
        assert self.folder is not None
        for folder in FOLDERS:
            for path in sorted((self.folder / folder).glob("events.out.tfevents.*")):
                records, complete = _read_records(path)
                kept = []
                for data in records:
                    event = self.event_pb2.Event.FromString(data)
                    tags = [value.tag for value in event.summary.value]
                    if any(t.startswith("epoch_") for t in tags) and event.step > epochs or \
                            any(t.startswith("batch_") for t in tags) and event.step > step:
                        continue
                    kept.append(data)
                    present.update((folder, tag, event.step) for tag in tags)
                if len(kept) != len(records) or not complete:
                    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
                    with open(temporary, "wb") as stream:
                        for data in kept:
                            self._record(stream, data)
                    os.replace(temporary, path)
        return present


def _read_records(path: Path) -> tuple[list[bytes], bool]:
    """The records of an event file, and whether it ended cleanly (False: its last record was cut short)."""
    content = path.read_bytes()
    records, at = [], 0
    while at + 12 <= len(content):
        (length,) = _HEADER.unpack_from(content, at)
        end = at + 12 + length + 4
        if end > len(content):
            break
        records.append(content[at + 12:at + 12 + length])
        at = end
    return records, at == len(content)
