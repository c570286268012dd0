"""Plain and JSON records: the exact lines a scripted run produces, value formatting, non-finite floats."""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pytest

from dlcli.errors import CheckpointError, DivergedError
from dlcli.report import JsonRecords, PlainRecords, json_error
from dlcli.report.records import format_value
from tests.report.scripted import EPOCH_LOGS, replay

PAIR = r'[a-z_.]+=("[^"]*"|[^\s"]+)'
LINE = re.compile(rf"^(start|checkpoint|end)( {PAIR})+$|^epoch=\d+/\d+( {PAIR})+$")


class CountingStream(io.StringIO):
    """A StringIO that remembers how many lines had been written at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed_at: list[int] = []

    def flush(self) -> None:
        self.flushed_at.append(self.getvalue().count("\n"))
        super().flush()


def test_plain_records_of_a_scripted_run() -> None:
    stream = io.StringIO()
    replay(PlainRecords(stream))
    assert stream.getvalue().splitlines() == [
        "start run=mnist-mlp epochs=2 steps_per_epoch=3 samples=384 params=407050 batch_size=128 seed=1337 "
        "run_dir=runs/mnist-mlp",
        "epoch=1/2 loss=0.2563 accuracy=0.9251 val_loss=0.129 val_accuracy=0.961 learning_rate=0.001 seconds=1.823",
        "checkpoint kind=best path=runs/mnist-mlp/checkpoints/best.safetensors",
        "epoch=2/2 loss=0.1046 accuracy=0.9687 val_loss=nan val_accuracy=0.97 learning_rate=1e-05 seconds=1.7",
        "end epochs_run=2 loss=0.1046 accuracy=0.9687 val_loss=nan val_accuracy=0.97 stopped_early=false "
        "seconds=3.523 run_dir=runs/mnist-mlp",
    ]


def test_plain_records_skip_last_checkpoints_and_epoch_timings() -> None:
    stream = io.StringIO()
    records = PlainRecords(stream)
    records.on_checkpoint(None, "runs/x/checkpoints/last.safetensors", "last")  # rewritten every epoch: no line
    records.on_train_end(None, {"epochs_run": 2, "seconds_per_epoch": [1.0, 2.0], "seconds": 3.0})
    assert stream.getvalue() == "end epochs_run=2 seconds=3\n"


def test_every_plain_line_is_key_value_pairs_that_parse_back() -> None:
    stream = io.StringIO()
    replay(PlainRecords(stream))
    for line in stream.getvalue().splitlines():
        assert LINE.match(line), line
    line_2 = next(line for line in stream.getvalue().splitlines() if line.startswith("epoch=2/"))
    epoch_2 = dict(pair.split("=", 1) for pair in line_2.split(" "))
    assert epoch_2["epoch"] == "2/2" and math.isnan(float(epoch_2["val_loss"]))
    assert float(epoch_2["learning_rate"]) == pytest.approx(EPOCH_LOGS[1]["learning_rate"])


def test_plain_records_flush_every_line() -> None:
    stream = CountingStream()
    replay(PlainRecords(stream))
    lines = stream.getvalue().count("\n")
    assert stream.flushed_at == list(range(1, lines + 1))


@pytest.mark.parametrize("value, text", [
    (0.25632, "0.2563"), (0.961, "0.961"), (1e-05, "1e-05"), (12345.678, "1.235e+04"), (3.0, "3"),
    (float("nan"), "nan"), (float("inf"), "inf"), (float("-inf"), "-inf"), (np.float32(0.5), "0.5"),
    (np.int64(42), "42"), (7, "7"), (True, "true"), (False, "false"), ("runs/x", "runs/x"),
    ("my run", '"my run"'), ("", '""'), (["a", 1], "a,1"),
    # non-ASCII stays as it is, quoted or not, so a path can be copied from a CI log; `=` and `,` are quoted
    ("runs/été", "runs/été"), ("runs/r\u00e9p à/日本", '"runs/r\u00e9p à/日本"'), ("a=b", '"a=b"'), ("a,b", '"a,b"'),
])
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


def test_plain_records_spell_out_nested_values_and_drop_none() -> None:
    stream = io.StringIO()
    PlainRecords(stream).on_train_begin(None, {"run": "x", "epochs": 1, "params": {"total": 10, "trainable": 8},
                                         "resumed_from": None})
    assert stream.getvalue() == "start run=x epochs=1 params.total=10 params.trainable=8\n"


def test_json_records_of_a_scripted_run() -> None:
    stream = io.StringIO()
    replay(JsonRecords(stream))

    def no_bare_constants(token: str) -> None:
        raise AssertionError(f"bare {token} is not JSON")

    records = [json.loads(line, parse_constant=no_bare_constants) for line in stream.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["start", "epoch", "checkpoint", "checkpoint", "epoch", "checkpoint",
                                             "end"]
    assert records[0] == {"event": "start", "run": "mnist-mlp", "run_dir": "runs/mnist-mlp", "epochs": 2,
                          "steps_per_epoch": 3, "batch_size": 128, "samples": 384, "seed": 1337,
                          "params": 407050, "resumed_from": None}
    assert records[1] == {"event": "epoch", "epoch": 1, "epochs": 2, **EPOCH_LOGS[0]}
    assert records[3] == {"event": "checkpoint", "kind": "best",
                          "path": "runs/mnist-mlp/checkpoints/best.safetensors"}
    assert records[4]["val_loss"] == "NaN" and math.isnan(float(records[4]["val_loss"]))
    assert records[6]["event"] == "end" and records[6]["stopped_early"] is False
    assert records[6]["val_loss"] == "NaN" and records[6]["seconds"] == 3.5234


def test_json_records_flush_every_line_and_ignore_batches() -> None:
    stream = CountingStream()
    records = JsonRecords(stream)
    records.on_epoch_begin(None, 1, 10)
    records.on_batch_end(None, 1, 1, {"loss": 1.0})
    assert stream.getvalue() == ""
    replay(records)
    assert stream.flushed_at == list(range(1, stream.getvalue().count("\n") + 1))


def test_json_values_are_made_strict_json() -> None:
    stream = io.StringIO()
    JsonRecords(stream).on_epoch_end(None, 3, {"loss": np.float32(0.5), "inf": float("inf"), "ninf": -np.inf,
                                         "n": np.int64(4), "weights": np.array([1.0, np.nan])})
    record = json.loads(stream.getvalue())
    assert record == {"event": "epoch", "epoch": 3, "epochs": None, "loss": 0.5, "inf": "Infinity",
                      "ninf": "-Infinity", "n": 4, "weights": [1.0, "NaN"]}


@pytest.mark.parametrize("err, code", [
    (CheckpointError("cannot load checkpoint runs/x/best.safetensors: truncated"), 4),
    (DivergedError('loss became nan at epoch 2 "step" 17'), 5),
    (RuntimeError("a bug"), 1),
])
def test_json_error(err: Exception, code: int) -> None:
    line = json_error(err)
    assert "\n" not in line
    assert json.loads(line) == {"event": "error", "exit_code": code, "message": str(err)}
