"""The mini-batch loops: fit one epoch, evaluate, predict. Batches are index arrays; no loop over samples."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from dlcli.errors import DivergedError
from dlcli.graph import Model
from dlcli.losses import Loss, create_loss, weighted_total
from dlcli.metrics import Metric, create_metric
from dlcli.optimizers import Optimizer
from dlcli.tensor import Tensor, no_grad
from dlcli.tensor.memory import keep_freed_memory


@dataclass
class Split:
    """One split of the data: arrays for each model input and each output's targets, first axis examples."""

    inputs: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def take(self, index: np.ndarray | slice) -> Split:
        """The examples at `index` (one fancy-index gather per array)."""
        return Split({k: v[index] for k, v in self.inputs.items()}, {k: v[index] for k, v in self.targets.items()})


class Objective:
    """Each output's loss and metrics, the weighted total, and the names Keras gives them in logs."""

    def __init__(self, model: Model, target_shapes: dict[str, tuple[int, ...]] | None = None) -> None:
        self.model = model
        self.losses: dict[str, Loss] = {}
        self.weights: dict[str, float] = {}
        self.metric_factories: dict[str, list[Callable[[], Metric]]] = {}
        single = len(model.outputs) == 1
        for name, output in model.outputs.items():
            self.losses[name] = create_loss(output.loss.model_dump())
            self.weights[name] = output.weight
            shape = model.shapes[name]
            target_shape = (target_shapes or {}).get(name)
            self.metric_factories[name] = [
                _metric_factory(m.model_dump(exclude_none=True), output.loss.type, shape, target_shape,
                                prefix="" if single else f"{name}_")
                for m in output.metrics]

    def new_metrics(self) -> dict[str, list[Metric]]:
        """Fresh running metrics for every output."""
        return {name: [make() for make in factories] for name, factories in self.metric_factories.items()}

    def loss(self, predictions: dict[str, Tensor], targets: dict[str, np.ndarray]) -> tuple[Tensor, dict[str, float]]:
        """The weighted total loss, and each output's loss value when there are several."""
        terms = {name: loss(predictions[name], targets[name]) for name, loss in self.losses.items()}
        total = weighted_total([(self.weights[name], term) for name, term in terms.items()])
        parts = {f"{name}_loss": term.item() for name, term in terms.items()} if len(terms) > 1 else {}
        return total, parts


def _metric_factory(config: dict[str, Any], loss: str, shape: tuple[int, ...], target_shape: tuple[int, ...] | None,
                    prefix: str) -> Callable[[], Metric]:
    config = {**config, "name": prefix + config.get("name", config["type"])}

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


def _as_tensors(inputs: dict[str, np.ndarray], dtypes: dict[str, str]) -> dict[str, Tensor]:
    return {name: Tensor(np.asarray(array, dtype=dtypes[name])) for name, array in inputs.items()}


def fit_epoch(model: Model, objective: Objective, optimizer: Optimizer, data: Split, batches: list[np.ndarray],
              on_step: Callable[[int, dict[str, float]], None], first_step: int = 0) -> dict[str, float]:
    """One pass over `batches` (index arrays into `data`); returns the epoch's mean loss and metric values.

    A loss that is NaN or infinite stops training before the update, so the weights stay the last good ones.
    """
    dtypes = {name: spec.dtype for name, spec in model.inputs.items()}
    running, metrics = RunningMeans(), objective.new_metrics()
    for step, index in enumerate(batches, start=1):
        batch = data.take(index)
        predictions = model(_as_tensors(batch.inputs, dtypes), training=True)
        loss, parts = objective.loss(predictions, batch.targets)
        value = loss.item()
        if not math.isfinite(value):
            raise DivergedError(f"the loss became {value} at step {first_step + step} (epoch step {step}); "
                                "the last checkpoint is the last good state. Lower the learning rate, add clipnorm, "
                                "or check the data for NaN or huge values")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running.add({"loss": value, **parts}, len(index))
        for name, group in metrics.items():
            for metric in group:
                metric.update(predictions[name].data, batch.targets[name])
        on_step(step, _with_metrics(running.means(), metrics))
    return _with_metrics(running.means(), metrics)


@no_grad()
def evaluate(model: Model, objective: Objective, data: Split, batch_size: int) -> dict[str, float]:
    """Mean loss and metrics over `data`, in inference mode, in batches of `batch_size`."""
    keep_freed_memory()
    dtypes = {name: spec.dtype for name, spec in model.inputs.items()}
    running, metrics = RunningMeans(), objective.new_metrics()
    for start in range(0, len(data), batch_size):  # a loop over batches, not samples
        batch = data.take(slice(start, start + batch_size))
        predictions = model(_as_tensors(batch.inputs, dtypes), training=False)
        loss, parts = objective.loss(predictions, batch.targets)
        running.add({"loss": loss.item(), **parts}, len(batch))
        for name, group in metrics.items():
            for metric in group:
                metric.update(predictions[name].data, batch.targets[name])
    return _with_metrics(running.means(), metrics)


@no_grad()
def predict(model: Model, inputs: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Each output's predictions for `inputs`, computed in batches in inference mode."""
    keep_freed_memory()
    dtypes = {name: spec.dtype for name, spec in model.inputs.items()}
    count = len(next(iter(inputs.values())))
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in model.outputs}
    for start in range(0, count, batch_size):
        batch = {k: v[start:start + batch_size] for k, v in inputs.items()}
        for name, out in model(_as_tensors(batch, dtypes), training=False).items():
            chunks[name].append(out.data)
    return {name: np.concatenate(parts) if parts else np.zeros((0, *model.shapes[name]), np.float32)
            for name, parts in chunks.items()}
