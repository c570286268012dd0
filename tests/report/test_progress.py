"""RichProgress: a whole scripted run on a forced terminal, clean stops, and no live display left behind."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from rich.progress import Progress

from dlcli.report.progress import RichProgress
from tests.report.scripted import INFO, replay

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=160, color_system="standard"), out


def _assert_no_live_display(console: Console) -> None:
    # rich allows one live display per console: starting another proves the last one was stopped
    with Progress(console=console) as progress:
        progress.add_task("probe", total=1)


def test_scripted_run_prints_every_epoch_and_the_end_then_stops() -> None:
    console, out = _terminal()
    reporter = RichProgress(console)
    replay(reporter)
    text = ANSI.sub("", out.getvalue())
    assert "training mnist-mlp epochs=2 steps_per_epoch=3 samples=384 params=407050" in text
    assert ("epoch 1/2 loss=0.2563 accuracy=0.9251 val_loss=0.129 val_accuracy=0.961 learning_rate=0.001 "
            "seconds=1.823") in text
    assert "epoch 2/2 loss=0.1046 accuracy=0.9687 val_loss=nan" in text
    assert "saved best checkpoint runs/mnist-mlp/checkpoints/best.safetensors" in text
    assert "last.safetensors" not in text  # rewritten every epoch: not worth a line
    assert "done after 2 epochs loss=0.1046" in text
    assert text.index("epoch 1/2 loss") < text.index("epoch 2/2 loss") < text.index("done after")
    assert "\x1b[?25h" in out.getvalue()  # the cursor is shown again
    reporter.close()  # idempotent after on_train_end
    _assert_no_live_display(console)


def test_bars_show_steps_and_live_metrics() -> None:
    console, out = _terminal()
    reporter = RichProgress(console)
    reporter.on_train_begin(None, INFO)
    reporter.on_epoch_begin(None, 1, 3)
    reporter.on_batch_end(None, 1, 2, {"loss": 0.4321, "accuracy": 0.8})
    assert reporter._progress is not None
    reporter._progress.refresh()
    text = ANSI.sub("", out.getvalue())
    assert "epoch 1/2" in text and "2/3" in text and "loss=0.4321 accuracy=0.8" in text and "eta" in text
    reporter.close()
    _assert_no_live_display(console)


def test_exception_mid_epoch_closes_the_display() -> None:
    console, out = _terminal()
    with pytest.raises(KeyboardInterrupt):
        with RichProgress(console) as reporter:
            reporter.on_train_begin(None, INFO)
            reporter.on_epoch_begin(None, 1, 3)
            reporter.on_batch_end(None, 1, 1, {"loss": 1.0})
            raise KeyboardInterrupt
    assert "\x1b[?25h" in out.getvalue()  # the cursor is shown again
    _assert_no_live_display(console)


def test_resumed_run_without_train_begin_starts_the_bars_itself() -> None:
    console, out = _terminal()
    reporter = RichProgress(console)
    reporter.on_epoch_begin(None, 4, 2)
    reporter.on_batch_end(None, 4, 2, {"loss": 0.3})
    reporter.on_epoch_end(None, 4, {"loss": 0.3, "seconds": 0.5})
    reporter.close()
    assert "epoch 4 loss=0.3 seconds=0.5" in ANSI.sub("", out.getvalue())
    _assert_no_live_display(console)


def test_final_line_shows_nested_final_values_without_per_epoch_lists() -> None:
    console, out = _terminal()
    reporter = RichProgress(console)
    reporter.on_train_begin(None, INFO)
    reporter.on_train_end(None, {"run": "mnist-mlp", "run_dir": "runs/m", "epochs_run": 1, "stopped_early": True,
                           "final": {"loss": 0.5, "val_loss": 0.25}, "best": {"epoch": 1, "value": 0.25},
                           "seconds": 2.0, "seconds_per_epoch": [2.0], "samples": 10, "params": 5})
    text = ANSI.sub("", out.getvalue())
    assert "stopped early after 1 epoch loss=0.5 val_loss=0.25 seconds=2 run_dir=runs/m" in text
    _assert_no_live_display(console)
