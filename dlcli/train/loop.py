"""The mini-batch loops: fit one epoch, evaluate, predict. Batches are index arrays; no loop over samples."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dlcli.data import batch_slices
from dlcli.data.prefetch import prefetched, streams
from dlcli.errors import DivergedError, SpecError
from dlcli.graph import Model
from dlcli.losses import Loss, LossSpec, create_loss, weighted_total
from dlcli.metrics import Metric, create_metric
from dlcli.optimizers import Optimizer
from dlcli.tensor import Tensor, no_grad
from dlcli.tensor.memory import keep_freed_memory
from dlcli.train.distributed import World, moving_states
from dlcli.train.metric_targets import target_misfit


@dataclass
class Split:
    """One split of the data: arrays for each model input and each output's targets, first axis examples. An
    array may be lazy (an image folder's images decoded as batches need them, time-series windows over a table:
    see data/readers/reader.py)."""

    inputs: dict[str, Any]
    targets: dict[str, Any]
    # per output: each example's (or step's) weight in its loss and weighted metrics, from data.sample_weight or
    # train.class_weight; an output without an entry weighs every example 1
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def take(self, index: np.ndarray | slice) -> Split:
        """The examples at `index` (one gather per array), as NumPy arrays."""
        return Split({k: v[index] for k, v in self.inputs.items()}, {k: v[index] for k, v in self.targets.items()},
                     {k: v[index] for k, v in self.weights.items()})

    def batches(self, indexes: Iterable[np.ndarray]) -> Iterator[Split]:
        """The examples at each index array of `indexes`, in order, as NumPy arrays; lazy arrays that decode on
        worker threads are gathered a few batches ahead (data.prefetch), the same rows whatever the timing."""
        if not any(map(streams, (*self.inputs.values(), *self.targets.values(), *self.weights.values()))):
            # nothing decodes ahead: gather in this thread, without the prefetch queue's bookkeeping per batch
            # (half of a tiny tabular model's 16 us per batch)
            yield from map(self.take, indexes)
            return
        arrays = {**{f"in:{k}": v for k, v in self.inputs.items()}, **{f"out:{k}": v for k, v in self.targets.items()},
                  **{f"w:{k}": v for k, v in self.weights.items()}}
        with closing(prefetched(arrays, indexes)) as gathered:
            for batch in gathered:
                yield Split({k: batch[f"in:{k}"] for k in self.inputs}, {k: batch[f"out:{k}"] for k in self.targets},
                            {k: batch[f"w:{k}"] for k in self.weights})


def in_order(count: int, batch_size: int) -> list[np.ndarray]:
    """Index arrays of consecutive batches over `count` examples, in order (evaluation, prediction)."""
    return batch_slices(np.arange(count), batch_size)



@dataclass
class Epoch:
    """An epoch under way: its batches and progress, and what a mid-epoch checkpoint needs to take it up again."""

    number: int  # from 1
    batches: list[np.ndarray]
    progress: EpochProgress
    shuffle_state: dict[str, Any]  # the shuffle stream before the epoch's order was drawn: a resume redraws it
    started: float  # perf_counter() at its start, less the time a resumed epoch had already run
    first_step: int  # updates applied in the run before its first batch

    def position(self) -> dict[str, Any]:
        """A mid-epoch checkpoint's `in_epoch`."""
        return {"epoch": self.number, "shuffle_state": self.shuffle_state, "progress": self.progress.state(),
                "seconds": time.perf_counter() - self.started}


