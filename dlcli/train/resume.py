"""`dlcli train --resume`: find the run's last checkpoint, check the spec still fits it, continue."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from dlcli.checkpoint import load_checkpoint
from dlcli.errors import CheckpointError, SpecError
from dlcli.spec.keys import spec_changes
from dlcli.spec.load import apply_overrides, load_spec, validate_spec
from dlcli.spec.models import RunSpec
from dlcli.train.callbacks import Callback
from dlcli.train.distributed import World
from dlcli.train.fit import fit_run
from dlcli.train.moved_data import follow_moved_data, moved_data_changes
from dlcli.train.rundir import CHECKPOINTS, SUFFIX, RunDirectory, checkpoint_path

# changing these keys (or any key below them) keeps the saved arrays and counters meaningful; nothing else does
SAFE_KEYS = ("train.epochs", "train.callbacks", "train.loggers", "train.monitor", "description", "data.validation",
             "data.test", "tune")


def is_safe_change(key: str) -> bool:
    """Whether a changed key path is one of SAFE_KEYS or below one: whole parts of the path, so that
    data.validation_split (the examples trained on) is not taken for data.validation, nor train.monitor_mode
    (which way best compares) for train.monitor."""
    return any(key == safe or key.startswith((f"{safe}.", f"{safe}[")) for safe in SAFE_KEYS)


def newest_valid_checkpoint(run_dir: Path, notes: list[str]) -> Path | None:
    """checkpoints/last, or checkpoints/previous when last is missing or damaged (saying so in `notes`); None when
    the run has neither (it was stopped before its first checkpoint)."""
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
    return None


def resume_run(target: Path, overrides: tuple[str, ...], run_dir: Path | RunDirectory | None,
               callbacks: list[Callback], notes: list[str] | None = None, world: World | None = None,
               allow_world_size_change: bool = False) -> dict[str, Any] | None:
    """Continue the run of `target` (a spec file or a run directory) from its newest valid checkpoint.

    `notes` collects what the user should be told (a fallback to the previous checkpoint, or that the run has
    nothing left to do: then nothing is written and None is returned). A run stopped before its first checkpoint
    is begun again (_begin_again). Under MPI rank 0 locks the directory, finds and reads the checkpoint, and every
    rank parses the bytes it broadcasts. A RunDirectory `run_dir` was claimed by the caller (dlcli tune taking
    over a trial, which fails a trial without a checkpoint); its lock is released here all the same.
    """
    notes = notes if notes is not None else []
    world = world or World()
    directory = run_dir if isinstance(run_dir, RunDirectory) else None
    try:
        if directory is not None:
            run_dir = directory.path
            last = newest_valid_checkpoint(run_dir, notes)
            if last is None:
                raise CheckpointError(f"{checkpoint_path(run_dir, 'last')}: nothing to resume (no last checkpoint)")
        elif world.rank == 0:
            if target.is_dir():
                run_dir = run_dir or target
            else:
                run_dir = run_dir or newest_run(Path("runs") / load_spec(target, overrides).name, notes)
            directory = RunDirectory.existing(run_dir)  # before reading: no other writer may change it under us
            last = newest_valid_checkpoint(run_dir, notes)
            if last is None:
                _refuse_if_it_trained(run_dir)
        agreed = world.agree([str(run_dir), str(last) if last else None] if world.rank == 0 else None)
        run_dir, last = Path(agreed[0]), Path(agreed[1]) if agreed[1] else None
        if last is None:
            return _begin_again(target, overrides, run_dir, directory, callbacks, notes, world)
        content = world.broadcast_bytes(last.read_bytes() if world.rank == 0 else None) if world.size > 1 else None
        metadata = _saved_metadata(last, content)
        saved_doc = metadata["spec"]
        if target.is_dir():  # its data files may have moved with the workspace: followed where the bytes match
            document = world.agree(follow_moved_data(copy.deepcopy(saved_doc), run_dir, notes)
                                   if world.rank == 0 else None)
            spec = validate_spec(apply_overrides(document, list(overrides)), last)
        else:
            spec = load_spec(target, overrides)
        saved = RunSpec.model_validate(saved_doc).model_dump(mode="json")
        changes = spec_changes(saved, spec.model_dump(mode="json"))
        breaking = [c for c in changes if not is_safe_change(c[0])]
        if breaking:  # a data path that changed to a file of the recorded sha256 only moved
            breaking = world.agree(moved_data_changes(breaking, run_dir, notes) if world.rank == 0 else None)
        if breaking:
            listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in breaking)
            raise SpecError(f"cannot resume {run_dir}: the spec changed in ways its checkpoint cannot follow: {listed}")
        finished = _finished(run_dir, metadata, saved["train"]["epochs"], spec.train.epochs)
        if finished:
            notes.append(finished)
            return None
        return fit_run(spec, directory or RunDirectory.unlocked(run_dir), callbacks, resume=last, world=world,
                       checkpoint_bytes=content, allow_world_size_change=allow_world_size_change)
    finally:
        if directory is not None:
            directory.close()


def _begin_again(target: Path, overrides: tuple[str, ...], run_dir: Path, directory: RunDirectory | None,
                 callbacks: list[Callback], notes: list[str], world: World) -> dict[str, Any]:
    """Train a run stopped before its first checkpoint from its start: nothing in it can be resumed. Its spec is
    its spec.json (with `overrides`), or the spec file `target`; what the stopped start left (run.json, a
    logger's files) is moved aside and deleted once the new run finishes, as K-fold does with such a fold."""
    if target.is_dir():
        document = world.agree(_saved_spec_document(run_dir) if world.rank == 0 else None)
        spec, spec_file = validate_spec(apply_overrides(document, list(overrides)), run_dir / "spec.json"), None
    else:
        spec, spec_file = load_spec(target, overrides), target.resolve()
    if directory is not None:
        directory.begin_again()
    notes.append(f"{run_dir} was stopped before its first checkpoint, so nothing in it can be resumed: it was "
                 "begun again")
    return fit_run(spec, directory or RunDirectory.unlocked(run_dir), callbacks, world=world, spec_file=spec_file)


def _refuse_if_it_trained(run_dir: Path) -> None:
    """Only a run that never reached a checkpoint is begun again. One with a history or another checkpoint
    (best, a periodic one) trained, and lost its last (deleted, or rolled back after a divergence): beginning it
    again would replace what it holds, so that is a CheckpointError saying what it still has."""
    folder = run_dir / CHECKPOINTS
    kept = sorted(path.stem for path in folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []
    history = run_dir / "history.jsonl"
    if not kept and not (history.is_file() and history.stat().st_size > 0):
        return
    has = f"checkpoints {', '.join(kept)}" if kept else "a history of trained epochs"
    use = f"dlcli eval {run_dir} --checkpoint {kept[0]}, or model.init_from in a new run" if kept else \
        "model.init_from needs a checkpoint: none is left"
    raise CheckpointError(f"{run_dir}: nothing to resume: it has no last checkpoint, but it trained (it has {has}); "
                          f"use what it has ({use}), or train it from the start with --overwrite")


def _saved_spec_document(run_dir: Path) -> dict[str, Any]:
    """The spec.json of a run with no checkpoint; a CheckpointError (exit 4) when it has none to begin from."""
    try:
        return dict(json.loads((run_dir / "spec.json").read_text()))
    except FileNotFoundError:
        problem = "no spec.json"
    except (OSError, ValueError, TypeError) as err:
        problem = f"an unreadable spec.json ({err})"
    raise CheckpointError(f"{run_dir}: nothing to resume: it has no checkpoint and {problem}; train it with dlcli "
                          f"train SPEC --run-dir {run_dir} (adding --overwrite if the folder holds files)")


def newest_run(base: Path, notes: list[str]) -> Path:
    """The newest run of a spec: runs/<name>, or its highest-numbered runs/<name>-N, saying which when there are
    several."""
    numbered = [(int(path.name.rsplit("-", 1)[1]), path) for path in base.parent.glob(f"{base.name}-*")
                if path.name.rsplit("-", 1)[1].isdigit() and path.is_dir()]
    if not numbered:
        return base
    newest = max(numbered)[1]
    notes.append(f"resuming {newest}, the newest of {len(numbered) + base.is_dir()} runs of this spec; give "
                 "--run-dir (or the run directory itself) to resume another")
    return newest


def _finished(run_dir: Path, metadata: dict[str, Any], saved_epochs: int, epochs: int) -> str | None:
    """What to tell the user when the run has nothing left to do (None when it has); SpecError when asked for
    fewer epochs than it already has."""
    if metadata.get("in_epoch"):
        done, where = int(metadata["epoch"]), f"is in epoch {int(metadata['epoch']) + 1}"
        if epochs <= done:
            raise SpecError(f"cannot resume {run_dir} with train.epochs = {epochs}: it {where}, past that; give "
                            f"train.epochs = {done + 1} or more")
        return None
    done = int(metadata["epoch"])
    if epochs < done:
        raise SpecError(f"cannot resume {run_dir} with train.epochs = {epochs}: it already has {done} epochs; give "
                        f"more than {done} to train on, or use it as it is (dlcli eval {run_dir})")
    if metadata.get("stopped_early") and epochs <= saved_epochs:
        reason = str(metadata.get("stop_reason") or "early_stopping").replace("_", " ")
        return (f"nothing to do: {run_dir} stopped early at epoch {done} of {saved_epochs} ({reason}), and "
                f"train.epochs asks for {epochs}; it is finished. To train on regardless, resume with "
                f"--set train.epochs=N for N above {saved_epochs}")
    if epochs == done:
        return (f"nothing to do: {run_dir} already has {done} of {done} epochs and train.epochs asks for {epochs}; "
                f"to train longer, resume with --set train.epochs=N for N above {done}")
    return None


def _saved_metadata(path: Path, content: bytes | None = None) -> dict[str, Any]:
    if content is None and not path.is_file():
        raise CheckpointError(f"{path}: nothing to resume (no last checkpoint)")
    _, metadata = load_checkpoint(path, content)
    if "spec" not in metadata:
        raise CheckpointError(f"{path}: holds no spec; it was not written by dlcli train")
    return metadata
