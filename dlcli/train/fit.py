"""fit_run: a spec trained end to end into its run directory, reporting through callbacks."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.checkpoint import load_checkpoint
from dlcli.data import batch_slices, shuffled_order
from dlcli.errors import CheckpointError, DivergedError, RunInterruptedError, SpecError
from dlcli.graph import Model, build_model
from dlcli.optimizers import Optimizer, create_optimizer
from dlcli.spec.callbacks import EarlyStoppingSpec, ReduceLROnPlateauSpec
from dlcli.spec.models import RunSpec
from dlcli.tensor import no_grad
from dlcli.tensor.memory import keep_freed_memory
from dlcli.train.builtin_callbacks import EarlyStopping, ReduceLROnPlateau, Watch, periodic_epochs
from dlcli.train.callbacks import Callback
from dlcli.train.datasets import Splits, load_splits
from dlcli.train.distributed import World, weights_hash
from dlcli.train.interrupts import EXIT_CODES, StopSignals
from dlcli.train.loop import (
    EpochProgress, Objective, Split, check_monitors, evaluate, fit_epoch, input_tensor, reported_names,
)
from dlcli.train.rundir import (
    RunDirectory, checkpoint_path, keep_as_previous, remove_stale_temporaries, restore_model, rng_state,
    save_run_checkpoint, write_history, write_json,
)


STEP_PAUSE = float(os.environ.get("DLCLI_TEST_PAUSE_STEP", "0") or 0)  # seconds after each step, for tests
# fault injection for the data-parallel tests: "RANK:STEP:KIND", KIND one of raise, hang, perturb
TEST_FAULT = os.environ.get("DLCLI_TEST_FAULT", "")


def _inject_fault(rank: int, step: int, model: Model) -> None:
    fault_rank, fault_step, kind = TEST_FAULT.split(":")
    if rank != int(fault_rank) or step != int(fault_step):
        return
    if kind == "raise":
        raise RuntimeError(f"injected fault on rank {rank} at step {step}")
    if kind == "hang":
        time.sleep(3600)
    if kind == "perturb":  # a replica drifts: the periodic weight-hash comparison must catch it
        next(iter(model.parameters().values())).data.reshape(-1)[0] += 1e-3


class Streams:
    """The run's random generators, one per purpose, all derived from the spec's seed."""

    def __init__(self, seed: int) -> None:
        model, split, shuffle = np.random.SeedSequence(seed).spawn(3)
        self.model = np.random.default_rng(model)  # weight init, then dropout masks
        self.split = np.random.default_rng(split)  # the validation hold-out
        self.shuffle = np.random.default_rng(shuffle)  # each epoch's order

    def state(self) -> dict[str, Any]:
        """States to save with a checkpoint."""
        return {"model": rng_state(self.model), "shuffle": rng_state(self.shuffle)}


def give_rank_its_stream(seed: int, rank: int, stream: np.random.Generator) -> None:
    """Rank 0 keeps the model stream (so one rank is exactly a single-process run); every other rank gets its
    own, so that the ranks' dropout masks differ. In place: the layers hold this generator."""
    if rank:
        stream.bit_generator.state = np.random.default_rng(np.random.SeedSequence([seed, rank])).bit_generator.state


def adapt_preprocessing(model: Model, train: Split, batch_size: int = 1024) -> None:
    """Adapt normalization layers on the training data as it reaches them (layers before them applied)."""
    for index, node in enumerate(model.nodes):
        if not getattr(node.layer, "needs_adapt", False):
            continue
        prefix = Model(model.inputs, model.nodes[:index], {node.inputs[0]: None}, model.sequential)  # type: ignore
        dtypes = {name: spec.dtype for name, spec in model.inputs.items()}
        with no_grad():
            chunks = []
            for start in range(0, len(train), batch_size):
                batch = {k: input_tensor(v[start:start + batch_size], dtypes[k]) for k, v in train.inputs.items()}
                values = batch if node.inputs[0] in batch else prefix(batch)
                chunks.append(values[node.inputs[0]].data)
        node.layer.adapt(np.concatenate(chunks))


def _default_monitor(spec: RunSpec, splits: Splits) -> str:
    monitor = spec.train.monitor
    if splits.validation is None and monitor.startswith("val_") and monitor == "val_loss":
        return "loss"  # no validation data: the best checkpoint follows the training loss
    return monitor


