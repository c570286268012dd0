"""The run handle every hook receives: the hooks' order and counters, and each action a callback may take (stop
with a reason, at an epoch end or mid-epoch; scale the rate; set weights; ask for checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.checkpoint import load_checkpoint
from dlcli.spec.load import validate_spec
from dlcli.train.callbacks import Callback, Run
from dlcli.train.fit import fit_run
from dlcli.train.resume import resume_run
from tests.train.test_fit import spec_doc, write_blobs


def fit(tmp_path: Path, observers: list[Callback], **train: Any) -> dict[str, Any]:
    """Train the blobs spec with these train options, and `observers` after the spec's callbacks."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    doc = spec_doc(write_blobs(tmp_path / "blobs.npz"), **train)
    return fit_run(validate_spec(doc, tmp_path / "s.toml"), tmp_path / "run", observers)


def history(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]


class HookLog(Callback):
    """Every hook, with the epoch and step the handle shows and the stop reason it has."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        self.calls.append(("train_begin", run.epoch, run.step))

    def on_epoch_begin(self, run: Run, epoch: int, steps: int) -> None:
        self.calls.append(("epoch_begin", epoch, run.step, steps))

    def on_batch_begin(self, run: Run, epoch: int, step: int) -> None:
        self.calls.append(("batch_begin", step, run.step))

    def on_batch_end(self, run: Run, epoch: int, step: int, logs: dict[str, float]) -> None:
        self.calls.append(("batch_end", step, run.step))

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        self.calls.append(("epoch_end", epoch, run.step, run.stop_reason))

    def on_checkpoint(self, run: Run, path: str, kind: str) -> None:
        self.calls.append(("checkpoint", kind))

    def on_train_end(self, run: Run, summary: dict[str, Any]) -> None:
        self.calls.append(("train_end", summary["epochs_run"]))


def test_hooks_come_in_keras_order_and_the_handle_counts_epochs_and_steps(tmp_path: Path) -> None:
    log = HookLog()
    fit(tmp_path, [log], epochs=2, steps_per_epoch=2, monitor="loss")
    steps = [("batch_begin", 1, 0), ("batch_end", 1, 1), ("batch_begin", 2, 1), ("batch_end", 2, 2)]
    assert log.calls[:7] == [("train_begin", 0, 0), ("epoch_begin", 1, 0, 2), *steps, ("epoch_end", 1, 2, None)]
    assert log.calls[7:9] == [("checkpoint", "best"), ("checkpoint", "last")]
    assert log.calls[9:12] == [("epoch_begin", 2, 2, 2), ("batch_begin", 1, 2), ("batch_end", 1, 3)]
    assert log.calls[-1] == ("train_end", 2)


def test_the_specs_callbacks_decide_before_the_callers_see_the_epoch(tmp_path: Path) -> None:
    """early_stopping (patience 0, nothing can improve by 10) stops at epoch 2; the caller's callback sees it."""
    log = HookLog()
    summary = fit(tmp_path, [log], epochs=5, callbacks=[{"type": "early_stopping", "monitor": "val_loss",
                                                         "min_delta": 10.0}])
    ends = [call for call in log.calls if call[0] == "epoch_end"]
    assert ends == [("epoch_end", 1, 12, None), ("epoch_end", 2, 24, "early_stopping")]
    assert summary["stopped_early"] and summary["stop_reason"] == "early_stopping"


class PruneAt(Callback):
    """Stops the run after one step of one epoch, as a trial pruner would, with its own reason."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_batch_end(self, run: Run, epoch: int, step: int, logs: dict[str, float]) -> None:
        if (epoch, step) == (self.epoch, self.step):
            run.stop("pruned")


def test_a_stop_mid_epoch_ends_that_epoch_there_and_the_run_with_it(tmp_path: Path) -> None:
    """As in Keras: the epoch ends after the step (validation, history, checkpoints), then training ends."""
    log = HookLog()
    summary = fit(tmp_path, [PruneAt(2, 5), log], epochs=4)
    assert summary["epochs_run"] == 2 and summary["stopped_early"] and summary["stop_reason"] == "pruned"
    assert [row["epoch"] for row in history(tmp_path)] == [1, 2] and "val_loss" in history(tmp_path)[1]
    assert [call for call in log.calls if call[0] == "epoch_end"][-1] == ("epoch_end", 2, 12 + 5, "pruned")
    _, metadata = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert (metadata["epoch"], metadata["step"], metadata["in_epoch"]) == (2, 17, None)
    assert metadata["stopped_early"] and metadata["stop_reason"] == "pruned"
    notes: list[str] = []
    assert resume_run(tmp_path / "run", (), None, [], notes) is None
    assert notes == [f"nothing to do: {tmp_path / 'run'} stopped early at epoch 2 of 4 (pruned), and train.epochs "
                     f"asks for 4; it is finished. To train on regardless, resume with --set train.epochs=N for N "
                     f"above 4"]


class HalveRateAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        if epoch == self.epoch:
            self.before = run.learning_rate
            run.lr_scale = run.lr_scale * 0.5


def test_a_callback_scales_the_rate_for_the_next_epochs_and_the_checkpoint_keeps_the_scale(tmp_path: Path) -> None:
    halve = HalveRateAfter(1)
    fit(tmp_path, [halve], epochs=3)
    assert halve.before == pytest.approx(0.01)
    assert [row["learning_rate"] for row in history(tmp_path)] == pytest.approx([0.01, 0.005, 0.005])
    arrays, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert float(arrays["optimizer/lr_scale"]) == 0.5


class ZeroKernelsAt(Callback):
    """Sets every kernel to zero at one epoch's end, and reads them back live on the next step."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.seen: list[float] = []

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        if epoch == self.epoch:
            run.set_weights({name: np.zeros_like(array) for name, array in run.weights().items()
                             if name.endswith("/kernel")})

    def on_batch_begin(self, run: Run, epoch: int, step: int) -> None:
        if epoch == self.epoch + 1 and step == 1:
            self.seen = [float(np.abs(a).sum()) for name, a in run.weights().items() if name.endswith("/kernel")]


