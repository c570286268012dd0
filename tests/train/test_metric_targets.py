"""Metrics against the targets their output trains on: one that cannot score them is refused by its key, before
the data loads (and by dlcli validate), instead of a traceback in the first epoch or a meaningless value."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.errors import SpecError
from dlcli.graph import build_model
from dlcli.spec.load import validate_spec
from dlcli.train.fit import fit_run
from dlcli.train.loop import Objective

SCORES = ("compares the output's 3 values one by one with targets of the same shape, but "
          "sparse_categorical_crossentropy trains it on integer class labels; use accuracy (or "
          "sparse_categorical_accuracy, sparse_top_k_categorical_accuracy), or train on one-hot targets: "
          'loss = "categorical_crossentropy" with data.one_hot = true')


def _classifier(folder: Path, loss: str = "sparse_categorical_crossentropy", **train: Any) -> dict[str, Any]:
    """A 3-class softmax output over 2 features, with integer labels in s.npz."""
    rng = np.random.default_rng(0)
    np.savez(folder / "s.npz", x=rng.normal(size=(40, 2)).astype(np.float32), y=rng.integers(0, 3, 40))
    return {"name": "fit", "data": {"train": str(folder / "s.npz")},
            "model": {"input": {"shape": [2]}, "layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
            "train": {"loss": loss, "epochs": 1, "batch_size": 20, **train}}


def _objective(doc: dict[str, Any]) -> Objective:
    spec = validate_spec(copy.deepcopy(doc), Path("s.toml"))
    return Objective(build_model(spec.model, np.random.default_rng(0), spec), strict=True)


@pytest.mark.parametrize("metric", ["precision", "recall", "auc", "mean_absolute_error", "mse", "binary_accuracy",
                                    "categorical_accuracy"])
def test_an_elementwise_metric_on_integer_labels_is_refused(tmp_path: Path, metric: str) -> None:
    # a (batch, 3) output against (batch,) labels: a reshape error in the first epoch (exit 1), or for
    # categorical_accuracy a meaningless value; Keras 3 fails too, or broadcasts each label against all 3 scores
    doc = _classifier(tmp_path, metrics=["accuracy", metric])
    with pytest.raises(SpecError) as caught:
        _objective(doc)
    assert str(caught.value) == f"train.metrics[1]: {metric} {SCORES}"


@pytest.mark.parametrize("metric", ["edit_distance", "sequence_accuracy"])
def test_a_sequence_metric_without_a_ctc_loss_is_refused(tmp_path: Path, metric: str) -> None:
    doc = _classifier(tmp_path, weighted_metrics=[metric])
    with pytest.raises(SpecError) as caught:
        _objective(doc)
    assert str(caught.value) == (f"train.weighted_metrics[0]: {metric} scores CTC decodings against label sequences, "
                                 "but this output's loss is sparse_categorical_crossentropy; it needs loss = \"ctc\"")


@pytest.mark.parametrize("metric", ["sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy"])
def test_a_sparse_metric_on_one_hot_targets_is_refused(tmp_path: Path, metric: str) -> None:
    doc = _classifier(tmp_path, loss="categorical_crossentropy", metrics=[{"type": metric, "name": "hits"}])
    with pytest.raises(SpecError) as caught:
        _objective(doc)
    assert str(caught.value) == (f"train.metrics[0]: {metric} takes integer class labels, but "
                                 "categorical_crossentropy trains this output on targets of its own shape [3]; use "
                                 f"{metric.removeprefix('sparse_')} or accuracy")


def test_a_ctc_output_takes_only_sequence_metrics(tmp_path: Path) -> None:
    doc = {"name": "ctc", "data": {"train": "x.npz"},
           "model": {"inputs": {"x": {"shape": [6, 2]}},
                     "nodes": {"steps": {"type": "dense", "input": "x", "units": 4, "activation": "softmax"}},
                     "outputs": {"steps": {"loss": "ctc", "metrics": ["accuracy", "edit_distance", "mae"]}}}}
    with pytest.raises(SpecError) as caught:
        _objective(doc)
    assert str(caught.value) == ("model.outputs.steps.metrics[2]: a ctc output's targets are label sequences, which "
                                 "mae cannot score; use sequence_accuracy (what accuracy means here) or "
                                 "edit_distance")


@pytest.mark.parametrize("loss,metrics", [
    ("sparse_categorical_crossentropy", ["accuracy", "acc", "sparse_categorical_accuracy",
                                         {"type": "sparse_top_k_categorical_accuracy", "k": 2},
                                         {"type": "top_k_categorical_accuracy", "k": 2}]),
    ("categorical_crossentropy", ["accuracy", "categorical_accuracy", "precision", "recall", "auc", "mae", "mse",
                                  "binary_accuracy", {"type": "top_k_categorical_accuracy", "k": 2}]),
])
def test_metrics_that_fit_the_targets_are_kept(tmp_path: Path, loss: str, metrics: list[Any]) -> None:
    assert len(_objective(_classifier(tmp_path, loss=loss, metrics=metrics)).metric_names["dense"]) == len(metrics)


def test_train_refuses_the_metric_before_the_data_loads(tmp_path: Path) -> None:
    doc = _classifier(tmp_path, metrics=["precision"])
    doc["data"]["train"] = str(tmp_path / "missing.npz")  # the metric's error comes first
    with pytest.raises(SpecError, match=r"^train.metrics\[0\]: precision compares"):
        fit_run(validate_spec(doc, tmp_path / "s.toml"), tmp_path / "run", [])


def test_one_hot_with_a_sparse_loss_is_refused_by_the_spec(tmp_path: Path) -> None:
    # the loss got one-hot rows where it takes labels: a ValueError in the first step (exit 1); Keras 3's sparse
    # crossentropy refuses one-hot targets too
    doc = _classifier(tmp_path)
    doc["data"]["one_hot"] = True
    with pytest.raises(SpecError) as caught:
        validate_spec(doc, tmp_path / "s.toml")
    assert str(caught.value) == ("s.toml: data.one_hot: turns class labels into one-hot rows, but train.loss = "
                                 "sparse_categorical_crossentropy takes the labels themselves; remove one_hot, or use "
                                 'loss = "categorical_crossentropy"')


def test_validate_refuses_a_metric_that_does_not_fit_with_exit_2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dlcli.cli import commands  # noqa: F401 - registers the subcommands
    from dlcli.cli.main import cli

    _classifier(tmp_path)
    path = tmp_path / "s.toml"
    path.write_text(f'name = "s"\n[data]\ntrain = "{tmp_path / "s.npz"}"\n[model]\ninput = {{ shape = [2] }}\n'
                    '[[model.layers]]\ntype = "dense"\nunits = 3\nactivation = "softmax"\n[train]\n'
                    'loss = "sparse_categorical_crossentropy"\nmetrics = ["auc"]\n')
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"train.metrics[0]: auc {SCORES}" in result.output


def test_a_run_that_trained_before_the_rule_still_evaluates_and_resumes(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # runs trained before metrics were checked against their targets hold such a metric in their saved spec:
    # eval and a resume rebuild the objective from it, and refused it (exit 2, a spec the user cannot edit)
    from dlcli.train.loop import Split, evaluate
    from dlcli.train.resume import resume_run
    from dlcli.train.run_checkpoints import load_run

    doc = _classifier(tmp_path, metrics=["accuracy", "categorical_accuracy"])
    with monkeypatch.context() as before_the_rule:
        before_the_rule.setattr("dlcli.train.loop.target_misfit", lambda *args: None)
        fit_run(validate_spec(copy.deepcopy(doc), Path("s.toml")), tmp_path / "old", [])
    spec, model, _, _, _ = load_run(tmp_path / "old", "last")
    data = np.load(tmp_path / "s.npz")
    results = evaluate(model, Objective(model, {"dense": ()}), Split({"input": data["x"]}, {"dense": data["y"]}), 20)
    assert set(results) == {"loss", "accuracy", "categorical_accuracy"}
    summary = resume_run(tmp_path / "old", ("train.epochs=2",), None, [])
    assert summary is not None and summary["epochs_run"] == 2
    with pytest.raises(SpecError, match=r"train.metrics\[1\]: categorical_accuracy compares"):
        fit_run(validate_spec(copy.deepcopy(doc), Path("s.toml")), tmp_path / "new", [])  # a new run still is
