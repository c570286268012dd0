"""reduce_lr_on_plateau lowers the rate as Keras 3's ReduceLROnPlateau does on the same values: the epochs where
the rate changes, cooldown, min_lr; a resumed run lowers it as the uninterrupted one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from dlcli.spec.load import validate_spec
from dlcli.train.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau, ReduceLROnPlateauSpec
from dlcli.train.fit import fit_run
from tests.train.callbacks.run_stub import StubRun
from tests.train.test_fit import spec_doc, write_blobs

nan = math.nan

# Keras 3.15.1 (torch backend): keras.callbacks.ReduceLROnPlateau driven directly, on_epoch_end(epoch, {monitor:
# value}) with the optimizer's rate starting at 1.0; recorded: the rate after each epoch (Keras keeps it in
# float32, so 0.1 reads 0.1000000015; these are rounded to 7 digits).
KERAS: dict[str, tuple[list[float], dict[str, Any], list[float]]] = {
    "patience_2": ([1.0, 0.9, 0.95, 0.92, 0.91, 0.93, 0.94, 0.8, 0.85], {"patience": 2, "factor": 0.5},
                   [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]),
    "patience_0": ([1.0, 1.1, 1.2, 0.9, 1.0], {"patience": 0, "factor": 0.5}, [1.0, 0.5, 0.25, 0.25, 0.125]),
    "cooldown": ([1.0] * 9, {"patience": 1, "factor": 0.5, "cooldown": 2},
                 [1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625, 0.0625]),
    "cooldown_1_changes_nothing": ([1.0] * 7, {"patience": 0, "factor": 0.5, "cooldown": 1},
                                   [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625]),
    "min_lr": ([1.0] * 8, {"patience": 0, "factor": 0.5, "min_lr": 0.2}, [1.0, 0.5, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2]),
    "min_lr_cooldown": ([1.0] * 8, {"patience": 1, "factor": 0.1, "min_lr": 0.05, "cooldown": 1},
                        [1.0, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]),
    "min_delta_default": ([1.0, 0.99995, 0.9999, 0.9998, 0.99975, 0.9997], {"patience": 0, "factor": 0.5},
                          [1.0, 0.5, 0.25, 0.25, 0.125, 0.0625]),
    "min_delta_negative": ([1.0, 0.95, 0.8, 0.75, 0.74], {"patience": 0, "factor": 0.5, "min_delta": -0.1},
                           [1.0, 0.5, 0.5, 0.25, 0.125]),
    "mode_max": ([0.5, 0.6, 0.6, 0.55, 0.7, 0.7, 0.7], {"monitor": "val_accuracy", "mode": "max", "patience": 1,
                                                        "factor": 0.5}, [1.0, 1.0, 0.5, 0.25, 0.25, 0.125, 0.0625]),
    "improvement_during_cooldown": ([1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0],
                                    {"patience": 1, "factor": 0.5, "cooldown": 3},
                                    [1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]),
    "nan_value": ([1.0, nan, nan, 0.5, nan], {"patience": 1, "factor": 0.5}, [1.0, 0.5, 0.25, 0.25, 0.125]),
}


def drive(values: list[float], options: dict[str, Any], resume_after: int | None = None) -> list[float]:
    """The rate after each epoch end; with `resume_after`, the state goes through JSON to a new callback there."""
    spec = ReduceLROnPlateauSpec(**options)
    callback, run = ReduceLROnPlateau(spec), StubRun(learning_rate=1.0)
    callback.on_train_begin(run, {})
    rates = []
    for epoch, value in enumerate(values, start=1):
        callback.on_epoch_end(run, epoch, {spec.monitor: value})
        rates.append(round(run.learning_rate, 7))
        if epoch == resume_after:
            state = json.loads(json.dumps(callback.state(), allow_nan=False))
            callback = ReduceLROnPlateau(spec)
            callback.load_state(state)
            callback.on_train_begin(run, {})
    return rates


@pytest.mark.parametrize("case", KERAS)
def test_reduce_lr_on_plateau_lowers_the_rate_as_keras_does(case: str) -> None:
    values, options, expected = KERAS[case]
    assert drive(values, options) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("case", KERAS)
def test_reduce_lr_on_plateau_resumed_after_any_epoch_lowers_as_without_a_break(case: str) -> None:
    values, options, expected = KERAS[case]
    for cut in range(1, len(values)):
        assert drive(values, options, resume_after=cut) == pytest.approx(expected, rel=1e-6), cut


def test_reduce_lr_on_plateau_spec_has_keras_keys_and_defaults() -> None:
    assert ReduceLROnPlateauSpec().model_dump() == {
        "type": "reduce_lr_on_plateau", "monitor": "val_loss", "mode": "auto", "factor": 0.1, "patience": 10,
        "min_delta": 1e-4, "cooldown": 0, "min_lr": 0.0}
    assert all(field.description for name, field in ReduceLROnPlateauSpec.model_fields.items() if name != "type")


@pytest.mark.parametrize("options,rates", [
    # min_delta = 10: nothing after the first epoch improves, so the rate follows patience and cooldown alone
    ({"patience": 2}, [0.01, 0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025, 0.00125]),
    ({"patience": 1, "cooldown": 2}, [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025, 0.00125, 0.00125]),
    ({"patience": 0, "min_lr": 0.003}, [0.01, 0.01, 0.005, 0.003, 0.003, 0.003, 0.003, 0.003]),
])
def test_a_run_lowers_the_rate_at_the_epochs_keras_does(tmp_path: Path, options: dict[str, Any],
                                                         rates: list[float]) -> None:
    """The history's learning_rate is the rate each epoch trained with: the rate Keras has after the epoch
    before."""
    doc = spec_doc(write_blobs(tmp_path / "blobs.npz"), epochs=8, callbacks=[
        {"type": "reduce_lr_on_plateau", "monitor": "val_loss", "factor": 0.5, "min_delta": 10.0, **options}])
    fit_run(validate_spec(doc, tmp_path / "s.toml"), tmp_path / "run", [])
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [row["learning_rate"] for row in history] == pytest.approx(rates, rel=1e-9)


def test_a_run_resumed_after_a_stop_counts_patience_and_cooldown_again() -> None:
    # as Keras' new fit() and as early stopping: the counts restart, the best stays; any other resume keeps them
    spec = ReduceLROnPlateauSpec(type="reduce_lr_on_plateau", monitor="val_loss", patience=3, cooldown=2)
    for info, counts in (({"resumed_after_stop": "early_stopping"}, (0, 0)), ({}, (2, 1))):
        callback = ReduceLROnPlateau(spec)
        callback.load_state({"wait": 2, "cooldown": 1, "best": 0.5})
        callback.on_train_begin(StubRun(), info)
        assert (callback.wait, callback.cooldown, callback.best) == (*counts, 0.5)
