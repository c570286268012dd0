"""fit_run: a spec trained end to end into its run directory, reporting through callbacks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.checkpoint import load_checkpoint
from dlcli.data import batch_slices, shuffled_order
from dlcli.errors import CheckpointError
from dlcli.graph import Model, build_model
from dlcli.optimizers import Optimizer, create_optimizer
from dlcli.spec.callbacks import EarlyStoppingSpec, ReduceLROnPlateauSpec
from dlcli.spec.models import RunSpec
from dlcli.tensor import Tensor, no_grad
from dlcli.tensor.memory import keep_freed_memory
from dlcli.train.builtin_callbacks import EarlyStopping, ReduceLROnPlateau, Watch, periodic_epochs
from dlcli.train.callbacks import Callback
from dlcli.train.datasets import Splits, load_splits
from dlcli.train.loop import Objective, Split, evaluate, fit_epoch
from dlcli.train.rundir import (
    checkpoint_path, restore_model, rng_state, save_run_checkpoint, write_history, write_json,
)


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


def adapt_preprocessing(model: Model, train: Split, batch_size: int = 1024) -> None:
    """Adapt normalization layers on the training data as it reaches them (layers before them applied)."""
    for index, node in enumerate(model.nodes):
        if not hasattr(node.layer, "adapt"):
            continue
        prefix = Model(model.inputs, model.nodes[:index], {node.inputs[0]: None}, model.sequential)  # type: ignore
        dtypes = {name: spec.dtype for name, spec in model.inputs.items()}
        with no_grad():
            chunks = []
            for start in range(0, len(train), batch_size):
                batch = {k: Tensor(np.asarray(v[start:start + batch_size], dtype=dtypes[k]))
                         for k, v in train.inputs.items()}
                values = batch if node.inputs[0] in batch else prefix(batch)
                chunks.append(values[node.inputs[0]].data)
        node.layer.adapt(np.concatenate(chunks))


def _default_monitor(spec: RunSpec, splits: Splits) -> str:
    monitor = spec.train.monitor
    if splits.validation is None and monitor.startswith("val_") and monitor == "val_loss":
        return "loss"  # no validation data: the best checkpoint follows the training loss
    return monitor


def fit_run(spec: RunSpec, run_dir: Path, callbacks: list[Callback], resume: Path | None = None) -> dict[str, Any]:
    """Train `spec` into `run_dir`: checkpoints/last and /best, history, summary. Returns the summary.

    With `resume`, continue after the epoch that checkpoint ended: weights, layer and optimizer state, the
    random streams, history and the best value so far all come back, so the run goes on as if never stopped.
    """
    started = time.perf_counter()
    keep_freed_memory()
    streams = Streams(spec.seed)
    model = build_model(spec.model, streams.model, spec)
    splits = load_splits(spec, model, streams.split)
    adapt_preprocessing(model, splits.train)
    optimizer = create_optimizer(spec.train.optimizer.model_dump(), model.parameters())
    objective = Objective(model, {k: v.shape[1:] for k, v in splits.train.targets.items()})
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "spec.json", spec.model_dump(mode="json"))

    batch_size = spec.train.batch_size
    steps_per_epoch = min(-(-len(splits.train) // batch_size), spec.train.steps_per_epoch or len(splits.train))
    trainable, frozen = model.parameter_counts()
    info = {"run": spec.name, "run_dir": str(run_dir), "epochs": spec.train.epochs, "steps_per_epoch": steps_per_epoch,
            "batch_size": batch_size, "samples": len(splits.train),
            "validation_samples": len(splits.validation) if splits.validation else 0, "seed": spec.seed,
            "params": trainable + frozen, "trainable_params": trainable, "resumed_from": None}

    best = Watch(_default_monitor(spec, splits), spec.train.monitor_mode)
    stoppers = [EarlyStopping(c, i) for i, c in enumerate(spec.train.callbacks) if isinstance(c, EarlyStoppingSpec)]
    reducers = [ReduceLROnPlateau(c, i) for i, c in enumerate(spec.train.callbacks)
                if isinstance(c, ReduceLROnPlateauSpec)]
    periodic = periodic_epochs(spec.train.callbacks)
    history: list[dict[str, Any]] = []
    step, stopped_early, first_epoch = 0, False, 1
    if resume is not None:
        first_epoch, step, history = _restore(resume, model, optimizer, streams, best)
        info["resumed_from"] = str(resume)
    for cb in callbacks:
        cb.on_train_begin(info)
    for epoch in range(first_epoch, spec.train.epochs + 1):
        epoch_start = time.perf_counter()
        order = shuffled_order(len(splits.train), streams.shuffle) if spec.train.shuffle \
            else np.arange(len(splits.train))
        batches = batch_slices(order, batch_size)[:spec.train.steps_per_epoch]
        learning_rate = optimizer.learning_rate
        for cb in callbacks:
            cb.on_epoch_begin(epoch, len(batches))

        def on_step(i: int, running: dict[str, float], epoch: int = epoch) -> None:
            for cb in callbacks:
                cb.on_batch_end(epoch, i, running)

        with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is reported by the loss check, once
            logs = fit_epoch(model, objective, optimizer, splits.train, batches, on_step, first_step=step)
        step += len(batches)
        if splits.validation is not None:
            logs.update({f"val_{k}": v for k, v in
                         evaluate(model, objective, splits.validation, batch_size).items()})
        logs.update(seconds=time.perf_counter() - epoch_start, learning_rate=learning_rate)
        history.append({"epoch": epoch, **logs})
        write_history(run_dir, history)
        improved = best.update(epoch, logs)
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        progress = {"epoch": epoch, "step": step, "rng": streams.state(), "history": history, "best": best.state()}
        _checkpoint(run_dir, "last", model, optimizer, spec, progress, callbacks)
        if improved:
            _checkpoint(run_dir, "best", model, optimizer, spec, progress, callbacks)
        for p in periodic:
            if epoch % p.every_epochs == 0:  # type: ignore[operator]
                _checkpoint(run_dir, f"epoch_{epoch:04d}", model, optimizer, spec, progress, callbacks, "periodic")
                _prune(run_dir, p.keep_last)
        for reducer in reducers:
            reducer.epoch_end(epoch, logs, optimizer)
        if any([stopper.epoch_end(epoch, logs, model_weights(model)) for stopper in stoppers]):
            stopped_early = True
            break
    for stopper in stoppers:
        if stopper.best_weights is not None:
            restore_weights(model, stopper.best_weights)
    summary = _summary(spec, run_dir, history, best, stopped_early, time.perf_counter() - started, info)
    write_json(run_dir / "summary.json", summary)
    for cb in callbacks:
        cb.on_train_end(summary)
    return summary


def _restore(path: Path, model: Model, optimizer: Optimizer, streams: Streams, best: Watch
             ) -> tuple[int, int, list[dict[str, Any]]]:
    """Load a run checkpoint into the pieces of a run; returns (next epoch, global step, history)."""
    arrays, metadata = load_checkpoint(path)
    restore_model(model, arrays, path)
    optimizer.load_state({k.removeprefix("optimizer/"): v for k, v in arrays.items() if k.startswith("optimizer/")})
    try:
        streams.model.bit_generator.state = metadata["rng"]["model"]
        streams.shuffle.bit_generator.state = metadata["rng"]["shuffle"]
        best.load(metadata["best"])
        return int(metadata["epoch"]) + 1, int(metadata["step"]), list(metadata["history"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its training progress is incomplete ({err}); it cannot be resumed") from None


def model_weights(model: Model) -> dict[str, np.ndarray]:
    """The trainable arrays by name (views, not copies)."""
    return {k: t.data for k, t in model.parameters().items()}


def restore_weights(model: Model, weights: dict[str, np.ndarray]) -> None:
    """Copy saved arrays back into the model's weights."""
    for name, tensor in model.parameters().items():
        tensor.data[...] = weights[name]


def _checkpoint(run_dir: Path, kind: str, model: Model, optimizer: Optimizer, spec: RunSpec,
                progress: dict[str, Any], callbacks: list[Callback], event: str | None = None) -> None:
    path = checkpoint_path(run_dir, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_run_checkpoint(path, model, optimizer, spec, {**progress, "kind": kind})
    for cb in callbacks:
        cb.on_checkpoint(str(path), event or kind)


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
