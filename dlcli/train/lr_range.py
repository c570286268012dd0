"""The learning-rate range test behind `dlcli lr-find` (Leslie Smith's, as fastai's lr_find runs it).

A copy of the spec's model trains for `steps` batches while the rate grows exponentially from `start` to `end`;
the loss is smoothed (an exponential moving average with bias correction, beta 0.98) and the test stops once
the smoothed loss is more than 4 times its lowest, or not finite. The suggested rate is where the smoothed loss
falls fastest against log(rate), fastai's "steep" suggestion, leaving out the first tenth of the steps and the
last five as fastai does. The spec's model and run directory are never touched: nothing is written at all.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlcli.data import batch_slices, shuffled_order
from dlcli.errors import SpecError
from dlcli.graph import Model, build_model
from dlcli.optimizers import create_optimizer
from dlcli.spec.models import RunSpec
from dlcli.train.datasets import load_splits
from dlcli.train.adapt import adapt_preprocessing
from dlcli.train.loop import Objective, Split, input_tensor
from dlcli.train.streams import Streams

SMOOTHING = 0.98  # fastai's Recorder: beta of the loss's moving average
BLOW_UP = 4.0  # stop once the smoothed loss exceeds this many times its lowest (fastai's stop_div)


@dataclass
class RangeTest:
    """What the test saw: the rate and the raw and smoothed loss of every step it took, why it stopped, and the
    suggested rate (None when too few steps came before the loss blew up)."""

    rates: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    steps: int = 0  # asked for
    stopped: str = "done"  # or "blew_up"
    suggested: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"steps": self.steps, "steps_run": len(self.rates), "stopped": self.stopped,
                "suggested": self.suggested, "rates": self.rates, "losses": self.losses, "smoothed": self.smoothed}


def exponential_rates(start: float, end: float, steps: int) -> np.ndarray:
    """start * (end / start) ** (i / (steps - 1)) for i in 0..steps-1: from start to end, evenly in log scale."""
    return start * (end / start) ** (np.arange(steps) / max(steps - 1, 1))


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """The bias-corrected exponential moving average of the losses, as fastai smooths them."""
    out, average = [], 0.0
    for index, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (index + 1)))
    return out


def steepest(rates: list[float], smoothed: list[float]) -> float | None:
    """The rate where the smoothed loss falls fastest per unit of log(rate), fastai's "steep": the first tenth
    of the steps and the last five are left out (warm-up noise, the blow-up), and so is everything after the
    lowest smoothed loss, where a loss that blew up and settles again would look like a descent. None with
    fewer than 3 points left."""
    skip = len(rates) // 10
    rates_kept, losses_kept = np.asarray(rates[skip:-5]), np.asarray(smoothed[skip:-5])
    if len(rates_kept) < 3:
        return None
    lowest = int(np.argmin(losses_kept))
    rates_kept, losses_kept = rates_kept[:lowest + 1], losses_kept[:lowest + 1]
    if len(rates_kept) < 3:
        return None
    slopes = np.diff(losses_kept) / np.diff(np.log(rates_kept))
    return float(rates_kept[int(np.argmin(slopes))])


def find_learning_rate(spec: RunSpec, start: float, end: float, steps: int) -> RangeTest:
    """Run the range test on a copy of the model `spec` builds (its data read as `train` reads it)."""
    if not 0 < start < end:
        raise SpecError(f"--start {start} and --end {end}: the rate grows from --start to --end, so 0 < start < end")
    streams = Streams(spec.seed)
    model = build_model(spec.model, streams.model, spec)
    if not model.trainable_parameters():
        raise SpecError("the model has no trainable weights (train.freeze or trainable = false freezes every one): "
                        "its loss does not change with the learning rate, so there is no rate to find")
    splits = load_splits(spec, model, streams.split)
    adapt_preprocessing(model, splits.train)
    return range_test(model, splits.train, spec, start, end, steps, streams.shuffle)


def range_test(model: Model, data: Split, spec: RunSpec, start: float, end: float, steps: int,
               shuffle: np.random.Generator) -> RangeTest:
    """Train a deep copy of `model` with the spec's optimizer (its own rate or schedule replaced by the test's
    rates) for up to `steps` batches; `model` itself is left exactly as it was."""
    trained = copy.deepcopy(model)
    objective = Objective(trained, {name: array.shape[1:] for name, array in data.targets.items()})
    config = {**spec.train.optimizer.model_dump(), "learning_rate": 1.0}  # lr_scale then carries each step's rate
    optimizer = create_optimizer(config, trained.parameters())
    dtypes = {name: input_spec.dtype for name, input_spec in trained.inputs.items()}
    result = RangeTest(steps=steps)
    batches: list[np.ndarray] = []
    lowest, average = math.inf, 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # the blow-up is what the test looks for
        for rate in exponential_rates(start, end, steps):
            if not batches:  # a new epoch: a new shuffled order, as training draws it
                batches = batch_slices(shuffled_order(len(data), shuffle), spec.train.batch_size)[::-1]
            batch = data.take(batches.pop())
            predictions = trained({k: input_tensor(v, dtypes[k]) for k, v in batch.inputs.items()}, training=True)
            loss, _ = objective.loss(predictions, batch.targets)
            value = loss.item()
            average = SMOOTHING * average + (1 - SMOOTHING) * value  # smooth(), one step at a time
            result.rates.append(float(rate))
            result.losses.append(value)
            result.smoothed.append(average / (1 - SMOOTHING ** len(result.losses)))
            if not math.isfinite(result.smoothed[-1]) or result.smoothed[-1] > BLOW_UP * lowest:
                result.stopped = "blew_up"
                break
            lowest = min(lowest, result.smoothed[-1])
            optimizer.zero_grad()
            loss.backward()
            optimizer.lr_scale = float(rate)
            optimizer.step()
    result.suggested = steepest(result.rates, result.smoothed)
    return result