class Objective:
    """Each output's loss and metrics, the weighted total, and the names Keras gives them in logs.

    With `strict` (a new run, validate), a metric that cannot score its output's targets, or that is reported
    under a name the logs already hold, is a SpecError naming its key. A model rebuilt from a checkpoint (eval, a
    resume) is not held to that: its spec was accepted when it trained, and its run must stay usable.
    """

    def __init__(self, model: Model, target_shapes: dict[str, tuple[int, ...]] | None = None,
                 strict: bool = False) -> None:
        self.model = model
        self.losses: dict[str, Loss] = {}
        self.weights: dict[str, float] = {}
        self.metric_factories: dict[str, list[Callable[[], Metric]]] = {}
        self.metric_names: dict[str, list[str]] = {}  # what each output's metrics are called in logs
        single = len(model.outputs) == 1
        self.weighted_metrics: set[str] = set()  # the names of the metrics given the examples' weights
        # each name reported so far -> what reports it: a metric may not take a name already reported
        taken = {"loss": "the training loss", **({} if single else {f"{name}_loss": f"the loss of output {name}"
                                                                     for name in model.outputs})}
        for name, output in model.outputs.items():
            self.losses[name] = create_loss(output.loss.model_dump())
            self.weights[name] = output.weight
            shape = model.shapes[name]
            target_shape = (target_shapes or {}).get(name)
            prefix = "" if single else f"{name}_"
            base = "train" if model.sequential else f"model.outputs.{name}"
            keys = [f"{base}.{group}[{index}]{'.name' if metric.name is not None else ''}"
                    for group in ("metrics", "weighted_metrics")
                    for index, metric in enumerate(getattr(output, group))]
            configs = [m.model_dump(exclude_none=True) for m in output.metrics]
            names = [_metric_name(config, prefix) for config in configs]
            weighted = [m.model_dump(exclude_none=True) for m in output.weighted_metrics]
            for config in weighted:  # Keras' rule: a weighted metric named like another is weighted_<name>
                config = {**config, "name": config.get("name", config["type"])}
                if prefix + config["name"] in names:
                    config["name"] = f"weighted_{config['name']}"
                configs.append(config)
                names.append(prefix + config["name"])
                self.weighted_metrics.add(names[-1])
            for key, config, reported in zip(keys, configs, names):
                if strict:
                    _claim(taken, reported, key, config["type"], prefix)
            self.metric_names[name] = names
            self.metric_factories[name] = [_metric_factory(config, output.loss, shape, target_shape, prefix)
                                           for config in configs]
            for key, config, make in zip(keys, configs, self.metric_factories[name] if strict else []):
                problem = target_misfit(make(), output.loss.type, shape, target_shape, config["type"])
                if problem:  # found now, not as a traceback in the first epoch
                    raise SpecError(f"{key.removesuffix('.name')}: {problem}")

    def new_metrics(self) -> dict[str, list[Metric]]:
        """Fresh running metrics for every output."""
        return {name: [make() for make in factories] for name, factories in self.metric_factories.items()}

    def update_metrics(self, metrics: dict[str, list[Metric]], predictions: dict[str, Tensor], batch: Split) -> None:
        """Add a batch to every output's metrics, giving the weighted ones the batch's weights."""
        for name, group in metrics.items():
            weights = batch.weights.get(name)
            for metric in group:
                metric.update(predictions[name].data, batch.targets[name], predictions[name].mask,
                              weights if metric.name in self.weighted_metrics else None)

    def loss(self, predictions: dict[str, Tensor], targets: dict[str, np.ndarray],
             sample_weights: dict[str, np.ndarray] | None = None) -> tuple[Tensor, dict[str, float]]:
        """The weighted total loss, and each output's loss value when there are several; `sample_weights` weigh
        each output's examples."""
        sample_weights = sample_weights or {}
        terms = {name: loss(predictions[name], targets[name], sample_weights.get(name))
                 for name, loss in self.losses.items()}
        total = weighted_total([(self.weights[name], term) for name, term in terms.items()])
        parts = {f"{name}_loss": term.item() for name, term in terms.items()} if len(terms) > 1 else {}
        return total, parts

    def loss_names(self) -> list[str]:
        """The loss entries of an epoch's logs: "loss", then "<output>_loss" for each output of several."""
        return ["loss", *(f"{name}_loss" for name in self.losses)] if len(self.losses) > 1 else ["loss"]


# what every epoch's record holds besides the losses and metrics (history rows, --json epoch events)
EPOCH_KEYS = ("epoch", "epochs", "event", "seconds", "learning_rate")


def _claim(taken: dict[str, str], name: str, key: str, kind: str, prefix: str) -> None:
    """Record that the metric at spec `key` (of type `kind`) is reported as `name`; a SpecError when the logs
    already hold that name, or read it as another value: one would overwrite the other (and a monitor follow it)."""
    # the val_ rule reads the metric's own name: an output may be called val_out (its metrics val_out_<name>)
    # unless another reported value is then out_<name>, whose validation value would carry that name
    if name in EPOCH_KEYS:
        why = f"which every epoch's record holds already ({', '.join(EPOCH_KEYS)})"
    elif name.removeprefix(prefix).startswith("val_") or (name.startswith("val_") and name[4:] in taken):
        why = f"which is how the validation value of {name[4:]!r} is reported"
    elif f"val_{name}" in taken:
        why = f"whose validation value would be reported as 'val_{name}', which {taken[f'val_{name}']} is already"
    elif name in taken:
        why = f"which {taken[name]} is reported as already"
    else:
        taken[name] = key.removesuffix(".name")
        return
    free = next(candidate for candidate in itertools.chain([kind], (f"{kind}_{i}" for i in itertools.count(1)))
                if prefix + candidate not in taken and prefix + candidate not in EPOCH_KEYS)
    raise SpecError(f'{key}: reported as {name!r}, {why}; give it a name of its own, e.g. name = "{free}"')


