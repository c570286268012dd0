"""early_stopping decides as Keras 3's EarlyStopping on the same values: the stopping epoch, and the weights
restored, with and without an early stop; a resumed run decides as the uninterrupted one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.checkpoint import load_checkpoint
from dlcli.errors import RunInterruptedError
from dlcli.spec.load import validate_spec
from dlcli.train.callbacks import Callback, Run
from dlcli.train.callbacks.early_stopping import EarlyStopping, EarlyStoppingSpec
from dlcli.train.fit import fit_run
from dlcli.train.resume import resume_run
from tests.train.callbacks.run_stub import StubRun
from tests.train.test_fit import spec_doc, write_blobs
from tests.train.test_interrupts import SignalAt

nan, inf = math.nan, math.inf

# Keras 3.15.1 (torch backend): keras.callbacks.EarlyStopping driven directly, on_epoch_end(epoch, {monitor:
# value}) on a one-weight model whose weight was set to the epoch number before each call, then on_train_end;
# recorded: (epochs run, stopped early, the epoch whose weights the model ends with). Epochs count from 1 here.
KERAS: dict[str, tuple[list[float], dict[str, Any], tuple[int, bool, int]]] = {
    "patience_3": ([1.0, 0.9, 0.95, 0.92, 0.91, 0.93, 0.8], {"patience": 3}, (5, True, 5)),
    "patience_0": ([1.0, 0.9, 0.95, 0.8], {"patience": 0}, (3, True, 3)),
    "min_delta": ([1.0, 0.95, 0.8, 0.75, 0.74], {"patience": 1, "min_delta": 0.1}, (2, True, 2)),
    "negative_min_delta": ([1.0, 0.95, 0.8, 0.75, 0.74], {"patience": 1, "min_delta": -0.1}, (2, True, 2)),
    "mode_max": ([0.5, 0.6, 0.6, 0.55, 0.7, 0.69, 0.68], {"monitor": "val_accuracy", "mode": "max", "patience": 2},
                 (4, True, 4)),
    "baseline_never_beaten": ([0.9, 0.8, 0.85, 0.84, 0.83, 0.7], {"patience": 2, "baseline": 0.5}, (3, True, 3)),
    "baseline_improving_above_it": ([0.9, 0.8, 0.7, 0.6, 0.55, 0.56, 0.57], {"patience": 2, "baseline": 0.5},
                                    (6, True, 6)),
    "baseline_beaten": ([0.9, 0.6, 0.4, 0.45, 0.42, 0.41, 0.3], {"patience": 3, "baseline": 0.5}, (6, True, 6)),
    "start_from_epoch": ([1.0, 2.0, 3.0, 2.9, 3.1, 3.2, 3.3], {"patience": 1, "start_from_epoch": 2}, (5, True, 5)),
    "restore_on_stop": ([1.0, 0.7, 0.8, 0.9, 0.6], {"patience": 2, "restore_best_weights": True}, (4, True, 2)),
    "restore_without_stop": ([1.0, 0.7, 0.8, 0.75, 0.9], {"patience": 5, "restore_best_weights": True},
                             (5, False, 2)),
    "restore_last_is_best": ([1.0, 0.9, 0.8], {"patience": 5, "restore_best_weights": True}, (3, False, 3)),
    "restore_baseline_never_beaten": ([0.9, 0.8, 0.85, 0.84, 0.83], {"patience": 3, "baseline": 0.5,
                                                                     "restore_best_weights": True}, (3, True, 2)),
    "restore_start_from_epoch": ([0.1, 0.2, 1.0, 1.1, 1.2, 1.3], {"patience": 2, "start_from_epoch": 2,
                                                                 "restore_best_weights": True}, (5, True, 3)),
    "restore_never_watched": ([0.1, 0.2], {"patience": 2, "start_from_epoch": 3, "restore_best_weights": True},
                              (2, False, 2)),
    "nan_value": ([1.0, nan, 0.9, nan, nan], {"patience": 2}, (5, True, 5)),
    "nan_first": ([nan, 1.0, 0.5, 0.4], {"patience": 2, "restore_best_weights": True}, (3, True, 1)),
    "inf_first": ([inf, 1.0, 1.5, 1.6], {"patience": 1}, (3, True, 3)),
}


def drive(values: list[float], options: dict[str, Any], resume_after: int | None = None) -> tuple[int, bool, int]:
    """Feed the values to an early_stopping callback as epoch ends; with `resume_after`, hand its state over to a
    new callback after that many epochs, through JSON as a checkpoint keeps it. (epochs run, stopped, weights'
    epoch)."""
    spec = EarlyStoppingSpec(**options)
    callback, run = EarlyStopping(spec), StubRun()
    callback.on_train_begin(run, {})
    ran = 0
    for epoch, value in enumerate(values, start=1):
        run.kernel[...] = epoch
        callback.on_epoch_end(run, epoch, {spec.monitor: value})
        ran = epoch
        if run.stop_reason:
            break
        if epoch == resume_after:
            state = callback.state()
            arrays = state.pop("arrays", None)
            state = json.loads(json.dumps(state, allow_nan=False))  # checkpoint metadata is strict JSON
            callback = EarlyStopping(spec)
            callback.load_state({**state, **({"arrays": arrays} if arrays else {})})
            callback.on_train_begin(run, {})
    summary: dict[str, Any] = {}
    callback.on_train_end(run, summary)
    if options.get("restore_best_weights") and "restored_epoch" in summary:
        assert summary["restored_epoch"] == int(run.kernel[0])
    return ran, run.stop_reason == "early_stopping", int(run.kernel[0])


@pytest.mark.parametrize("case", KERAS)
def test_early_stopping_stops_and_restores_as_keras_does(case: str) -> None:
    values, options, expected = KERAS[case]
    assert drive(values, options) == expected


@pytest.mark.parametrize("case", KERAS)
def test_early_stopping_resumed_after_any_epoch_decides_as_without_a_break(case: str) -> None:
    values, options, expected = KERAS[case]
    for cut in range(1, expected[0]):
        assert drive(values, options, resume_after=cut) == expected, cut


def test_early_stopping_spec_has_keras_keys_and_defaults() -> None:
    spec = EarlyStoppingSpec()
    assert spec.model_dump() == {"type": "early_stopping", "monitor": "val_loss", "mode": "auto", "patience": 0,
                                 "min_delta": 0.0, "baseline": None, "restore_best_weights": False,
                                 "start_from_epoch": 0}
    assert all(field.description for name, field in EarlyStoppingSpec.model_fields.items() if name != "type")


def scripted_doc(tmp_path: Path, values: list[float], **callback: Any) -> dict[str, Any]:
    """A run whose logged learning_rate is `values`, one per epoch (a piecewise schedule, one step an epoch),
    watched by early_stopping: its decisions then depend on these values only, never on the numerics."""
    doc = spec_doc(write_blobs(tmp_path / "blobs.npz"), epochs=len(values), steps_per_epoch=1,
                   callbacks=[{"type": "early_stopping", "monitor": "learning_rate", **callback},
                              {"type": "model_checkpoint", "every_epochs": 1}])
    # the rate logged for epoch e is the schedule's after its one update, at step e: values[e - 1]
    doc["train"]["optimizer"] = {"type": "sgd", "learning_rate": {
        "schedule": "piecewise_constant", "boundaries": list(range(len(values))), "values": [values[0], *values]}}
    return doc


class FinalWeights(Callback):
    """Keeps the model's weights as on_train_end finds them (after early stopping restored the best)."""

    def on_train_end(self, run: Run, summary: dict[str, Any]) -> None:
        self.weights = {name: array.copy() for name, array in run.weights().items()}


