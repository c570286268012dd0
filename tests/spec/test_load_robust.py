"""Spec files and --set overrides that used to end in a traceback or a wrong verdict: each is one spec error or works."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dlcli.errors import SpecError
from dlcli.spec.load import apply_overrides, load_spec, read_toml

SPEC = '''name = "tiny"
[data]
dataset = "digits"
validation_split = 0.1
[model]
input = { shape = [64] }
[[model.layers]]
type = "dense"
units = 10
activation = "softmax"
[train]
loss = "sparse_categorical_crossentropy"
optimizer = "adam"
metrics = ["accuracy"]
callbacks = ["early_stopping"]
'''

GRAPH = '''name = "graph"
[data]
dataset = "digits"
[model.inputs]
x = { shape = [64] }
[model.nodes.y]
type = "dense"
input = "x"
units = 10
activation = "softmax"
[model.outputs]
y = { loss = "sparse_categorical_crossentropy", metrics = ["accuracy"] }
'''


def _write(folder: Path, text: str, name: str = "s.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_byte_order_mark_at_the_start_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + SPEC.encode())
    assert load_spec(path).name == "tiny"


@pytest.mark.parametrize("opening", ["[", "{ a = "])
def test_thousands_of_nested_arrays_or_tables_are_a_spec_error_naming_the_file(tmp_path: Path, opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    path = _write(tmp_path, f'name = "deep"\nfoo = {opening * 5000}1{closing * 5000}\n', "deep.toml")
    with pytest.raises(SpecError, match=r"deep\.toml: invalid TOML: arrays or inline tables are nested too deeply"):
        read_toml(path)


def test_a_deeply_nested_override_value_is_a_spec_error_naming_the_key() -> None:
    with pytest.raises(SpecError, match=r"^--set train.epochs: arrays or inline tables are nested too deeply"):
        apply_overrides({}, ["train.epochs=" + "[" * 5000 + "]" * 5000])


def test_an_optimizer_given_by_name_takes_overrides_of_its_options(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, SPEC), ["train.optimizer.learning_rate=1e-2", "train.optimizer.beta_1=0.8"])
    assert spec.train.optimizer.type == "adam"
    assert spec.train.optimizer.learning_rate == 1e-2 and spec.train.optimizer.beta_1 == 0.8


def test_losses_metrics_and_callbacks_given_by_name_take_overrides_of_their_options(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, SPEC), ["train.loss.from_logits=true", "train.metrics[0].name=acc",
                                               "train.callbacks[0].patience=3"])
    assert spec.train.loss.type == "sparse_categorical_crossentropy" and spec.train.loss.from_logits
    assert spec.train.metrics[0].type == "accuracy" and spec.train.metrics[0].name == "acc"
    assert spec.train.callbacks[0].type == "early_stopping" and spec.train.callbacks[0].patience == 3
    graph = load_spec(_write(tmp_path, GRAPH, "g.toml"), ["model.outputs.y.loss.from_logits=true"])
    assert graph.model.outputs["y"].loss.from_logits


def test_an_override_inside_a_table_the_file_leaves_out_starts_from_its_default(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, SPEC.replace('optimizer = "adam"\n', "")),
                     ["train.optimizer.learning_rate=0.05"])
    assert spec.train.optimizer.type == "rmsprop" and spec.train.optimizer.learning_rate == 0.05


def test_an_option_the_named_component_lacks_is_reported_against_that_component(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"train\.optimizer\.learnin_rate: unknown key; adam takes .*"
                                        r"\(did you mean learning_rate\?\)"):
        load_spec(_write(tmp_path, SPEC), ["train.optimizer.learnin_rate=1e-2"])


def test_a_name_where_no_shorthand_exists_is_still_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"^--set train\.monitor\.x: train\.monitor is not a table$"):
        load_spec(_write(tmp_path, SPEC), ["train.monitor=val_loss", "train.monitor.x=1"])


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_learning_rate_is_a_spec_error(tmp_path: Path, value: str) -> None:
    shown = value if value != "-inf" else "-inf"
    with pytest.raises(SpecError) as caught:
        load_spec(_write(tmp_path, SPEC), [f"train.optimizer.learning_rate={value}"])
    assert str(caught.value) == f"s.toml: train.optimizer.learning_rate: must be a finite number, got {shown}"
    in_file = SPEC.replace('optimizer = "adam"', f'optimizer = {{ type = "sgd", learning_rate = {value} }}')
    with pytest.raises(SpecError, match=f"train.optimizer.learning_rate: must be a finite number, got {shown}"):
        load_spec(_write(tmp_path, in_file))


@pytest.mark.parametrize("override,key", [
    ('train.optimizer.learning_rate={ schedule = "exponential_decay", initial = nan, decay_steps = 10, '
     'decay_rate = 0.5 }', "train.optimizer.learning_rate.initial"),
    ("train.callbacks[0].min_delta=inf", "train.callbacks[0].min_delta"),
    ('train.callbacks=[{ type = "reduce_lr_on_plateau", min_lr = inf }]', "train.callbacks[0].min_lr"),
    ("train.optimizer.epsilon=nan", "train.optimizer.epsilon"),
    ("model.layers[0].units=nan", "model.layers[0].units"),
])
def test_every_spec_number_must_be_finite(tmp_path: Path, override: str, key: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(_write(tmp_path, SPEC), [override])
    message = str(caught.value)
    assert message.startswith(f"s.toml: {key}: ") and ("finite" in message or "integer" in message), message


def test_a_rescaling_scale_of_nan_is_refused(tmp_path: Path) -> None:
    text = SPEC.replace('[[model.layers]]\ntype = "dense"',
                        '[[model.layers]]\ntype = "rescaling"\nscale = nan\n[[model.layers]]\ntype = "dense"')
    with pytest.raises(SpecError, match=r"model\.layers\[0\]\.scale: must be a finite number, got nan"):
        load_spec(_write(tmp_path, text))
    assert math.isfinite(load_spec(_write(tmp_path, text.replace("nan", "0.5"))).model.layers[0].scale)


@pytest.mark.parametrize("metric,message", [
    ('{ type = "precision", thresholds = 2 }',
     "train.metrics[0]: thresholds: input should be less than or equal to 1, got 2"),
    ('{ type = "precision", thresholds = nan }',
     "train.metrics[0]: thresholds: input should be a finite number, got nan"),
    ('{ type = "recall", treshold = 0.3 }',
     "train.metrics[0]: treshold: not an option of recall (it takes name, thresholds); did you mean thresholds?"),
    ('{ type = "top_k_accuracy", k = 0 }', "train.metrics[0]: k: input should be greater than 0, got 0"),
])
def test_metric_options_are_checked_when_the_spec_loads(tmp_path: Path, metric: str, message: str) -> None:
    """Before, a bad metric option was a pydantic traceback (exit 1) when the first epoch built the metric."""
    with pytest.raises(SpecError) as caught:
        load_spec(_write(tmp_path, SPEC), [f"train.metrics=[{metric}]"])
    assert str(caught.value) == f"s.toml: {message}"


def test_a_relative_data_path_in_a_symlink_loop_reaches_the_data_readers(tmp_path: Path) -> None:
    """Resolving it here raised RuntimeError (a traceback); the readers' gate names it with exit 3."""
    (tmp_path / "a.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    spec = load_spec(_write(tmp_path, SPEC.replace('dataset = "digits"', 'train = "a.csv"\ntarget = "y"')))
    assert spec.data.train == tmp_path / "a.csv"