def test_weights_a_callback_sets_are_the_models_and_the_epochs_checkpoint_holds_them(tmp_path: Path) -> None:
    zero = ZeroKernelsAt(1)
    fit(tmp_path, [zero], epochs=2)
    assert zero.seen == [0.0, 0.0]  # the next step starts from the zeros
    arrays, metadata = load_checkpoint(tmp_path / "run" / "checkpoints" / "previous.safetensors")
    assert metadata["epoch"] == 1 and all(not arrays[k].any() for k in arrays if k.endswith("/kernel"))


class AskFor(Callback):
    def __init__(self, hook: str, name: str) -> None:
        self.hook, self.name = hook, name

    def on_batch_end(self, run: Run, epoch: int, step: int, logs: dict[str, float]) -> None:
        if self.hook == "on_batch_end":
            run.save_checkpoint(self.name)

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        if self.hook == "on_epoch_end":
            run.save_checkpoint(self.name, "snapshot")


def test_checkpoints_are_asked_for_at_an_epoch_end_and_never_replace_the_runs_own(tmp_path: Path) -> None:
    log = HookLog()
    fit(tmp_path / "a", [AskFor("on_epoch_end", "mine"), log], epochs=1)
    assert (tmp_path / "a" / "run" / "checkpoints" / "mine.safetensors").is_file()
    assert log.calls[-3:-1] == [("checkpoint", "last"), ("checkpoint", "snapshot")]
    with pytest.raises(RuntimeError, match="outside on_epoch_end"):
        fit(tmp_path / "b", [AskFor("on_batch_end", "mine")], epochs=1)
    for reserved in ("last", "best", "previous", "../x", ".hidden"):
        with pytest.raises(ValueError, match="not a checkpoint a callback may write"):
            fit(tmp_path / reserved.strip("./"), [AskFor("on_epoch_end", reserved)], epochs=1)


class Directions(Callback):
    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        self.found = {name: run.direction(name) for name in ("loss", "val_loss", "hits", "val_hits")}


def test_auto_mode_follows_the_metrics_type_even_under_its_own_name(tmp_path: Path) -> None:
    """Keras finds a monitored metric by its name and asks it which way is better: accuracy named "hits" goes up."""
    directions = Directions()
    summary = fit(tmp_path, [directions], epochs=3, monitor="val_hits",
                  metrics=[{"type": "accuracy", "name": "hits"}])
    assert directions.found == {"loss": "min", "val_loss": "min", "hits": "max", "val_hits": "max"}
    values = [row["val_hits"] for row in history(tmp_path)]
    assert summary["best"]["best"] == max(values) and summary["best"]["best_epoch"] == values.index(max(values)) + 1


class Reader(Callback):
    """What a logger reads when training starts: the run's identity, its epochs so far, its spec."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        self.seen = {"run_id": run.run_id, "epochs": [row["epoch"] for row in run.history], "step": run.step,
                     "keys": run.spec_keys()}

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        self.seen["last"] = run.history[-1]["epoch"]


def test_the_handle_gives_the_run_id_history_and_spec_keys_and_a_resume_sees_its_restored_epochs(
        tmp_path: Path) -> None:
    first = Reader()
    fit(tmp_path, [first], epochs=2)
    run_id = json.loads((tmp_path / "run" / "run.json").read_text())["run_id"]
    assert first.seen["run_id"] == run_id and first.seen["epochs"] == [] and first.seen["last"] == 2
    assert first.seen["keys"]["train.optimizer.learning_rate"] == 0.01
    assert first.seen["keys"]["model.layers[0].units"] == 16
    resumed = Reader()
    resume_run(tmp_path / "run", ("train.epochs=3",), None, [resumed])
    assert resumed.seen["run_id"] == run_id and resumed.seen["epochs"] == [1, 2] and resumed.seen["step"] == 24
    assert resumed.seen["keys"]["train.epochs"] == 3 and resumed.seen["last"] == 3
