"""`[model] init_from`: a new run starts from another run's weights, matched by name (fine-tuning).

Every weight and layer state array (batch-norm statistics, a normalization's mean) whose name and shape the
other run's checkpoint has is copied in; the rest keep their initial values. The optimizer starts fresh:
only the model's arrays are read. The report lists every array that loaded, was missing from the checkpoint
(a new head) or was unexpected (in the checkpoint, not in the model: a dropped head); with strict, any
missing or unexpected array is an error, and a name with another shape always is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.checkpoint import load_checkpoint
from dlcli.errors import CheckpointError, SpecError
from dlcli.graph import Model
from dlcli.train.run_checkpoints import resolve_checkpoint

MODEL_PREFIXES = ("param/", "state/")


@dataclass
class InitSource:
    """The checkpoint model.init_from names, read and checked against the model: `saved` are its model arrays."""

    path: Path
    saved: dict[str, np.ndarray]


def read_init_source(model: Model, source: Path, strict: bool = False) -> InitSource:
    """Read `source` (a run directory: its best checkpoint, else its last; or a checkpoint file) and check it
    against `model`, before the data loads and the kernels compile: a wrong path or a model that does not fit is
    refused at once, not after seconds of compiling on a fresh machine.

    A SpecError names model.init_from for a shape mismatch, and with `strict` for any missing or unexpected
    array; a file that is not a dlcli checkpoint is a CheckpointError, as everywhere.
    """
    try:
        path = resolve_checkpoint(Path(source), "best")
    except CheckpointError as err:  # which key named the missing run: the path alone does not say
        raise CheckpointError(f"model.init_from: {err}") from None
    arrays, _ = load_checkpoint(path)
    saved = {name: array for name, array in arrays.items() if name.startswith(MODEL_PREFIXES)}
    if not saved:
        raise CheckpointError(f"{path}: holds no model weights; model.init_from needs a checkpoint of a dlcli run")
    init = InitSource(path, saved)
    _matched(model, init, strict)
    return init


def initialize_from(model: Model, init: InitSource, strict: bool = False) -> dict[str, Any]:
    """Copy into `model` the arrays of `init` that it has by name (after adaptation, whose statistics a loaded
    state replaces); returns {"source", "loaded", "missing", "unexpected"} (weight names)."""
    targets, report = _matched(model, init, strict)  # again: adapted state arrays are sized by the data
    saved, self_loading = init.saved, _self_loading_keys(model)
    _load_self_loading(model, saved, init.path)
    for key, target in targets.items():
        if key in saved and key not in self_loading:
            target[...] = saved[key]
    return report


def _matched(model: Model, init: InitSource, strict: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The model's arrays by checkpoint key, and the report; raises for a shape mismatch (and, with strict, for
    any name on one side only)."""
    path, saved = init.path, init.saved
    targets = {f"param/{k}": t.data for k, t in model.parameters().items()}
    targets.update({f"state/{k}": v for k, v in model.state().items()})
    self_loading = _self_loading_keys(model)
    mismatched = [f"{_bare(k)}: checkpoint {list(saved[k].shape)}, model {list(t.shape)}"
                  for k, t in targets.items() if k in saved and k not in self_loading and saved[k].shape != t.shape]
    if mismatched:
        raise SpecError(f"model.init_from: {path} has {len(mismatched)} weight{'s' if len(mismatched) > 1 else ''} "
                        f"of another shape than this model's: {'; '.join(mismatched)}; give those layers other names "
                        "(they are then initialized, not loaded) or the shapes of the run they come from")
    report = {"source": str(path), "loaded": [_bare(k) for k in targets if k in saved],
              "missing": [_bare(k) for k in targets if k not in saved],
              "unexpected": sorted(_bare(k) for k in saved if k not in targets)}
    if strict and (report["missing"] or report["unexpected"]):
        parts = [f"{what} {', '.join(report[what])}" for what in ("missing", "unexpected") if report[what]]
        raise SpecError(f"model.init_from: {path} does not match this model exactly (--strict): "
                        f"{'; '.join(parts)}; drop --strict to load what matches by name")
    return targets, report


def _bare(key: str) -> str:
    """A checkpoint key without its param/ or state/ prefix: the name users see in summaries."""
    return key.split("/", 1)[1]


def _self_loading_keys(model: Model) -> set[str]:
    """State arrays that layers size from data (text_vectorization's vocabulary): they check them themselves."""
    return {f"state/{k}" for layer in model.layers if hasattr(layer, "load_state") for k in layer.state_arrays()}


def _load_self_loading(model: Model, saved: dict[str, np.ndarray], path: Path) -> None:
    for layer in model.layers:
        if not hasattr(layer, "load_state"):
            continue
        keys = {weight: f"state/{layer.name}/{weight}" for weight in layer.state}
        if all(key in saved for key in keys.values()):
            try:
                layer.load_state({weight: saved[key] for weight, key in keys.items()})
            except ValueError as err:
                raise SpecError(f"model.init_from: layer {layer.name!r} cannot take the state {path} has: "
                                f"{err}") from None
