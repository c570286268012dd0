"""Callbacks: the protocol the train loop calls (base.py), and the callbacks a spec can name, one a file.

Importing this package registers every callback in `registry.callbacks` under the name a `[[train.callbacks]]`
table gives as `type`, with its spec model, and every logger (an experiment tracker: csv, tensorboard, mlflow)
in `registry.loggers` under the name `[train] loggers` gives. Adding one is one new file here plus its import
below. Loggers are callbacks that only watch: the spec lists them apart because they run on rank 0 alone, keep
no state in checkpoints (they bring their tracker in line with the run's history when it starts) and may need
an optional extra.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcli import registry
from dlcli.train.callbacks import early_stopping, model_checkpoint, reduce_lr_on_plateau  # noqa: F401 - registers
from dlcli.train.callbacks import csv_logger, mlflow_logger, tensorboard_logger  # noqa: F401 - registers loggers
from dlcli.train.callbacks.base import Callback, CallbackSpec, Run, listening

__all__ = ["Callback", "CallbackSpec", "Run", "create_callbacks", "create_loggers", "listening", "load_states",
           "saved_states"]


def create_callbacks(specs: list[Any]) -> list[Callback]:
    """The callbacks of train.callbacks, in the spec's order (a checkpoint keeps their state by that index)."""
    return [registry.callbacks.get(spec.type)(spec) for spec in specs]


def create_loggers(specs: list[Any]) -> list[Callback]:
    """The loggers of train.loggers, in the spec's order; a missing optional extra fails here, before the run."""
    return [registry.loggers.get(spec.type)(spec) for spec in specs]


def saved_states(callbacks: list[Callback], specs: list[Any]) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """What the spec's callbacks have counted, for checkpoint metadata (by index in train.callbacks, with the
    type), and the arrays they keep, as checkpoint tensors "callbacks/<index>/<name>"."""
    states, arrays = [], {}
    for index, (callback, spec) in enumerate(zip(callbacks, specs)):
        state = dict(callback.state())
        for name, array in state.pop("arrays", {}).items():
            arrays[f"callbacks/{index}/{name}"] = array
        if state:
            states.append({"index": index, "type": spec.type, **_watching(spec), **state})
    return states, arrays


def _watching(spec: Any) -> dict[str, Any]:
    """What a monitoring callback's counts are counts of: its monitor and mode (none for other callbacks)."""
    return {"watching": [spec.monitor, spec.mode]} if hasattr(spec, "monitor") and hasattr(spec, "mode") else {}


def load_states(callbacks: list[Callback], specs: list[Any], states: list[dict[str, Any]],
                arrays: dict[str, np.ndarray]) -> None:
    """Give each spec callback what saved_states() kept of it. A resume may change train.callbacks: a callback
    whose index now holds another type, or that now watches another value or direction, starts afresh (a best
    val_loss is no best val_accuracy)."""
    by_index = {int(state["index"]): state for state in states}
    for index, (callback, spec) in enumerate(zip(callbacks, specs)):
        state = by_index.get(index)
        if state is None or state.get("type", spec.type) != spec.type:  # checkpoints before types: same order
            continue
        if "watching" in state and list(state["watching"]) != _watching(spec).get("watching"):
            continue
        prefix = f"callbacks/{index}/"
        kept = {name.removeprefix(prefix): array for name, array in arrays.items() if name.startswith(prefix)}
        callback.load_state({**{k: v for k, v in state.items() if k not in ("index", "type", "watching")},
                             **({"arrays": kept} if kept else {})})