@pytest.mark.parametrize("case", ["patience_3", "baseline_never_beaten", "start_from_epoch", "restore_on_stop",
                                  "restore_without_stop"])
def test_a_run_stops_where_keras_does_and_ends_with_the_restored_epochs_weights(tmp_path: Path, case: str) -> None:
    values, options, (epochs_run, stopped, weights_epoch) = KERAS[case]
    final = FinalWeights()
    summary = fit_run(validate_spec(scripted_doc(tmp_path, values, **options), tmp_path / "s.toml"),
                      tmp_path / "run", [final])
    assert (summary["epochs_run"], summary["stopped_early"]) == (epochs_run, stopped)
    assert summary.get("stop_reason") == ("early_stopping" if stopped else None)
    assert summary.get("restored_epoch") == (weights_epoch if options.get("restore_best_weights") else None)
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk.get("restored_epoch") == summary.get("restored_epoch")
    # the model ends with that epoch's weights; the checkpoints keep each epoch's own, and `last` the last one
    folder = tmp_path / "run" / "checkpoints"
    arrays, metadata = load_checkpoint(folder / f"epoch_{weights_epoch:04d}.safetensors")
    for name, value in final.weights.items():
        np.testing.assert_array_equal(value, arrays[name])
    assert load_checkpoint(folder / "last.safetensors")[1]["epoch"] == epochs_run


