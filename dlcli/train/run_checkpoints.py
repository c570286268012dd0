"""A run's checkpoints: the arrays one holds (weights, layer state, optimizer state), writing one with everything
a resume needs, finding one in a run directory, and rebuilding its model from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from dlcli import __version__
from dlcli.checkpoint import load_checkpoint, save_checkpoint
from dlcli.errors import CheckpointError, SpecError
from dlcli.graph import Model, build_model
from dlcli.optimizers import Optimizer
from dlcli.spec.load import describe_error
from dlcli.spec.models import RunSpec
from dlcli.train.rundir import CHECKPOINTS, SUFFIX, checkpoint_path, finite_for_json


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
                        progress: dict[str, Any], extra: dict[str, np.ndarray] | None = None) -> None:
    """A checkpoint with everything to evaluate, predict and resume: arrays plus spec, epoch, step, RNG, history;
    `extra` arrays (the callbacks' own) are stored beside the model's."""
    metadata = {"dlcli_version": __version__, "spec": spec.model_dump(mode="json"), **finite_for_json(progress)}
    save_checkpoint(path, {**model_arrays(model, optimizer), **(extra or {})}, metadata)


def resolve_checkpoint(target: Path, which: str = "best") -> Path:
    """A checkpoint file, or a run directory's `which` checkpoint; `best` falls back to `last` (a run with no
    validation improvement yet), `last` never falls back: the error lists the checkpoints the run has."""
    if target.is_dir():
        for kind in (which, "last") if which == "best" else (which,):
            candidate = checkpoint_path(target, kind)
            if candidate.is_file():
                return candidate
        present = sorted(path.stem for path in (target / CHECKPOINTS).glob(f"*{SUFFIX}")) \
            if (target / CHECKPOINTS).is_dir() else []
        if present:
            choices = " or ".join(f"--checkpoint {kind}" for kind in present if kind in ("best", "last"))
            other = f"; or give a file, e.g. {target / CHECKPOINTS / (present[0] + SUFFIX)}"
            raise CheckpointError(f"{target}: has no {which} checkpoint; it has {', '.join(present)}: use "
                                  f"{choices or 'a file'}{other}")
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
    except ValidationError as err:  # which key, and why: "1 validation error for RunSpec" said neither
        first = describe_error(err.errors()[0], metadata["spec"]) if err.errors() else str(err).splitlines()[0]
        raise CheckpointError(f"{path}: its spec no longer validates ({first}); it was written by dlcli "
                              f"{metadata.get('dlcli_version', '?')}") from None
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