def _metric_name(config: dict[str, Any], prefix: str) -> str:
    """A metric's key in logs: its `name`, else its `type` as written, prefixed by its output's name."""
    return prefix + config.get("name", config["type"])


def _metric_factory(config: dict[str, Any], loss: LossSpec, shape: tuple[int, ...],
                    target_shape: tuple[int, ...] | None, prefix: str) -> Callable[[], Metric]:
    config = {**config, "name": _metric_name(config, prefix)}

    def make() -> Metric:
        return create_metric(dict(config), loss=loss, output_shape=shape, target_shape=target_shape)

    return make


class RunningMeans:
    """Means of per-batch values, each weighted by its batch size."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict[str, float], size: int) -> None:
        """Add one batch's values."""
        for key, value in values.items():
            self.totals[key] = self.totals.get(key, 0.0) + value * size
        self.count += size

    def means(self) -> dict[str, float]:
        """The weighted means so far."""
        return {k: v / self.count for k, v in self.totals.items()} if self.count else {}


def _with_metrics(means: dict[str, float], metrics: dict[str, list[Metric]]) -> dict[str, float]:
    out = dict(means)
    for group in metrics.values():
        for metric in group:
            out[metric.name] = metric.result()
    return out


def input_tensor(array: np.ndarray, dtype: str) -> Tensor:
    """A batch of one model input in the input's dtype; text ("string") stays NumPy unicode, never cast."""
    return Tensor(np.asarray(array, dtype=str if dtype == "string" else dtype))


def backward(loss: Tensor) -> None:
    """A step's backward pass; none when nothing the loss depends on learns. A model whose every weight is frozen
    (train.freeze, trainable = false), or that has none, still computes and reports its loss and updates
    nothing, as Keras 3's train_step does for a model without trainable weights."""
    if loss.requires_grad:
        loss.backward()


def _as_tensors(inputs: dict[str, np.ndarray], dtypes: dict[str, str]) -> dict[str, Tensor]:
    return {name: input_tensor(array, dtypes[name]) for name, array in inputs.items()}


class EpochProgress:
    """How far an epoch got: batches done, running loss means and metric totals (saved to resume mid-epoch)."""

    def __init__(self, objective: Objective) -> None:
        self.done = 0
        self.stop_signal = 0  # a signal every rank agreed to stop on after the last step (0: none)
        self.running = RunningMeans()
        self.metrics = objective.new_metrics()

    def logs(self) -> dict[str, float]:
        """The epoch's values so far."""
        return _with_metrics(self.running.means(), self.metrics)

    def state(self) -> dict[str, Any]:
        """JSON-able state for a mid-epoch checkpoint."""
        return {"done": self.done, "totals": self.running.totals, "count": self.running.count,
                "metrics": {name: [m.state() for m in group] for name, group in self.metrics.items()}}

    def load(self, state: dict[str, Any]) -> None:
        """Continue from `state()`."""
        self.done = int(state["done"])
        self.running.totals, self.running.count = dict(state["totals"]), int(state["count"])
        for name, group in self.metrics.items():
            for metric, saved in zip(group, state["metrics"][name]):
                metric.load_state(saved)


def fit_epoch(model: Model, objective: Objective, optimizer: Optimizer, data: Split, batches: list[np.ndarray],
              progress: EpochProgress, after_step: Callable[[EpochProgress], bool], first_step: int = 0,
              world: World | None = None, stop_requested: Callable[[], int] = lambda: 0,
              before_step: Callable[[EpochProgress], None] = lambda progress: None) -> bool:
    """Train on `batches` (index arrays into `data`) from `progress.done` on; True when the epoch completed.

    `before_step` runs before every batch; `after_step` runs after every update (callbacks, mid-epoch
    checkpoints) and returns True to stop early;
    `progress.stop_signal` then holds the signal that `stop_requested` reported (on any rank, under MPI).
    A loss that is NaN or infinite stops training before the update, so the weights stay the last good
    ones, and the error names the first layer whose output or gradient went non-finite.
    """
    world = world or World()
    dtypes = {name: spec.dtype for name, spec in model.inputs.items()}
    states = moving_states(model) if world.size > 1 else []
    remaining = batches[progress.done:]
    # each rank gathers (and an image folder decodes) only its own shard of every global batch
    local_batches = data.batches([world.shard(index) for index in remaining])
    try:
        for index, batch in zip(remaining, local_batches):
            before_step(progress)
            local = world.shard(index)
            predictions = model(_as_tensors(batch.inputs, dtypes), training=True)
            loss, parts = objective.loss(predictions, batch.targets, batch.weights)
            step = first_step + progress.done + 1
            optimizer.zero_grad()
            if world.size == 1:
                value = loss.item()
                _check_finite(value, step, progress, model, objective, batch, dtypes)
                backward(loss)
                progress.stop_signal = stop_requested()
            else:  # every rank must reach the same verdict, so the NaN check waits for the combined loss
                backward(loss)
                combined, progress.stop_signal = world.reduce_step(optimizer.params, states,
                                                                   [loss.item(), *parts.values()], len(local),
                                                                   len(index), stop_requested())
                value, parts = combined[0], dict(zip(parts, combined[1:]))
                _check_finite(value, step, progress, model, objective, batch, dtypes)
                predictions = {name: _gathered(world, predictions[name], len(index))
                               for name in progress.metrics}
                batch = Split({}, {name: data.targets[name][index] for name in progress.metrics},
                              {name: weights[index] for name, weights in data.weights.items()})
            optimizer.step()
            progress.running.add({"loss": value, **parts}, len(index))
            objective.update_metrics(progress.metrics, predictions, batch)
            progress.done += 1
            if world.check_every and step % world.check_every == 0:
                world.check_weights(model, step)
            if after_step(progress):
                return False
        return True
    finally:
        local_batches.close()  # the batches decoding ahead of an early stop are cancelled


