"""What a run reports in its epoch logs, and the monitored values checked against it before training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from dlcli.errors import SpecError
from dlcli.graph import Model
from dlcli.registry import suggest
from dlcli.spec.models import RunSpec, TrainSpec
from dlcli.train.callbacks.monitor import monitor_mode
from dlcli.train.loop import Objective


def reported_names(objective: Objective, has_validation: bool) -> list[str]:
    """Exactly the keys of an epoch's logs (history.jsonl, callbacks, monitors), in their order.

    "loss", each output's loss when there are several ("<output>_loss"), each metric's name (prefixed
    "<output>_" when there are several outputs), the same again prefixed "val_" when there is validation
    data, then "seconds" and "learning_rate", which the epoch loop adds.
    """
    training = list(dict.fromkeys([*objective.loss_names(),
                                   *(name for names in objective.metric_names.values() for name in names)]))
    validation = [f"val_{name}" for name in training] if has_validation else []
    return list(dict.fromkeys([*training, *validation, "seconds", "learning_rate"]))


def best_monitor(train: TrainSpec, has_validation: bool) -> str:
    """The value the best checkpoint follows: train.monitor, or the training loss for the default val_loss when
    there is no validation data."""
    return "loss" if train.monitor == "val_loss" and not has_validation else train.monitor


def log_directions(model: Model, objective: Objective) -> dict[str, Literal["min", "max"]]:
    """Keras' "auto" mode for every logged loss and metric: losses go down, a metric by its type, so one given
    its own name (metrics = [{ type = "accuracy", name = "hits" }]) still goes up."""
    directions: dict[str, Literal["min", "max"]] = {name: "min" for name in objective.loss_names()}
    for output, names in objective.metric_names.items():
        configs = [*model.outputs[output].metrics, *model.outputs[output].weighted_metrics]
        for config, name in zip(configs, names):
            directions[name] = monitor_mode(config.type, "auto")
    return {**directions, **{f"val_{name}": way for name, way in directions.items()}}


def declares_validation(spec: RunSpec) -> bool:
    """Whether the spec asks for validation data (a file, a split, folds), so the run reports val_ values."""
    data = spec.data
    return data.validation is not None or data.validation_split > 0 or data.folds is not None \
        or (data.timeseries is not None and data.timeseries.validation_split > 0)


def check_monitors_early(spec: RunSpec, model: Model, strict: bool = True) -> None:
    """check_monitors before any data loads or kernel compiles, for a monitor that no run of this model could
    report (a typo: on an empty kernel cache the check after the data came seconds later). A monitor that only
    lacks its validation data waits for the data (check_monitors then), which says whether there is any. With
    `strict` (a new run), the metrics too (see Objective)."""
    possible = reported_names(Objective(model, strict=strict), has_validation=True)
    monitors = [spec.train.monitor, *(getattr(c, "monitor", None) for c in spec.train.callbacks)]
    if any(monitor is not None and monitor not in possible for monitor in monitors):
        check_monitors(spec.train, reported_names(Objective(model), declares_validation(spec)))


def check_monitors(train: TrainSpec, names: Sequence[str]) -> None:
    """Every value the spec monitors (train.monitor, each callback's monitor) is one the run reports.

    `names` is reported_names(...) for the run. Called before the first epoch, so a typo costs no
    training. train.monitor = "val_loss" (the default) without validation data is allowed: the best
    checkpoint then follows "loss". Raises one SpecError naming every key that is wrong.
    """
    monitored = [("train.monitor", train.monitor)]
    monitored += [(f"train.callbacks[{index}].monitor", callback.monitor)
                  for index, callback in enumerate(train.callbacks) if hasattr(callback, "monitor")]
    problems = [str(unknown_monitor_error(key, monitor, names)) for key, monitor in monitored
                if monitor not in names and not (key == "train.monitor" and monitor == "val_loss")]
    if len(problems) == 1:
        raise SpecError(problems[0])
    if problems:
        raise SpecError(f"{len(problems)} monitored values are not reported:\n" +
                        "\n".join(f"  {problem}" for problem in problems))


def unknown_monitor_error(key: str, monitor: str, names: Sequence[str]) -> SpecError:
    """The error for a monitor that is not among the run's reported names: the key, a did-you-mean, the names."""
    close = suggest(monitor, names)
    text = f"{key}: {monitor!r} is not reported; the run reports {', '.join(names)}"
    if close:
        text += f" (did you mean {close}?)"
    if monitor.startswith("val_") and "val_loss" not in names:
        text += ('; it has no validation data, so no val_ values: add data.validation_split = 0.2 or '
                 'data.validation = "PATH", or monitor a training value')
    return SpecError(text)