@pytest.mark.parametrize("stop_step", [1, 3, 4])  # before, after and well after the best epoch (2)
def test_a_resumed_run_restores_the_same_best_weights_as_an_uninterrupted_one(tmp_path: Path, stop_step: int) -> None:
    """The best weights travel in the checkpoint (tensors callbacks/<index>/param/...), so the resumed run ends
    with epoch 2's weights even when epoch 2 was trained before the interruption."""
    values, options, (epochs_run, _, weights_epoch) = KERAS["restore_without_stop"]
    straight, resumed = FinalWeights(), FinalWeights()
    doc = scripted_doc(tmp_path, values, **options)
    expected = fit_run(validate_spec(doc, tmp_path / "s.toml"), tmp_path / "straight", [straight])
    with pytest.raises(RunInterruptedError):
        fit_run(validate_spec(doc, tmp_path / "s.toml"), tmp_path / "cut", [SignalAt(stop_step)])
    last = tmp_path / "cut" / "checkpoints" / "last.safetensors"
    kept = sorted(name for name in load_checkpoint(last)[0] if name.startswith("callbacks/0/"))
    assert kept == ([] if stop_step < 2 else sorted(f"callbacks/0/{name}" for name in straight.weights))
    summary = fit_run(validate_spec(doc, tmp_path / "s.toml"), tmp_path / "cut", [resumed], resume=last)
    assert summary["restored_epoch"] == expected["restored_epoch"] == weights_epoch
    assert summary["epochs_run"] == epochs_run
    rates = [[json.loads(line)["learning_rate"] for line in (tmp_path / run / "history.jsonl").read_text().splitlines()]
             for run in ("straight", "cut")]
    assert rates[0] == rates[1] == values  # an epoch resumed mid-way logs the rate at its end, as without a break
    for name, value in straight.weights.items():
        np.testing.assert_array_equal(resumed.weights[name], value)


def test_counts_saved_before_callbacks_had_their_own_files_still_resume() -> None:
    """Checkpoints written before this layout kept early stopping's counts as {"watch": {...}}."""
    callback = EarlyStopping(EarlyStoppingSpec(patience=2))
    callback.load_state({"watch": {"monitor": "val_loss", "best": 0.5, "best_epoch": 3, "wait": 1}})
    run = StubRun()
    callback.on_train_begin(run, {})
    callback.on_epoch_end(run, 5, {"val_loss": 0.6})
    assert run.stop_reason == "early_stopping" and (callback.best, callback.best_epoch) == (0.5, 3)


def test_a_run_that_stopped_early_trains_on_for_patience_epochs_when_resumed_with_more(tmp_path: Path) -> None:
    """The run's own note says to resume with --set train.epochs=N; the restored wait was already past patience,
    so the resumed run stopped again after one epoch. Resuming a run that ended by early stopping starts the
    patience count again, as Keras' on_train_begin does in a new fit(); the best value so far is kept, so the run
    stops once `patience` epochs have not beaten it (Keras, forgetting it, would stop at epoch 8 here)."""
    values = [1.0, 0.9, 0.95, 0.92, 0.93, 0.92, 0.99, 0.99, 0.99, 0.99]
    doc = scripted_doc(tmp_path, values, patience=2)
    first = fit_run(validate_spec(doc, tmp_path / "s.toml"), tmp_path / "run", [])
    assert (first["epochs_run"], first["stop_reason"]) == (4, "early_stopping")
    notes: list[str] = []
    resumed = resume_run(tmp_path / "run", ("train.epochs=12",), None, [], notes)
    assert resumed is not None and notes == []
    assert (resumed["epochs_run"], resumed["stop_reason"]) == (6, "early_stopping")
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [row["learning_rate"] for row in history] == values[:6]