def _gathered(world: World, prediction: Tensor, total: int) -> Tensor:
    """Every rank's rows of a prediction, with its step mask, for metrics of the whole global batch."""
    out = Tensor(world.gather_rows(prediction.data, total))
    if prediction.mask is not None:
        out.mask = world.gather_rows(prediction.mask.astype(np.uint8), total).astype(bool)
    return out


def _check_finite(value: float, step: int, progress: EpochProgress, model: Model, objective: Objective,
                  batch: Split, dtypes: dict[str, str]) -> None:
    if not math.isfinite(value):
        raise DivergedError(f"the loss became {value} at step {step} (epoch step {progress.done + 1}); "
                            f"{diagnose_non_finite(model, objective, batch, dtypes)}. Lower the learning rate, add "
                            "clipnorm, or check the data for NaN or huge values")  # fit.py adds what was kept


def diagnose_non_finite(model: Model, objective: Objective, batch: Split, dtypes: dict[str, str]) -> str:
    """Which layer first produced a non-finite output, or else which weight got a non-finite gradient."""
    values = model.trace(_as_tensors(batch.inputs, dtypes), training=True)
    for node in model.nodes:
        if not np.isfinite(values[node.name].data).all():
            return f"the first non-finite output is layer {node.name} ({node.key})"
    for param in model.parameters().values():
        param.grad = None
    loss, _ = objective.loss({name: values[name] for name in model.outputs}, batch.targets, batch.weights)
    backward(loss)
    for node in model.nodes:
        for name, param in node.layer.weights().items():
            grad = param.grad
            dense = grad.to_dense() if hasattr(grad, "to_dense") else grad
            if dense is not None and not np.isfinite(dense).all():
                return f"the first non-finite gradient is {name} ({node.key})"
    return "every layer output is finite: the loss itself overflowed (e.g. log of 0 or huge targets)"


@no_grad()
def evaluate(model: Model, objective: Objective, data: Split, batch_size: int) -> dict[str, float]:
    """Mean loss and metrics over `data`, in inference mode, in batches of `batch_size`."""
    keep_freed_memory()
    dtypes = {name: spec.dtype for name, spec in model.inputs.items()}
    running, metrics = RunningMeans(), objective.new_metrics()
    for batch in data.batches(in_order(len(data), batch_size)):  # a loop over batches, not samples
        predictions = model(_as_tensors(batch.inputs, dtypes), training=False)
        loss, parts = objective.loss(predictions, batch.targets, batch.weights)
        running.add({"loss": loss.item(), **parts}, len(batch))
        objective.update_metrics(metrics, predictions, batch)
    return _with_metrics(running.means(), metrics)


@no_grad()
def predict(model: Model, inputs: dict[str, Any],
            batch_size: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """Each output's predictions for `inputs` (in batches, in inference mode) and its step mask (examples,
    time), or None where it has none."""
    keep_freed_memory()
    dtypes = {name: spec.dtype for name, spec in model.inputs.items()}
    count = len(next(iter(inputs.values())))
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in model.outputs}
    masks: dict[str, list[np.ndarray | None]] = {name: [] for name in model.outputs}
    for split in Split(inputs, {}).batches(in_order(count, batch_size)):
        for name, out in model(_as_tensors(split.inputs, dtypes), training=False).items():
            chunks[name].append(out.data)
            masks[name].append(out.mask)
    outputs = {name: np.concatenate(parts) if parts else np.zeros((0, *model.shapes[name]), np.float32)
               for name, parts in chunks.items()}
    # a model hands a mask on for every batch or for none (it comes from the layers, not the data)
    return outputs, {name: np.concatenate(parts) if parts and parts[0] is not None else None
                     for name, parts in masks.items()}