def fit_run(spec: RunSpec, run_dir: Path | RunDirectory, callbacks: list[Callback], resume: Path | None = None,
            world: World | None = None, checkpoint_bytes: bytes | None = None,
            allow_world_size_change: bool = False) -> dict[str, Any]:
    """Train `spec` into `run_dir`: checkpoints/last and /best, history, summary. Returns the summary.

    A path is claimed here (a new run: it must be missing or empty; with `resume`: the run's own folder),
    a RunDirectory was claimed by the caller; either way its lock is released when this returns or raises.

    With `resume`, continue exactly where that checkpoint stopped, at an epoch end or mid-epoch: weights, layer
    and optimizer state, the random streams, the position in the epoch's shuffled order, running loss and
    metric totals, history and the best value so far all come back. SIGINT/SIGTERM finish the current step,
    write a checkpoint and raise RunInterruptedError (exit 130/143).

    Under MPI (`world` with 2 or more ranks) each rank trains on its shard of every batch and rank 0 alone
    writes; `checkpoint_bytes` is the resumed checkpoint as rank 0 read it.
    """
    started = time.perf_counter()
    keep_freed_memory()
    world = world or World()
    if spec.train.batch_size % world.size:
        raise SpecError(f"train.batch_size: {spec.train.batch_size} does not split evenly over {world.size} ranks; "
                        f"use a multiple of {world.size} (the batch size is the global batch, shared by the ranks)")
    directory = run_dir if isinstance(run_dir, RunDirectory) else _claim(Path(run_dir), resume is not None, world)
    try:
        run = _Run(spec, directory, callbacks, world)
        if resume is not None:
            run.restore(resume, checkpoint_bytes, allow_world_size_change)
        if resume is None:
            run.begin()
        with StopSignals() as signals:
            run.signals = signals
            for cb in callbacks:
                cb.on_train_begin(run.info)
            try:
                for epoch in range(run.first_epoch, spec.train.epochs + 1):
                    if not run.train_epoch(epoch):
                        break
            except DivergedError as err:
                raise DivergedError(f"{err}{run.keep_last_finite_state()}") from None
        world.check_weights(run.model, run.step)
        summary = run.finish(time.perf_counter() - started)
    finally:
        directory.close()
    for cb in callbacks:
        cb.on_train_end(summary)
    return summary


def _claim(path: Path, resuming: bool, world: World) -> RunDirectory:
    """The run directory, locked by the one rank that writes it."""
    if world.rank != 0:
        return RunDirectory.unlocked(path)
    return RunDirectory.existing(path) if resuming else RunDirectory.fresh(path)


