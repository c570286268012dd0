"""fit_run: a spec trained end to end into its run directory; the loop calls the callbacks' hooks."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from dlcli.checkpoint import folder_syncs_deferred, load_checkpoint
from dlcli.data import batch_slices, shuffled_order
from dlcli.errors import CheckpointError, DataError, DivergedError, RunInterruptedError, SpecError
from dlcli.graph import build_model, check_ids_fit
from dlcli.optimizers import create_optimizer
from dlcli.spec.models import RunSpec
from dlcli.tensor.memory import keep_freed_memory
from dlcli.train.callbacks import (Callback, create_callbacks, create_loggers, listening, load_states,
                                   saved_states)
from dlcli.train.callbacks.injected import injected_callbacks
from dlcli.train.callbacks.monitor import Watch
from dlcli.train.datasets import load_splits
from dlcli.train.distributed import World, weights_hash
from dlcli.train.handle import RunHandle
from dlcli.train.init_from import initialize_from, read_init_source
from dlcli.train.interrupts import EXIT_CODES, StopSignals
from dlcli.train.manifest import ManifestKeeper, status_of
from dlcli.train.adapt import adapt_preprocessing
from dlcli.train.divergence import keep_last_good_state
from dlcli.train.run_report import run_summary, start_info
from dlcli.train.precompile import compiling_ahead
from dlcli.train.loop import Epoch, EpochProgress, Objective, evaluate, fit_epoch
from dlcli.train.monitored import (best_monitor, check_monitors, check_monitors_early, log_directions,
                                   reported_names)
from dlcli.train.rundir import (
    RunDirectory, checkpoint_path, keep_as_previous, link_checkpoint, remove_stale_temporaries, write_history,
    write_json,
)
from dlcli.train.run_checkpoints import restore_model, rng_state, save_run_checkpoint
from dlcli.train.streams import Streams, give_rank_its_stream


def fit_run(spec: RunSpec, run_dir: Path | RunDirectory, callbacks: list[Callback], resume: Path | None = None,
            world: World | None = None, checkpoint_bytes: bytes | None = None,
            allow_world_size_change: bool = False, spec_file: Path | None = None,
            provenance: dict[str, Any] | None = None, strict: bool = False) -> dict[str, Any]:
    """Train `spec` into `run_dir`: checkpoints/last and /best, history, summary. Returns the summary.

    `callbacks` (reporters, a caller's own) follow the spec's train.callbacks; every one gets every hook with
    this run as its handle. A path is claimed here (a new run: it must be missing or empty; with `resume`:
    the run's own folder), a RunDirectory was claimed by the caller; either way its lock is released when
    this returns or raises.

    With `resume`, continue exactly where that checkpoint stopped, at an epoch end or mid-epoch: weights, layer
    and optimizer state, the random streams, the position in the epoch's shuffled order, running loss and
    metric totals, history, the best value so far and the spec's callbacks' counts all come back.
    SIGINT/SIGTERM finish the current step, write a checkpoint and raise RunInterruptedError (exit 130/143).

    Under MPI (`world` with 2 or more ranks) each rank trains on its shard of every batch and rank 0 alone
    writes; `checkpoint_bytes` is the resumed checkpoint as rank 0 read it.

    run.json (train/manifest.py) says "running" from the start (or the resume), is brought up to date at every
    epoch end, and gets the way training ended on every way out; `spec_file` is the TOML file the spec came
    from, if any (the manifest records its git commit); `provenance` adds keys to a new run's manifest (reproduce
    names the run it re-runs).

    A new run with model.init_from starts from that run's weights (`strict`: every name must match); a resumed
    one has them in its checkpoint already. With the optimizer's use_ema the weights become their averages
    once training ends (not when a signal stops it), and `last` is written again with them.
    """
    started = time.perf_counter()
    keep_freed_memory()
    world = world or World()
    if spec.train.batch_size % world.size:
        raise SpecError(f"train.batch_size: {spec.train.batch_size} does not split evenly over {world.size} ranks; "
                        f"use a multiple of {world.size} (the batch size is the global batch, shared by the ranks)")
    directory = run_dir if isinstance(run_dir, RunDirectory) \
        else RunDirectory.claimed(Path(run_dir), resume is not None, writer=world.rank == 0)
    run: _Run | None = None
    try:
        run = _Run(spec, directory, callbacks, world, initialize=resume is None, strict=strict)
        if resume is not None:
            run.restore(resume, checkpoint_bytes, allow_world_size_change)
        else:
            run.begin(spec_file, provenance)
        try:
            with StopSignals() as signals:
                run.signals = signals
                run.handle.call(run.callbacks, "on_train_begin", run.info)
                try:
                    for epoch in range(run.first_epoch, spec.train.epochs + 1):
                        run.train_epoch(epoch)
                        if run.handle.stop_reason is not None:
                            break
                    run.finalize_weights()
                except DivergedError as err:
                    raise DivergedError(f"{err}{run.keep_last_finite_state()}") from None
            world.check_weights(run.model, run.handle.step)
            summary = run.finish(time.perf_counter() - started)
        except BaseException as err:
            run.stopped(err)
            raise
    finally:
        if run is not None and run.compiling is not None:
            run.compiling.stop()
        directory.close()
    run.handle.call(run.observers, "on_train_end", summary)  # summary.json is written and the lock released
    return summary


class _Run:
    """One training run: its pieces, the epoch loop over them, and the handle its callbacks act through."""

    def __init__(self, spec: RunSpec, directory: RunDirectory, callbacks: list[Callback], world: World,
                 initialize: bool = True, strict: bool = False) -> None:
        self.spec, self.directory, self.world = spec, directory, world
        self.run_dir = run_dir = directory.path
        self.leader = world.rank == 0  # the one rank that writes files
        self.streams = Streams(spec.seed)
        self.model = build_model(spec.model, self.streams.model, spec)
        # a misspelt monitor or a wrong init_from is refused before the data loads and the kernels compile; every
        # rank reads the other run's weights, as it reads the data (a resume has them in its checkpoint)
        check_monitors_early(spec, self.model, strict=initialize)
        if initialize:  # a resumed run's vocabulary fitted its table: it is not refused now
            check_ids_fit(self.model)
        init = read_init_source(self.model, spec.model.init_from, strict) \
            if initialize and spec.model.init_from is not None else None
        # an empty kernel cache: compile while the data loads, in a thread and a child process
        with compiling_ahead(spec, world.size) as self.compiling:
            self.splits = load_splits(spec, self.model, self.streams.split)
        adapt_preprocessing(self.model, self.splits.train)
        self.init_report = initialize_from(self.model, init, strict) if init is not None else None
        world.broadcast_model(self.model)
        give_rank_its_stream(spec.seed, world.rank, self.streams.model)
        self.optimizer = create_optimizer(spec.train.optimizer.model_dump(), self.model.trainable_parameters())
        # a resume's metrics were accepted when it began; a misspelt monitor fails now, before the first epoch
        self.objective = Objective(self.model, {k: v.shape[1:] for k, v in self.splits.train.targets.items()},
                                   strict=initialize)
        check_monitors(spec.train, reported_names(self.objective, self.splits.validation is not None))
        self.run_id: str | None = None  # a new run's comes with run.json (begin), a resumed run's from its checkpoint
        self.manifest = ManifestKeeper(directory, self.leader)  # run.json, kept current by the leader
        if self.leader:
            remove_stale_temporaries(run_dir)  # ours to remove: the lock says no other writer is here
        self.spec_pending = True  # spec.json: at the start of a new run, with the first `last` of a resumed one
        self.steps_per_epoch = min(-(-len(self.splits.train) // spec.train.batch_size),
                                   spec.train.steps_per_epoch or len(self.splits.train))
        self.info = start_info(spec, self.model, self.splits, self.steps_per_epoch, directory, world,
                               self.init_report)
        self.history: list[dict[str, Any]] = []
        self.handle = RunHandle(self.model, self.optimizer, world, run_dir, self.info,
                                log_directions(self.model, self.objective), self.history, spec.model_dump(mode="json"))
        monitor = best_monitor(spec.train, self.splits.validation is not None)
        self.best = Watch(monitor, self.handle.direction(monitor) if spec.train.monitor_mode == "auto"
                          else spec.train.monitor_mode)
        # the spec's callbacks decide first (and their state is saved, by index); then the loggers (rank 0 alone
        # logs), reporters and tests' own
        self.spec_callbacks = create_callbacks(spec.train.callbacks)
        loggers = create_loggers(spec.train.loggers) if self.leader else []
        self.observers = [*loggers, *callbacks, *injected_callbacks()]
        self.callbacks = [*self.spec_callbacks, *self.observers]
        self.first_epoch = 1
        self.last_saved_at: int | None = None  # the step checkpoints/last was written after, in this process
        self.resumed_epoch: dict[str, Any] | None = None  # a mid-epoch checkpoint's position, if resuming from one
        self.signals: StopSignals | None = None
        self.averaged = False  # whether the weights became the optimizer's averages (see finalize_weights)

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
        saved_files = (metadata.get("data") or {}).get("files", {}).get("listings")
        if saved_files is not None and saved_files != self.splits.schema.get("files", {}).get("listings"):
            raise DataError(f"cannot resume {self.run_dir}: its data folders do not hold the files they held when "
                            f"{path.name} was written (files added, removed or renamed, or labels changed), so the "
                            f"epoch cannot continue where it stopped; put them back, or train a new run")
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
            self.first_epoch, self.handle.step = int(metadata["epoch"]) + 1, int(metadata["step"])
            self.history[:] = list(metadata["history"])  # the handle shows callbacks this same list
            self.resumed_epoch = metadata.get("in_epoch")
            load_states(self.spec_callbacks, self.spec.train.callbacks, list(metadata.get("callbacks", [])), arrays)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: its training progress is incomplete ({err}); it cannot be "
                                  "resumed") from None
        self.info["resumed_from"] = str(path)
        if metadata.get("stop_reason") is not None:  # the run had ended by a stop, and is asked for more epochs
            self.info["resumed_after_stop"] = metadata["stop_reason"]
        # the state resumed from is only known good once a finite loss has been computed from it
        self.last_saved_at = self.handle.step
        self.run_id = metadata.get("run_id") or self.directory.manifest().get("run_id") or uuid.uuid4().hex
        self.handle.run_id = self.run_id
        self.manifest.resume(self.spec, self.run_id, self.world.size)

    def train_epoch(self, number: int) -> None:
        """One epoch: its batches, validation, the callbacks' decisions, then its checkpoints and history."""
        self.handle.epoch = number
        epoch = self._start_epoch(number)
        self.handle.call(self.callbacks, "on_epoch_begin", number, len(epoch.batches))
        self._fit_batches(epoch)
        logs = self._epoch_logs(epoch)
        self.history.append({"epoch": number, **logs})
        improved = self.best.update(number, logs)
        # the callbacks decide before the checkpoints, so that `last` holds the rate, the stop and the counts they
        # chose; the checkpoints they ask for are written after the run's own
        self.handle.requested = []
        self.handle.call(self.callbacks, "on_epoch_end", number, logs)
        requested, self.handle.requested = self.handle.requested, None
        self._write_epoch_files(number, improved, requested)

    def _start_epoch(self, number: int) -> Epoch:
        """The epoch's batches in this epoch's order; from a mid-epoch checkpoint, the same order and progress."""
        streams, progress, elapsed, resumed = self.streams, EpochProgress(self.objective), 0.0, self.resumed_epoch
        if resumed is not None:  # redraw the interrupted epoch's order, then skip what was done
            streams.shuffle.bit_generator.state = resumed["shuffle_state"]
            progress.load(resumed["progress"])
            elapsed, model_state = float(resumed["seconds"]), streams.model.bit_generator.state
        started = time.perf_counter() - elapsed
        shuffle_state = streams.shuffle.bit_generator.state
        count = len(self.splits.train)
        order = shuffled_order(count, streams.shuffle) if self.spec.train.shuffle else np.arange(count)
        if resumed is not None:
            streams.model.bit_generator.state = model_state
            self.resumed_epoch = None
        batches = batch_slices(order, self.spec.train.batch_size)[:self.spec.train.steps_per_epoch]
        return Epoch(number, batches, progress, shuffle_state, started, self.handle.step - progress.done)

    def _fit_batches(self, epoch: Epoch) -> None:
        """Train on the epoch's batches between the batch hooks; `last` mid-epoch every checkpoint_every_steps;
        a signal writes `last` where it landed and raises RunInterruptedError."""
        every, total = self.spec.train.checkpoint_every_steps, len(epoch.batches)

        # per-step hooks only where defined: a tiny model's step is short enough for unread logs to cost 5 us of it
        starting, ending_step = listening(self.callbacks, "on_batch_begin"), listening(self.callbacks, "on_batch_end")

        def before_step(progress: EpochProgress) -> None:
            if starting:
                self.handle.call(starting, "on_batch_begin", epoch.number, progress.done + 1)

        def after_step(progress: EpochProgress) -> bool:
            self.handle.step = epoch.first_step + progress.done  # the update is applied: run.step counts it
            if ending_step:
                self.handle.call(ending_step, "on_batch_end", epoch.number, progress.done, progress.logs())
            if self.world.size == 1 and not progress.stop_signal:  # one process may stop on a signal just come
                progress.stop_signal = self._signal_requested()
            ending = progress.stop_signal != 0 or self.handle.stop_reason is not None
            periodic = every and self.handle.step % every == 0 and progress.done < total and not ending
            if progress.stop_signal or periodic:
                self._checkpoint("last", epoch.number - 1, self.handle.step, epoch.position())
            return ending

        with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is reported by the loss check, once
            fit_epoch(self.model, self.objective, self.optimizer, self.splits.train, epoch.batches, epoch.progress,
                      after_step, first_step=epoch.first_step, world=self.world,
                      stop_requested=self._signal_requested, before_step=before_step)
        if epoch.progress.stop_signal:
            self._stop_on_signal(epoch)

    def finalize_weights(self) -> None:
        """Training ended: with use_ema the weights become their moving averages (Keras' fit ends so) and `last`
        holds them, for eval, predict and a later init_from; validation and `best` had the raw weights, as in
        Keras. Before the callbacks' on_train_end, so restore_best_weights still has the last word in memory."""
        if self.optimizer.spec.use_ema:
            self.optimizer.finalize_weights()
            self.averaged = True
            self._checkpoint("last", self.history[-1]["epoch"] if self.history else 0, self.handle.step,
                             event="averaged")

    def _signal_requested(self) -> int:
        return int(self.signals.requested or 0) if self.signals is not None else 0

    def _stop_on_signal(self, epoch: Epoch) -> NoReturn:
        """After the mid-epoch `last` a signal made: history to match, and the error that exits 130 or 143."""
        if self.leader:
            write_history(self.run_dir, self.history)
        signum = epoch.progress.stop_signal
        workers = f" --workers {self.world.size}" if self.world.size > 1 else ""
        raise RunInterruptedError(
            f"stopped by {signal.Signals(signum).name} in epoch {epoch.number} after step {self.handle.step}; "
            f"checkpoint written to {checkpoint_path(self.run_dir, 'last')}. Continue with: dlcli train "
            f"{self.run_dir} --resume{workers}", exit_code=EXIT_CODES[signum])

    def _epoch_logs(self, epoch: Epoch) -> dict[str, float]:
        """The epoch's training values, validation values, seconds and learning rate, the same on every rank."""
        logs = epoch.progress.logs()
        if self.splits.validation is not None:
            logs.update({f"val_{k}": v for k, v in evaluate(self.model, self.objective, self.splits.validation,
                                                             self.spec.train.batch_size).items()})
        # Keras 3's: the optimizer's rate at the epoch's end (the schedule after its updates, the next step's rate),
        # before any callback changes it, as TensorBoard and ReduceLROnPlateau log it in on_epoch_end
        logs.update(seconds=time.perf_counter() - epoch.started, learning_rate=self.optimizer.learning_rate)
        return self.world.agree(logs)  # every rank takes the same decisions: rank 0's numbers

    def _write_epoch_files(self, number: int, improved: bool, requested: list[tuple[str, str]]) -> None:
        """best before last, history after both: `last` never names a best epoch whose file is not in place, and
        history.jsonl never lists an epoch that no checkpoint holds (it may lag `last` by one epoch). Then the
        checkpoints the callbacks asked for. An improved epoch's `last` is a link to its `best` (the same state),
        and each folder is fsynced once: a small model's epoch was mostly a dozen fsyncs."""
        with folder_syncs_deferred():
            if improved:
                self._checkpoint("best", number, self.handle.step)
            self._checkpoint("last", number, self.handle.step, same_as="best" if improved else None)
            if self.leader:
                write_history(self.run_dir, self.history)
                self.manifest.progress(epoch=number, epochs=self.spec.train.epochs, step=self.handle.step,
                                       best=self.best.state())
            for name, kind in requested:
                self._checkpoint(name, number, self.handle.step, event=kind)

    def _checkpoint(self, kind: str, epoch: int, step: int, in_epoch: dict[str, Any] | None = None,
                    event: str | None = None, same_as: str | None = None) -> None:
        """Write checkpoints/<kind> (or link it to `same_as`, just written with this same state); `last` keeps the
        one it replaces as `previous`, for --resume to fall back on."""
        path = checkpoint_path(self.run_dir, kind)
        world = self.world
        states, arrays = saved_states(self.spec_callbacks, self.spec.train.callbacks)
        progress = {"run_id": self.run_id, "epoch": epoch, "step": step, "rng": self.streams.state(),
                    "history": self.history, "best": self.best.state(), "kind": kind, "in_epoch": in_epoch,
                    "world_size": world.size, "stopped_early": self.handle.stop_reason is not None,
                    "stop_reason": self.handle.stop_reason, "callbacks": states, "data": self.splits.schema,
                    "weights_hash": weights_hash(self.model)}
        if self.averaged:  # the weights are the optimizer's moving averages (use_ema, training ended)
            progress["weights"] = "averaged"
        if world.size > 1:  # each rank's dropout stream, so that a resume continues every rank exactly
            progress["rng_ranks"] = world.gather_json(rng_state(self.streams.model))
        if self.leader:
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "last":
                keep_as_previous(self.run_dir)
            if same_as is not None:
                link_checkpoint(self.run_dir, same_as, kind)
            else:
                save_run_checkpoint(path, self.model, self.optimizer, self.spec, progress, arrays)
            if kind == "last" and self.spec_pending:  # a resume may change train.epochs: spec.json follows last
                self.write_spec()
        if kind == "last":
            self.last_saved_at = step
        world.barrier()  # no rank runs ahead of a checkpoint that may still fail to write
        self.handle.call(self.callbacks, "on_checkpoint", str(path), event or kind)

    def begin(self, spec_file: Path | None = None, provenance: dict[str, Any] | None = None) -> None:
        """A new run starts writing its folder: run.json and spec.json (the leader writes them)."""
        self.run_id = self.manifest.begin(self.spec, spec_file, self.world.size, provenance)
        self.handle.run_id = self.run_id  # rank 0's: the one that writes and logs
        self.spec_pending = False

    def write_spec(self) -> None:
        """spec.json of a resumed run (the leader writes it)."""
        if self.leader:
            write_json(self.run_dir / "spec.json", self.spec.model_dump(mode="json"))
        self.spec_pending = False

    def stopped(self, error: BaseException) -> None:
        """Training stopped on `error`: run.json says how (interrupted, diverged or failed), and the callbacks
        hear it (on_train_abort: loggers close their files). A manifest or a logger that fails now must not hide
        the error that stopped the run."""
        self.manifest.end(error)
        self.handle.call_after_error(self.callbacks, "on_train_abort", status_of(error))

    def keep_last_finite_state(self) -> str:
        """After a non-finite loss: make checkpoints/last a state whose loss was finite; returns what was kept."""
        return keep_last_good_state(self.run_dir, self.last_saved_at, self.handle.step) if self.leader else ""

    def finish(self, seconds: float) -> dict[str, Any]:
        """The spec's callbacks' on_train_end (early stopping may restore the best weights and say so in the
        summary), then summary.json; returns the summary for the other callbacks' on_train_end."""
        summary = run_summary(self.spec, self.run_dir, self.history, self.best, self.handle.stop_reason, seconds,
                           self.info)
        summary["run_id"] = self.run_id
        self.handle.call(self.spec_callbacks, "on_train_end", summary)
        if self.leader:
            write_json(self.run_dir / "summary.json", summary)
            self.manifest.finish()
        return summary

