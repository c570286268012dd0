"""reported_names: the keys an epoch's logs hold, known before the first epoch; monitors checked against them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.errors import DataError, SpecError
from dlcli.graph import build_model
from dlcli.spec.load import validate_spec
from dlcli.train.callbacks import Callback, Run
from dlcli.train.fit import fit_run
from dlcli.train.loop import Objective
from dlcli.train.monitored import check_monitors, reported_names, unknown_monitor_error


class EpochKeys(Callback):
    """Records the keys of every epoch's logs, as the train loop hands them to callbacks."""

    def __init__(self) -> None:
        self.keys: list[list[str]] = []

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        self.keys.append(list(logs))


def _single(folder: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    np.savez(folder / "s.npz", x=rng.normal(size=(40, 2)).astype(np.float32), y=rng.integers(0, 3, 40))
    return {"name": "single", "data": {"train": str(folder / "s.npz")},
            "model": {"input": {"shape": [2]}, "layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
            "train": {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy", {"type": "sparse_top_k_categorical_accuracy", "k": 2, "name": "top2"}],
                      "epochs": 1, "batch_size": 20}}


def _multi(folder: Path) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    np.savez(folder / "m.npz", x=rng.normal(size=(40, 2)).astype(np.float32), kind=rng.integers(0, 3, 40),
             level=rng.normal(size=(40, 1)).astype(np.float32))
    return {"name": "multi", "data": {"train": str(folder / "m.npz"), "inputs": {"x": "x"},
                                      "targets": {"kind": "kind", "level": "level"}},
            "model": {"inputs": {"x": {"shape": [2]}},
                      "nodes": {"kind": {"type": "dense", "input": "x", "units": 3, "activation": "softmax"},
                                "level": {"type": "dense", "input": "x", "units": 1}},
                      "outputs": {"kind": {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
                                  "level": {"loss": "mse", "metrics": ["mae"]}}},
            "train": {"epochs": 1, "batch_size": 20}}


@pytest.mark.parametrize("make", [_single, _multi], ids=["single_output", "multi_output"])
@pytest.mark.parametrize("validation", [False, True], ids=["no_validation", "validation"])
def test_reported_names_are_exactly_the_keys_of_a_real_epochs_logs(tmp_path: Path, make: Any,
                                                                   validation: bool) -> None:
    doc = make(tmp_path)
    if validation:
        doc["data"]["validation_split"] = 0.25
    spec = validate_spec(copy.deepcopy(doc), Path("s.toml"))
    model = build_model(spec.model, np.random.default_rng(0), spec)
    names = reported_names(Objective(model), has_validation=validation)
    recorder = EpochKeys()
    fit_run(spec, tmp_path / "run", [recorder])
    assert recorder.keys == [names]


def test_reported_names_of_a_multi_output_model_spell_out_each_output(tmp_path: Path) -> None:
    spec = validate_spec(_multi(tmp_path), Path("s.toml"))
    model = build_model(spec.model, np.random.default_rng(0), spec)
    assert reported_names(Objective(model), True) == [
        "loss", "kind_loss", "level_loss", "kind_accuracy", "level_mae",
        "val_loss", "val_kind_loss", "val_level_loss", "val_kind_accuracy", "val_level_mae",
        "seconds", "learning_rate"]


NAMES = ["loss", "accuracy", "val_loss", "val_accuracy", "seconds", "learning_rate"]


def _train(folder: Path, **options: Any) -> Any:
    doc = _single(folder)
    doc["train"].update(options)
    return validate_spec(doc, Path("s.toml")).train


def test_check_monitors_accepts_reported_names_and_val_loss_without_validation(tmp_path: Path) -> None:
    check_monitors(_train(tmp_path, monitor="val_accuracy", callbacks=[{"type": "early_stopping", "monitor": "accuracy"}]),
                   NAMES)
    check_monitors(_train(tmp_path), ["loss", "accuracy", "seconds", "learning_rate"])  # best follows loss then


def test_a_misspelt_callback_monitor_names_its_key_suggests_and_lists_the_names(tmp_path: Path) -> None:
    train = _train(tmp_path, callbacks=[{"type": "model_checkpoint", "every_epochs": 1},
                              {"type": "reduce_lr_on_plateau", "monitor": "val_acc"}])
    with pytest.raises(SpecError) as caught:
        check_monitors(train, NAMES)
    assert str(caught.value) == ("train.callbacks[1].monitor: 'val_acc' is not reported; the run reports loss, "
                                 "accuracy, val_loss, val_accuracy, seconds, learning_rate (did you mean "
                                 "val_accuracy?)")


def test_every_wrong_monitor_is_listed_in_one_error(tmp_path: Path) -> None:
    train = _train(tmp_path, monitor="acuracy", callbacks=[{"type": "early_stopping", "monitor": "val_los"}])
    with pytest.raises(SpecError) as caught:
        check_monitors(train, NAMES)
    lines = str(caught.value).splitlines()
    assert lines[0] == "2 monitored values are not reported:"
    assert lines[1].startswith("  train.monitor: 'acuracy' is not reported;") and "(did you mean accuracy?)" in lines[1]
    assert lines[2].startswith("  train.callbacks[0].monitor: 'val_los'") and "(did you mean val_loss?)" in lines[2]


def test_a_val_monitor_without_validation_data_says_how_to_get_it() -> None:
    error = unknown_monitor_error("train.callbacks[0].monitor", "val_accuracy",
                                  ["loss", "accuracy", "seconds", "learning_rate"])
    assert "no validation data" in str(error) and "data.validation_split" in str(error)
    assert "did you mean" not in unknown_monitor_error("train.monitor", "zzz", NAMES).args[0]


def test_a_misspelt_monitor_is_refused_before_the_data_loads(tmp_path: Path) -> None:
    # the data file does not exist: a monitor no run could report is named first, before any data loads or kernel
    # compiles (on an empty kernel cache the check after the data came seconds later); one that only needs
    # validation data waits for the data, whose error then comes first
    doc = _single(tmp_path)
    doc["data"] = {"train": str(tmp_path / "missing.npz"), "validation_split": 0.25}
    doc["train"]["callbacks"] = [{"type": "early_stopping", "monitor": "val_acuracy"}]
    with pytest.raises(SpecError) as caught:
        fit_run(validate_spec(copy.deepcopy(doc), tmp_path / "s.toml"), tmp_path / "run", [])
    assert str(caught.value).startswith("train.callbacks[0].monitor: 'val_acuracy' is not reported; the run reports "
                                        "loss, accuracy, top2, val_loss, val_accuracy, val_top2")
    doc["train"]["callbacks"][0]["monitor"] = "val_accuracy"
    del doc["data"]["validation_split"]
    with pytest.raises(DataError, match="missing.npz"):
        fit_run(validate_spec(copy.deepcopy(doc), tmp_path / "s.toml"), tmp_path / "run2", [])


def _objective(doc: dict[str, Any]) -> Objective:
    spec = validate_spec(copy.deepcopy(doc), Path("s.toml"))
    return Objective(build_model(spec.model, np.random.default_rng(0), spec), strict=True)


CLASHES = [  # (train.metrics and weighted_metrics, the key named, its message after "<key>: ", the name suggested)
    ({"metrics": [{"type": "accuracy", "name": "loss"}]}, "train.metrics[0].name",
     "reported as 'loss', which the training loss is reported as already", "accuracy"),
    ({"metrics": ["accuracy", "accuracy"]}, "train.metrics[1]",
     "reported as 'accuracy', which train.metrics[0] is reported as already", "accuracy_1"),
    ({"metrics": ["accuracy", {"type": "mae", "name": "accuracy"}]}, "train.metrics[1].name",
     "reported as 'accuracy', which train.metrics[0] is reported as already", "mae"),
    ({"metrics": [{"type": "accuracy", "name": "val_loss"}]}, "train.metrics[0].name",
     "reported as 'val_loss', which is how the validation value of 'loss' is reported", "accuracy"),
    ({"metrics": [{"type": "accuracy", "name": "learning_rate"}]}, "train.metrics[0].name",
     "reported as 'learning_rate', which every epoch's record holds already (epoch, epochs, event, seconds, "
     "learning_rate)", "accuracy"),
    ({"metrics": [{"type": "accuracy", "name": "seconds"}]}, "train.metrics[0].name", "reported as 'seconds', ",
     "accuracy"),
    ({"metrics": [{"type": "accuracy", "name": "epoch"}]}, "train.metrics[0].name", "reported as 'epoch', ",
     "accuracy"),
    # Keras' rule renames a weighted metric named like a metric weighted_<name>; two of them still clash
    ({"metrics": ["accuracy"], "weighted_metrics": ["accuracy", "accuracy"]}, "train.weighted_metrics[1]",
     "reported as 'weighted_accuracy', which train.weighted_metrics[0] is reported as already", "accuracy_1"),
    ({"weighted_metrics": [{"type": "mae", "name": "loss"}]}, "train.weighted_metrics[0].name",
     "reported as 'loss', ", "mae"),
]


@pytest.mark.parametrize("metrics,key,message,suggested", CLASHES)
def test_a_metric_reported_under_a_name_the_run_already_reports_is_refused(tmp_path: Path, metrics: dict[str, Any],
                                                                            key: str, message: str,
                                                                            suggested: str) -> None:
    # it overwrote the other value in the logs with exit 0: named "loss", the accuracy became the loss that the
    # best checkpoint followed; two "accuracy" entries reported one column
    doc = _single(tmp_path)
    doc["train"].update({"metrics": [], **metrics})
    with pytest.raises(SpecError) as caught:
        _objective(doc)
    assert str(caught.value).startswith(f"{key}: {message}"), str(caught.value)
    assert str(caught.value).endswith(f'; give it a name of its own, e.g. name = "{suggested}"'), str(caught.value)


def test_a_metric_of_a_multi_output_model_named_like_an_outputs_loss_is_refused(tmp_path: Path) -> None:
    doc = _multi(tmp_path)
    doc["model"]["outputs"]["kind"]["metrics"] = [{"type": "accuracy", "name": "loss"}]  # kind_loss, kind's loss
    with pytest.raises(SpecError) as caught:
        _objective(doc)
    assert str(caught.value).startswith("model.outputs.kind.metrics[0].name: reported as 'kind_loss', which the "
                                        "loss of output kind is reported as already")


def test_an_output_named_val_something_keeps_its_metrics_unless_the_names_really_collide(tmp_path: Path) -> None:
    # the val_ rule read the whole name: output val_kind's accuracy (val_kind_accuracy) was refused, and every
    # name suggested was refused again; it is only a clash beside an output kind, whose validation accuracy it is
    doc = _multi(tmp_path)
    doc["model"]["nodes"]["val_kind"] = doc["model"]["nodes"].pop("kind")
    doc["model"]["outputs"]["val_kind"] = doc["model"]["outputs"].pop("kind")
    assert _objective(doc).metric_names["val_kind"] == ["val_kind_accuracy"]
    doc["model"]["nodes"]["kind"] = {"type": "dense", "input": "x", "units": 3, "activation": "softmax"}
    doc["model"]["outputs"]["kind"] = {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    with pytest.raises(SpecError, match=r"model.outputs.kind.metrics\[0\]: reported as 'kind_accuracy', whose "
                                        r"validation value would be reported as 'val_kind_accuracy', which "
                                        r"model.outputs.val_kind.metrics\[0\] is already"):
        _objective(doc)


def test_a_weighted_metric_named_like_a_metric_is_reported_as_keras_names_it(tmp_path: Path) -> None:
    doc = _single(tmp_path)
    doc["train"].update({"metrics": ["accuracy"], "weighted_metrics": ["accuracy"]})
    assert _objective(doc).metric_names == {"dense": ["accuracy", "weighted_accuracy"]}


def test_a_clashing_metric_name_is_exit_2_from_validate(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dlcli.cli import commands  # noqa: F401 - registers the subcommands
    from dlcli.cli.main import cli

    doc = _single(tmp_path)
    path = tmp_path / "s.toml"
    path.write_text(f'name = "s"\n[data]\ntrain = "{tmp_path / "s.npz"}"\n[model]\ninput = {{ shape = [2] }}\n'
                    '[[model.layers]]\ntype = "dense"\nunits = 3\nactivation = "softmax"\n[train]\n'
                    'loss = "sparse_categorical_crossentropy"\nmetrics = [{ type = "accuracy", name = "loss" }]\n')
    assert doc  # wrote s.npz
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert "train.metrics[0].name: reported as 'loss'" in result.output and "Traceback" not in result.output