class _Run:
    """The pieces of one training run and the epoch loop over them."""

    def __init__(self, spec: RunSpec, directory: RunDirectory, callbacks: list[Callback], world: World) -> None:
        self.spec, self.directory, self.callbacks, self.world = spec, directory, callbacks, world
        self.run_dir = run_dir = directory.path
        self.leader = world.rank == 0  # the one rank that writes files
        self.streams = Streams(spec.seed)
        self.model = build_model(spec.model, self.streams.model, spec)
        self.splits = load_splits(spec, self.model, self.streams.split)
        adapt_preprocessing(self.model, self.splits.train)
        world.broadcast_model(self.model)
        give_rank_its_stream(spec.seed, world.rank, self.streams.model)
        self.optimizer = create_optimizer(spec.train.optimizer.model_dump(), self.model.parameters())
        self.objective = Objective(self.model, {k: v.shape[1:] for k, v in self.splits.train.targets.items()})
        # a misspelt monitor fails now, not after the first epoch has been paid for
        check_monitors(spec.train, reported_names(self.objective, self.splits.validation is not None))
        self.run_id: str | None = None  # a new run's comes with run.json (begin), a resumed run's from its checkpoint
        if self.leader:
            remove_stale_temporaries(run_dir)  # ours to remove: the lock says no other writer is here
        self.spec_pending = True  # spec.json: at the start of a new run, with the first `last` of a resumed one
        batch_size = spec.train.batch_size
        self.steps_per_epoch = min(-(-len(self.splits.train) // batch_size),
                                   spec.train.steps_per_epoch or len(self.splits.train))
        trainable, frozen = self.model.parameter_counts()
        self.info = {"run": spec.name, "run_dir": str(run_dir), "epochs": spec.train.epochs,
                     "steps_per_epoch": self.steps_per_epoch, "batch_size": batch_size,
                     "samples": len(self.splits.train),
                     "validation_samples": len(self.splits.validation) if self.splits.validation else 0,
                     "seed": spec.seed, "params": trainable + frozen, "trainable_params": trainable,
                     "resumed_from": None, "world_size": world.size}
        if directory.replaced is not None:
            self.info["replaced"] = str(directory.replaced)
        missing = self.splits.schema.get("missing")
        if missing and missing.get("policy") not in (None, "error"):  # what the missing-value policy did
            self.info["missing"] = {k: missing[k] for k in ("policy", "rows_dropped", "cells_filled") if k in missing}
        self.best = Watch(_default_monitor(spec, self.splits), spec.train.monitor_mode)
        self.stoppers = [EarlyStopping(c, i) for i, c in enumerate(spec.train.callbacks)
                         if isinstance(c, EarlyStoppingSpec)]
        self.reducers = [ReduceLROnPlateau(c, i) for i, c in enumerate(spec.train.callbacks)
                         if isinstance(c, ReduceLROnPlateauSpec)]
        self.periodic = periodic_epochs(spec.train.callbacks)
        self.history: list[dict[str, Any]] = []
        self.step, self.first_epoch, self.stopped_early = 0, 1, False
        self.steps_done = 0  # steps whose update has been applied (self.step only moves at epoch ends)
        self.last_saved_at: int | None = None  # the step checkpoints/last was written after, in this process
        self.resumed_epoch: dict[str, Any] | None = None  # a mid-epoch checkpoint's position, if resuming from one
        self.signals: StopSignals | None = None

    def restore(self, path: Path, content: bytes | None = None, allow_world_size_change: bool = False) -> None:
        """Continue from a run checkpoint (its epoch end, or the middle of an epoch).

        Under MPI every rank parses the bytes rank 0 read (`content`), so only rank 0 needs the file.
        """
        arrays, metadata = load_checkpoint(path, content)
        world = self.world
        saved_size = int(metadata.get("world_size", 1))
        if saved_size != world.size and not allow_world_size_change:
            raise SpecError(f"cannot resume {self.run_dir}: its checkpoint {path.name} was trained on {saved_size} "
                            f"rank{'s' if saved_size != 1 else ''} and this job has {world.size}; resume with "
                            f"{saved_size}, or pass --allow-world-size-change to re-shard from the saved step (the "
                            f"result then differs from an uninterrupted {saved_size}-rank run)")
        restore_model(self.model, arrays, path)
        self.optimizer.load_state({k.removeprefix("optimizer/"): v for k, v in arrays.items()
                                   if k.startswith("optimizer/")})
        if "weights_hash" in metadata and weights_hash(self.model) != metadata["weights_hash"]:
            raise CheckpointError(f"{path}: the restored weights do not match the hash the checkpoint recorded; "
                                  "the file is damaged")
        try:
            per_rank = metadata.get("rng_ranks")
            if per_rank and saved_size == world.size:
                self.streams.model.bit_generator.state = per_rank[world.rank]
            elif world.rank == 0:
                self.streams.model.bit_generator.state = metadata["rng"]["model"]
            self.streams.shuffle.bit_generator.state = metadata["rng"]["shuffle"]
            self.best.load(metadata["best"])
            self.first_epoch, self.step = int(metadata["epoch"]) + 1, int(metadata["step"])
            self.history = list(metadata["history"])
            self.resumed_epoch = metadata.get("in_epoch")
            self._restore_callbacks(list(metadata.get("callbacks", [])))
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: its training progress is incomplete ({err}); it cannot be "
                                  "resumed") from None
        self.info["resumed_from"] = str(path)
        # the state resumed from is only known good once a finite loss has been computed from it
        self.steps_done = self.last_saved_at = self.step
        self.run_id = metadata.get("run_id") or self.directory.manifest().get("run_id") or uuid.uuid4().hex

    def train_epoch(self, epoch: int) -> bool:
        """One epoch with validation, history and checkpoints; False when training must stop."""
        spec, streams = self.spec, self.streams
        progress = EpochProgress(self.objective)
        elapsed = 0.0
        if self.resumed_epoch is not None:  # redraw the interrupted epoch's order, then skip what was done
            streams.shuffle.bit_generator.state = self.resumed_epoch["shuffle_state"]
            progress.load(self.resumed_epoch["progress"])
            elapsed, model_state = float(self.resumed_epoch["seconds"]), streams.model.bit_generator.state
        epoch_start = time.perf_counter() - elapsed
        shuffle_state = streams.shuffle.bit_generator.state
        order = shuffled_order(len(self.splits.train), streams.shuffle) if spec.train.shuffle \
            else np.arange(len(self.splits.train))
        if self.resumed_epoch is not None:
            streams.model.bit_generator.state = model_state
            self.resumed_epoch = None
        batches = batch_slices(order, spec.train.batch_size)[:spec.train.steps_per_epoch]
        learning_rate = self.optimizer.learning_rate
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, len(batches))
        every = spec.train.checkpoint_every_steps
        first_step = self.step - progress.done

        def after_step(p: EpochProgress) -> bool:
            for cb in self.callbacks:
                cb.on_batch_end(epoch, p.done, p.logs())
            if STEP_PAUSE:  # fault-injection tests: slow steps down so a signal lands where the test wants
                time.sleep(STEP_PAUSE)
            if TEST_FAULT:
                _inject_fault(self.world.rank, first_step + p.done, self.model)
            self.steps_done = first_step + p.done
            if self.world.size == 1 and not p.stop_signal:  # one process may stop on a signal that came just now
                p.stop_signal = stop_requested()
            interrupted = p.stop_signal != 0
            if interrupted or (every and (first_step + p.done) % every == 0 and p.done < len(batches)):
                in_epoch = {"epoch": epoch, "shuffle_state": shuffle_state, "progress": p.state(),
                            "seconds": time.perf_counter() - epoch_start}
                self._checkpoint("last", epoch - 1, first_step + p.done, in_epoch)
            return interrupted

        def stop_requested() -> int:
            return int(self.signals.requested or 0) if self.signals is not None else 0

        with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is reported by the loss check, once
            completed = fit_epoch(self.model, self.objective, self.optimizer, self.splits.train, batches, progress,
                                  after_step, first_step=first_step, world=self.world, stop_requested=stop_requested)
        if not completed:
            if self.leader:
                write_history(self.run_dir, self.history)
            signum = progress.stop_signal
            workers = f" --workers {self.world.size}" if self.world.size > 1 else ""
            raise RunInterruptedError(
                f"stopped by {signal.Signals(signum).name} in epoch {epoch} after step {first_step + progress.done};"
                f" checkpoint written to {checkpoint_path(self.run_dir, 'last')}. Continue with: dlcli train "
                f"{self.run_dir} --resume{workers}", exit_code=EXIT_CODES[signum])
        self.step = first_step + progress.done
        logs = progress.logs()
        if self.splits.validation is not None:
            logs.update({f"val_{k}": v for k, v in
                         evaluate(self.model, self.objective, self.splits.validation, spec.train.batch_size).items()})
        logs.update(seconds=time.perf_counter() - epoch_start, learning_rate=learning_rate)
        logs = self.world.agree(logs)  # every rank takes the same decisions below: rank 0's numbers
        self.history.append({"epoch": epoch, **logs})
        improved = self.best.update(epoch, logs)
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)
        # the callbacks decide before the checkpoints, so that `last` holds the rate and the stop they chose
        for reducer in self.reducers:
            reducer.epoch_end(epoch, logs, self.optimizer)
        if any([stopper.epoch_end(epoch, logs, model_weights(self.model)) for stopper in self.stoppers]):
            self.stopped_early = True
        # best before last, history after both: `last` never names a best epoch whose file is not in place,
        # and history.jsonl never lists an epoch that no checkpoint holds (it may lag `last` by one epoch)
        if improved:
            self._checkpoint("best", epoch, self.step)
        self._checkpoint("last", epoch, self.step)
        if self.leader:
            write_history(self.run_dir, self.history)
        for p in self.periodic:
            if epoch % p.every_epochs == 0:  # type: ignore[operator]
                self._checkpoint(f"epoch_{epoch:04d}", epoch, self.step, event="periodic")
                if self.leader:
                    _prune(self.run_dir, p.keep_last)
        return not self.stopped_early

    def _checkpoint(self, kind: str, epoch: int, step: int, in_epoch: dict[str, Any] | None = None,
                    event: str | None = None) -> None:
        """Write checkpoints/<kind>; `last` keeps the one it replaces as `previous`, for --resume to fall back on."""
        path = checkpoint_path(self.run_dir, kind)
        world = self.world
        progress = {"run_id": self.run_id, "epoch": epoch, "step": step, "rng": self.streams.state(),
                    "history": self.history, "best": self.best.state(), "kind": kind, "in_epoch": in_epoch,
                    "world_size": world.size, "stopped_early": self.stopped_early,
                    "callbacks": self._callback_states(), "data": self.splits.schema,
                    "weights_hash": weights_hash(self.model)}
        if world.size > 1:  # each rank's dropout stream, so that a resume continues every rank exactly
            progress["rng_ranks"] = world.gather_json(rng_state(self.streams.model))
        if self.leader:
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "last":
                keep_as_previous(self.run_dir)
            save_run_checkpoint(path, self.model, self.optimizer, self.spec, progress)
            if kind == "last" and self.spec_pending:  # a resume may change train.epochs: spec.json follows last
                self.write_spec()
        if kind == "last":
            self.last_saved_at = step
        world.barrier()  # no rank runs ahead of a checkpoint that may still fail to write
        for cb in self.callbacks:
            cb.on_checkpoint(str(path), event or kind)

    def begin(self) -> None:
        """A new run starts writing its folder: run.json and spec.json (the leader writes them)."""
        if self.leader:
            self.run_id = self.directory.begin(self.spec.model_dump(mode="json"))
        self.spec_pending = False

    def write_spec(self) -> None:
        """spec.json of a resumed run (the leader writes it); a run from before run.json gets one now."""
        if self.leader:
            if self.directory.manifest().get("run_id") is None:
                self.run_id = self.directory.begin(self.spec.model_dump(mode="json"), self.run_id)
            write_json(self.run_dir / "spec.json", self.spec.model_dump(mode="json"))
        self.spec_pending = False

    def _callback_states(self) -> list[dict[str, Any]]:
        """What the spec's stateful callbacks have counted so far, by their index in train.callbacks."""
        return [{"index": c.index, **c.state()} for c in [*self.stoppers, *self.reducers]]

    def _restore_callbacks(self, states: list[dict[str, Any]]) -> None:
        by_index = {int(state["index"]): state for state in states}
        for callback in [*self.stoppers, *self.reducers]:
            if callback.index in by_index:
                callback.load(by_index[callback.index])

    def keep_last_finite_state(self) -> str:
        """After a non-finite loss: make checkpoints/last a state whose loss was finite; returns what was done.

        The loss is checked before each update, so the state saved after step k is only known good once step
        k + 1's loss is finite. When the loss broke right after `last` was written, that state is the broken
        one: `previous`, whose next loss was finite, takes its place (the history files follow it).
        """
        if self.last_saved_at is None or self.last_saved_at != self.steps_done:
            return ""  # no checkpoint, or a finite loss was computed from it since: it is a good state
        if not self.leader:
            return ""
        last, previous = checkpoint_path(self.run_dir, "last"), checkpoint_path(self.run_dir, "previous")
        if previous.is_file():
            os.replace(previous, last)
            _, metadata = load_checkpoint(last)
            write_history(self.run_dir, list(metadata.get("history", [])))
            where = f"epoch {metadata.get('epoch')}" + (f", step {metadata.get('step')}" if metadata.get("in_epoch")
                                                        else "")
            return (f". {last} was rolled back to its previous state ({where}): the state saved after step "
                    f"{self.steps_done} is the one that gave this loss")
        last.unlink(missing_ok=True)
        write_history(self.run_dir, [])
        return (f". {last} was removed: the only state it held is the one that gave this loss, and no earlier state "
                "was saved")

    def finish(self, seconds: float) -> dict[str, Any]:
        """Restore early stopping's best weights, write summary.json, return the summary."""
        for stopper in self.stoppers:
            if stopper.best_weights is not None:
                restore_weights(self.model, stopper.best_weights)
        summary = _summary(self.spec, self.run_dir, self.history, self.best, self.stopped_early, seconds, self.info)
        summary["run_id"] = self.run_id
        if self.leader:
            write_json(self.run_dir / "summary.json", summary)
            self.directory.finish()
        return summary


