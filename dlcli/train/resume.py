"""`dlcli train --resume`: find the run's last checkpoint, check the spec still fits it, continue."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from dlcli.checkpoint import load_checkpoint
from dlcli.errors import CheckpointError, SpecError
from dlcli.spec.load import apply_overrides, load_spec, validate_spec
from dlcli.spec.models import RunSpec
from dlcli.train.callbacks import Callback
from dlcli.train.distributed import World
from dlcli.train.fit import fit_run
from dlcli.train.rundir import checkpoint_path

# changing these keeps the saved arrays meaningful; anything else under model or train.optimizer does not
SAFE_PREFIXES = ("train.epochs", "train.callbacks", "train.monitor", "description", "data.validation", "data.test")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and any(isinstance(v, dict) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def spec_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, saved value, new value) for every leaf that differs."""
    old, new = _flatten(saved), _flatten(current)
    return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def newest_valid_checkpoint(run_dir: Path, notes: list[str]) -> Path:
    """checkpoints/last, or checkpoints/previous when last is missing or damaged (saying so in `notes`)."""
    last, previous = checkpoint_path(run_dir, "last"), checkpoint_path(run_dir, "previous")
    problem = None
    if last.is_file():
        try:
            load_checkpoint(last)
            return last
        except CheckpointError as err:
            problem = str(err)
    if previous.is_file():
        load_checkpoint(previous)  # a damaged previous checkpoint is the error to report
        notes.append(f"{last.name} is {'unusable: ' + problem if problem else 'missing'}; resuming from "
                     f"{previous} instead")
        return previous
    if problem:
        raise CheckpointError(problem)
    raise CheckpointError(f"{last}: nothing to resume (no last checkpoint); train without --resume first")


def resume_run(target: Path, overrides: tuple[str, ...], run_dir: Path | None,
               callbacks: list[Callback], notes: list[str] | None = None, world: World | None = None,
               allow_world_size_change: bool = False) -> dict[str, Any]:
    """Continue the run of `target` (a spec file or a run directory) from its newest valid checkpoint.

    `notes` collects what the user should be told (a fallback to the previous checkpoint). Under MPI rank 0
    finds and reads the checkpoint and every rank parses the bytes it broadcasts.
    """
    notes = notes if notes is not None else []
    world = world or World()
    if world.rank == 0:
        if target.is_dir():
            run_dir = run_dir or target
        else:
            run_dir = run_dir or Path("runs") / load_spec(target, overrides).name
        last = newest_valid_checkpoint(run_dir, notes)
    run_dir, last = (Path(p) for p in world.agree([str(run_dir), str(last)] if world.rank == 0 else None))
    content = world.broadcast_bytes(last.read_bytes() if world.rank == 0 else None) if world.size > 1 else None
    saved_doc = _saved_spec(last, content)
    if target.is_dir():
        spec = validate_spec(apply_overrides(copy.deepcopy(saved_doc), list(overrides)), last)
    else:
        spec = load_spec(target, overrides)
    saved = RunSpec.model_validate(saved_doc).model_dump(mode="json")
    changes = spec_changes(saved, spec.model_dump(mode="json"))
    breaking = [c for c in changes if not c[0].startswith(SAFE_PREFIXES)]
    if breaking:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in breaking)
        raise SpecError(f"cannot resume {run_dir}: the spec changed in ways its checkpoint cannot follow: {listed}")
    return fit_run(spec, run_dir, callbacks, resume=last, world=world, checkpoint_bytes=content,
                   allow_world_size_change=allow_world_size_change)


def _saved_spec(path: Path, content: bytes | None = None) -> dict[str, Any]:
    if content is None and not path.is_file():
        raise CheckpointError(f"{path}: nothing to resume (no last checkpoint)")
    _, metadata = load_checkpoint(path, content)
    if "spec" not in metadata:
        raise CheckpointError(f"{path}: holds no spec; it was not written by dlcli train")
    return metadata["spec"]
