"""Every registered callback is a Callback with a documented spec whose `type` is its registered name."""

from __future__ import annotations

import typing

import pytest

from dlcli import registry
from dlcli.components import load_all
from dlcli.train.callbacks import Callback, CallbackSpec, listening

load_all()


@pytest.mark.parametrize("name", registry.callbacks.names())
def test_a_registered_callback_is_a_callback_with_a_documented_spec_named_as_registered(name: str) -> None:
    entry = registry.callbacks.entry(name)
    assert issubclass(entry.target, Callback) and issubclass(entry.spec, CallbackSpec)
    fields = entry.spec.model_fields
    assert fields["type"].default == name and typing.get_args(fields["type"].annotation) == (name,)
    undocumented = [key for key, field in fields.items() if key != "type" and not field.description]
    assert not undocumented, f"{name}: keys without a description: {undocumented}"



@pytest.mark.parametrize("name", registry.loggers.names())
def test_a_registered_logger_is_a_callback_with_a_documented_spec_named_as_registered(name: str) -> None:
    entry = registry.loggers.entry(name)
    assert issubclass(entry.target, Callback) and issubclass(entry.spec, CallbackSpec)
    fields = entry.spec.model_fields
    assert fields["type"].default == name and typing.get_args(fields["type"].annotation) == (name,)
    undocumented = [key for key, field in fields.items() if key != "type" and not field.description]
    assert not undocumented, f"{name}: keys without a description: {undocumented}"
    assert set(registry.loggers.names()) == {"csv", "mlflow", "tensorboard"}


class _Ticker(Callback):
    def on_batch_end(self, run, epoch, step, logs):  # type: ignore[no-untyped-def]
        pass


class _LateTicker(_Ticker):
    """Inherits its on_batch_end: it listens too."""


def test_listening_keeps_the_callbacks_that_define_a_hook_in_order() -> None:
    plain, ticker, late = Callback(), _Ticker(), _LateTicker()
    assert listening([plain, ticker, plain, late], "on_batch_end") == [ticker, late]
    assert listening([plain, ticker, late], "on_batch_begin") == []


def test_a_best_of_another_monitored_value_is_not_restored() -> None:
    # a resume may change train.monitor (or lose the validation data val_loss needs) and a callback's monitor: a
    # restored best val_loss of 0.17 compared against accuracies kept the best checkpoint stale (or moved it wrongly)
    import math

    from dlcli.train.callbacks import load_states, saved_states
    from dlcli.train.callbacks.early_stopping import EarlyStopping, EarlyStoppingSpec
    from dlcli.train.callbacks.monitor import Watch

    watch = Watch("accuracy", "max")
    watch.load({"monitor": "val_loss", "best": 0.17, "best_epoch": 2, "wait": 1})
    assert (watch.best, watch.best_epoch, watch.wait) == (-math.inf, 0, 0)
    watch.load({"monitor": "accuracy", "best": 0.9, "best_epoch": 2, "wait": 1})
    assert (watch.best, watch.best_epoch, watch.wait) == (0.9, 2, 1)
    before = EarlyStoppingSpec(type="early_stopping", monitor="val_loss", patience=3)
    stopping = EarlyStopping(before)
    stopping.wait, stopping.best, stopping.best_epoch = 2, 0.17, 4
    states, arrays = saved_states([stopping], [before])
    for spec, kept in ((before, True), (before.model_copy(update={"patience": 5}), True),
                       (before.model_copy(update={"monitor": "val_accuracy"}), False),
                       (before.model_copy(update={"mode": "max"}), False)):
        fresh = EarlyStopping(spec)
        load_states([fresh], [spec], states, arrays)
        assert (fresh.wait == 2 and fresh.best == 0.17) is kept, spec