def model_weights(model: Model) -> dict[str, np.ndarray]:
    """The trainable arrays by name (views, not copies)."""
    return {k: t.data for k, t in model.parameters().items()}


def restore_weights(model: Model, weights: dict[str, np.ndarray]) -> None:
    """Copy saved arrays back into the model's weights."""
    for name, tensor in model.parameters().items():
        tensor.data[...] = weights[name]


def _prune(run_dir: Path, keep_last: int | None) -> None:
    if keep_last is None:
        return
    numbered = sorted(checkpoint_path(run_dir, "x").parent.glob("epoch_*.safetensors"))
    for old in numbered[:-keep_last]:
        old.unlink()


def _summary(spec: RunSpec, run_dir: Path, history: list[dict[str, Any]], best: Watch, stopped_early: bool,
             seconds: float, info: dict[str, Any]) -> dict[str, Any]:
    final = {k: v for k, v in history[-1].items() if k not in ("epoch", "seconds", "learning_rate")} if history else {}
    epoch_times = [row["seconds"] for row in history]
    return {"run": spec.name, "run_dir": str(run_dir), "epochs_run": len(history), "stopped_early": stopped_early,
            "final": final, "best": {**best.state(), "checkpoint": str(checkpoint_path(run_dir, "best"))},
            "seconds": seconds, "seconds_per_epoch": epoch_times, "samples": info["samples"],
            "params": info["params"]}
