"""A run directory: the resolved spec, history files, summary, and checkpoints of model + optimizer + RNG."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from dlcli import __version__
from dlcli.checkpoint import load_checkpoint, save_checkpoint, write_atomically
from dlcli.errors import CheckpointError, SpecError
from dlcli.graph import Model, build_model
from dlcli.optimizers import Optimizer
from dlcli.spec.models import RunSpec

CHECKPOINTS = "checkpoints"
SUFFIX = ".safetensors"


def checkpoint_path(run_dir: Path, kind: str) -> Path:
    """runs/<name>/checkpoints/<kind>.safetensors."""
    return run_dir / CHECKPOINTS / f"{kind}{SUFFIX}"


def _finite(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete temp files a killed writer left in the run directory (never a finished checkpoint)."""
    for folder in (run_dir, run_dir / CHECKPOINTS):
        if folder.is_dir():
            for leftover in folder.glob(".*.tmp-*"):
                leftover.unlink(missing_ok=True)


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically (temp file, fsync, rename)."""
    write_atomically(path, (json.dumps(_finite(value), indent=2, allow_nan=False) + "\n").encode())


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """history.jsonl (one epoch a line) and history.csv (a column per value), rewritten atomically."""
    lines = "".join(json.dumps(_finite(row), allow_nan=False) + "\n" for row in history)
    write_atomically(run_dir / "history.jsonl", lines.encode())
    columns = list(dict.fromkeys(key for row in history for key in row))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_atomically(run_dir / "history.csv", table.getvalue().encode())


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """A generator's state as JSON-able data (PCG64's 128-bit integers stay Python ints)."""
    return rng.bit_generator.state


def model_arrays(model: Model, optimizer: Optimizer | None) -> dict[str, np.ndarray]:
    """Every array a checkpoint keeps: weights, layer state and optimizer state, by prefixed name."""
    arrays = {f"param/{k}": t.data for k, t in model.parameters().items()}
    arrays.update({f"state/{k}": v for k, v in model.state().items()})
    if optimizer is not None:
        arrays.update({f"optimizer/{k}": np.asarray(v) for k, v in optimizer.state().items()})
    return arrays


def save_run_checkpoint(path: Path, model: Model, optimizer: Optimizer, spec: RunSpec,
                        progress: dict[str, Any]) -> None:
    """A checkpoint with everything to evaluate, predict and resume: arrays plus spec, epoch, step, RNG, history."""
    metadata = {"dlcli_version": __version__, "spec": spec.model_dump(mode="json"), **_finite(progress)}
    save_checkpoint(path, model_arrays(model, optimizer), metadata)


def resolve_checkpoint(target: Path, which: str = "best") -> Path:
    """A checkpoint file, or a run directory's `which` checkpoint (falling back to last)."""
    if target.is_dir():
        for kind in (which, "last"):
            candidate = checkpoint_path(target, kind)
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"{target}: no checkpoint in {target / CHECKPOINTS}; is this a run directory "
                              "(runs/<name>/) of a run that finished an epoch?")
    if not target.exists():
        raise CheckpointError(f"{target}: no such checkpoint or run directory")
    return target


def load_run(target: Path, which: str = "best") -> tuple[RunSpec, Model, dict[str, np.ndarray], dict[str, Any], Path]:
    """Rebuild the model of a checkpoint (file or run directory) with its weights and state restored."""
    path = resolve_checkpoint(target, which)
    arrays, metadata = load_checkpoint(path)
    if "spec" not in metadata:
        raise CheckpointError(f"{path}: holds no spec; it was not written by dlcli train")
    try:
        spec = RunSpec.model_validate(metadata["spec"])
    except ValueError as err:
        raise CheckpointError(f"{path}: its spec no longer validates ({str(err).splitlines()[0]}); "
                              f"it was written by dlcli {metadata.get('dlcli_version', '?')}") from None
    try:
        model = build_model(spec.model, np.random.default_rng(0), spec)
    except SpecError as err:
        raise CheckpointError(f"{path}: its model cannot be rebuilt: {err}") from None
    restore_model(model, arrays, path)
    return spec, model, arrays, metadata, path


def restore_model(model: Model, arrays: dict[str, np.ndarray], path: Path) -> None:
    """Copy weights and state from checkpoint arrays into the model; every name and shape must match.

    A layer with `load_state` (text_vectorization: a vocabulary as long as the data it adapted on made it)
    takes its saved state arrays itself and checks them; the ValueError it raises becomes a CheckpointError.
    """
    expected = {f"param/{k}": t.data for k, t in model.parameters().items()}
    expected.update({f"state/{k}": v for k, v in model.state().items()})
    missing = [k for k in expected if k not in arrays]
    if missing:
        raise CheckpointError(f"{path}: missing tensor {missing[0]!r} ({len(missing)} missing); the checkpoint "
                              "does not belong to this model")
    self_loading = [layer for layer in model.layers if hasattr(layer, "load_state")]
    for layer in self_loading:
        try:
            layer.load_state({weight: arrays[f"state/{layer.name}/{weight}"] for weight in layer.state})
        except ValueError as err:
            raise CheckpointError(f"{path}: layer {layer.name!r} cannot take its saved state: {err}") from None
    sized_by_data = {f"state/{k}" for layer in self_loading for k in layer.state_arrays()}
    for key, target in expected.items():
        if key in sized_by_data:
            continue
        saved = arrays[key]
        if saved.shape != target.shape:
            raise CheckpointError(f"{path}: tensor {key!r} has shape {list(saved.shape)}, the model needs "
                                  f"{list(target.shape)}")
        target[...] = saved
