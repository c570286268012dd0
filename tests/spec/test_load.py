"""Spec loading: every mistake names the file and the key, says what was expected and what was found."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest

from dlcli.errors import SpecError
from dlcli.spec.load import apply_overrides, load_spec, parse_key, parse_value, validate_spec

BASE: dict[str, Any] = {
    "name": "mnist-mlp", "seed": 1,
    "data": {"dataset": "mnist", "validation_split": 0.1},
    "model": {"input": {"shape": [28, 28]},
              "layers": [{"type": "rescaling", "scale": 0.5}, {"type": "flatten"},
                         {"type": "dense", "units": 512, "activation": "relu"},
                         {"type": "dense", "units": 10, "activation": "softmax"}]},
    "train": {"loss": "sparse_categorical_crossentropy", "optimizer": {"type": "rmsprop", "learning_rate": 1e-3},
              "metrics": ["accuracy"], "epochs": 5, "batch_size": 128},
}


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        node = doc
        keys = path.replace("]", "").replace("[", ".").split(".")
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
    return mutate


def _drop(path: str) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        del node[last]
    return mutate


# mistake -> (mutation, the exact message after "mnist.toml: ")
MISTAKES: dict[str, tuple[Callable[[dict], None], str]] = {
    "negative units": (_set("model.layers[2].units", -3), "model.layers[2].units: must be a positive integer, got -3"),
    "zero batch size": (_set("train.batch_size", 0), "train.batch_size: must be a positive integer, got 0"),
    "string epochs": (_set("train.epochs", "five"), "train.epochs: must be an integer, got 'five'"),
    "misspelt layer key": (_set("model.layers[2].unit", 4),
                           "model.layers[2].unit: unknown key; dense takes activation, bias_initializer, "
                           "kernel_initializer, name, trainable, type, units, use_bias (did you mean units?)"),
    "misspelt layer type": (_set("model.layers[1].type", "flaten"),
                            "model.layers[1].type: unknown layer 'flaten' (did you mean flatten?); known layers: "),
    "missing layer type": (_drop_layer_type := (lambda d: d["model"]["layers"][1].pop("type")),
                           'model.layers[1]: missing type: say which layer this is, e.g. type = "dense"'),
    "unknown activation": (_set("model.layers[2].activation", "relux"),
                           "model.layers[2].activation: unknown activation 'relux' (did you mean relu?)"),
    "unknown initializer": (_set("model.layers[2].kernel_initializer", "glorot"),
                            "model.layers[2].kernel_initializer: unknown initializer 'glorot' (did you mean "),
    "misspelt train key": (_set("train.epoch", 5), "train.epoch: unknown key; allowed keys: "),
    "misspelt top-level key": (_set("sead", 5), "sead: unknown key; allowed keys: data, description, model, name, "
                                                "seed, train, tune (did you mean seed?)"),
    "unknown optimizer": (_set("train.optimizer", "adamm"),
                          "train.optimizer.type: unknown optimizer 'adamm' (did you mean adam?); known optimizers: "
                          "adagrad, adam, adamw, rmsprop, sgd"),
    "misspelt optimizer option": (_set("train.optimizer", {"type": "adam", "beta1": 0.9}),
                                  "train.optimizer.beta1: unknown key; adam takes "),
    "string learning rate": (_set("train.optimizer.learning_rate", "fast"),
                             "train.optimizer.learning_rate: must be a number, got 'fast'"),
    "negative learning rate": (_set("train.optimizer.learning_rate", -0.1),
                               "train.optimizer: learning_rate must be positive, got -0.1"),
    "unknown schedule": (_set("train.optimizer.learning_rate", {"schedule": "exp"}),
                         "train.optimizer.learning_rate.schedule: unknown schedule 'exp'"),
    "schedule missing key": (_set("train.optimizer.learning_rate", {"schedule": "exponential_decay", "initial": 1.0,
                                                                    "decay_rate": 0.5}),
                             "train.optimizer.learning_rate.decay_steps: required key missing"),
    "unknown loss": (_set("train.loss", "crossentropy"),
                     "train.loss: unknown loss 'crossentropy' (did you mean binary_crossentropy?); known losses: "),
    "misspelt ctc option": (_set("train.loss", {"type": "ctc", "blnk": 10}),
                            "train.loss.blnk: unknown key; ctc takes blank, from_logits, type (did you mean blank?)"),
    "option of another loss": (_set("train.loss", {"type": "mse", "blank": 10}),
                               "train.loss.blank: unknown key; mean_squared_error takes type"),
    # Keras' MeanSquaredError and MeanAbsoluteError take no from_logits; dlcli accepted it and ignored it
    "from_logits on a regression loss": (_set("train.loss", {"type": "mae", "from_logits": True}),
                                         "train.loss.from_logits: unknown key; mean_absolute_error takes type"),
    "loss table without type": (_set("train.loss", {"blank": 3}),
                                'train.loss: missing type: say which loss this is, e.g. type = "ctc"'),
    "negative ctc blank": (_set("train.loss", {"type": "ctc", "blank": -1}),
                           "train.loss.blank: must be at least 0, got -1"),
    "unknown metric": (_set("train.metrics", ["acuracy"]),
                       "train.metrics[0]: unknown metric 'acuracy' (did you mean accuracy?)"),
    "missing loss": (_drop("train.loss"), 'train.loss is required, e.g. loss = "sparse_categorical_crossentropy"'),
    "two data sources": (_set("data.train", "x.npz"),
                         'data: give exactly one of dataset = "NAME" (see `dlcli datasets`) or train = "PATH"'),
    "validation split of 1.5": (_set("data.validation_split", 1.5),
                                "data.validation_split: must be less than 1.0, got 1.5"),
    "empty input shape": (_set("model.input.shape", []), "model.input.shape: must not be empty"),
    "zero in input shape": (_set("model.input.shape", [28, 0]),
                            "model.input.shape[1]: must be a positive integer, got 0"),
    "run name with a space": (_set("name", "my run"),
                              "name: must be ASCII letters (A-Z, a-z), digits, '.', '_' or '-', beginning with a "
                              "letter or digit (it names the run folder), got 'my run'"),
    "run name with a non-ASCII letter": (_set("name", "fleurs-été"), "name: must be ASCII letters (A-Z, a-z), "),
    "negative seed": (_set("seed", -1), "seed: must be at least 0, got -1"),
    "dropout rate 1": (_set("model.layers[1]", {"type": "dropout", "rate": 1.0}),
                       "model.layers[1].rate: must be less than 1.0, got 1.0"),
    "unknown callback": (_set("train.callbacks", [{"type": "early_stoping"}]),
                         "train.callbacks[0].type: unknown callback 'early_stoping' (did you mean early_stopping?)"),
    "callback bad patience": (_set("train.callbacks", [{"type": "early_stopping", "patience": -2}]),
                              "train.callbacks[0].patience: must be at least 0, got -2"),
    "both model forms": (_set("model.inputs", {"x": {"shape": [3]}}),
                         "model: use either input + layers (a sequential stack) or inputs + nodes + outputs"),
    "layers not a list": (_set("model.layers", {"type": "dense"}), "model.layers: must be a list, got a table"),
    "boolean as units": (_set("model.layers[2].units", True), "model.layers[2].units: must be an integer, got true"),
    "boolean as learning rate": (_set("train.optimizer.learning_rate", False),
                                 "train.optimizer.learning_rate: must be a number, got false"),
    "boolean as string": (_set("train.shuffle", "maybe"), "train.shuffle: must be true or false, got 'maybe'"),
    "slash in a layer name": (_set("model.layers[2].name", "block/dense"),
                              "model.layers[2].name: 'block/dense' contains '/', which separates a layer's name from "
                              "its weights' names (dense_1/kernel), so two layers could save a weight under one "
                              "name; write 'block_dense'"),
    "slash in a wrapped layer's name": (_set("model.layers[2]", {"type": "bidirectional",
                                                                 "layer": {"type": "lstm", "units": 2,
                                                                           "name": "a/b"}}),
                                        "model.layers[2].layer.name: 'a/b' contains '/'"),
    # pydantic's lax mode took these as numbers and booleans ("no" as false); TOML has numbers and booleans
    "string as units": (_set("model.layers[2].units", "8"), "model.layers[2].units: must be an integer, got '8'"),
    "string as epochs": (_set("train.epochs", "2"), "train.epochs: must be an integer, got '2'"),
    "string as seed": (_set("seed", "1"), "seed: must be an integer, got '1'"),
    "string as learning rate": (_set("train.optimizer.learning_rate", "0.003"),
                                "train.optimizer.learning_rate: must be a number, got '0.003'"),
    "string as split": (_set("data.validation_split", "0.1"), "data.validation_split: must be a number, got '0.1'"),
    "string as boolean": (_set("train.shuffle", "no"), "train.shuffle: must be true or false, got 'no'"),
    "number as boolean": (_set("train.shuffle", 1), "train.shuffle: must be true or false, got 1"),
    "string in a shape": (_set("model.input.shape", ["28", 28]), "model.input.shape[0]: must be an integer, got '28'"),
    "boolean in a shape": (_set("model.input.shape", [28, True]),
                           "model.input.shape[1]: must be an integer, got true"),
    "clipnorm and clipvalue": (_set("train.optimizer", {"type": "sgd", "clipnorm": 1.0, "clipvalue": 1.0}),
                               "train.optimizer: set at most one of clipnorm, global_clipnorm and clipvalue"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_spec_mistake_gets_a_message_naming_the_key(mistake: str) -> None:
    mutate, expected = MISTAKES[mistake]
    doc = copy.deepcopy(BASE)
    mutate(doc)
    with pytest.raises(SpecError) as info:
        validate_spec(doc, Path("specs/mnist.toml"))
    message = str(info.value)
    assert message.startswith(f"mnist.toml: {expected}"), message
    assert "\n" not in message and "Traceback" not in message and "pydantic" not in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize("key,value,advice", [
    ("features", ["a", "b"], "names columns of your own CSV or parquet file"),
    ("target", "y", "names a column of your own CSV or parquet file"),
    ("text", "review", "names a column of your own CSV or parquet file"),
    ("inputs", {"input": "x"}, "maps model inputs to arrays of your own .npz file"),
    ("targets", {"dense_1": "y"}, "maps model outputs to arrays of your own .npz file"),
    ("missing", "drop_rows", "says what to do with missing cells of your own CSV or parquet file"),
    ("validation", "valid.npz", "is a validation file of your own"),
    ("test", "test.npz", "is a test file of your own"),
    ("sample_weight", "w", "names a column or array of your own data file"),
])
def test_keys_of_your_own_files_are_refused_with_a_registry_dataset(key: str, value: Any, advice: str) -> None:
    # they did nothing (exit 0): the dataset's own arrays were read whatever they said
    doc = copy.deepcopy(BASE)
    doc["data"][key] = value
    with pytest.raises(SpecError) as info:
        validate_spec(doc, Path("mnist.toml"))
    assert str(info.value).startswith(f"mnist.toml: data.{key}: {advice}; a registry dataset ('mnist') "), \
        str(info.value)
    assert info.value.exit_code == 2


def test_defaults_written_out_are_fine_with_a_registry_dataset() -> None:
    doc = copy.deepcopy(BASE)
    doc["data"]["missing"] = "error"
    assert validate_spec(doc, Path("mnist.toml")).data.missing == "error"


def test_a_string_is_not_a_class_weight() -> None:
    doc = copy.deepcopy(BASE)
    doc["train"]["class_weight"] = {"0": "2.0"}
    with pytest.raises(SpecError) as info:
        validate_spec(doc, Path("mnist.toml"))
    assert "  train.class_weight.0: must be a number, got '2.0'\n" in str(info.value)


def test_what_toml_gives_numbers_and_booleans_still_validates(tmp_path: Path) -> None:
    # the strict check refuses strings for numbers and booleans, not the values TOML itself writes: an integer for a
    # float, a list for a tuple, one number for a pair, a word that a key takes besides numbers, --set values
    doc = copy.deepcopy(BASE)
    doc["model"]["input"]["shape"] = [28, 28, 1]
    doc["model"]["layers"][1:1] = [{"type": "conv2d", "filters": 2, "kernel_size": [3, 3], "strides": 1,
                                    "padding": "same"},
                                   {"type": "zero_padding2d", "padding": [[1, 0], [0, 1]]}]
    doc["data"]["validation_split"] = 0
    doc["train"]["class_weight"] = {"0": 2, "1": "balanced"}
    doc["train"]["loggers"] = [{"type": "tensorboard", "update_freq": "epoch"}]
    apply_overrides(doc, ["train.optimizer.learning_rate=1", "train.shuffle=false", "seed=3"])
    spec = validate_spec(doc, tmp_path / "m.toml")
    assert spec.train.optimizer.learning_rate == 1.0 and isinstance(spec.train.optimizer.learning_rate, float)
    assert spec.train.shuffle is False and spec.seed == 3 and spec.data.validation_split == 0.0
    assert spec.model.layers[1].kernel_size == (3, 3) and spec.model.layers[1].strides == (1, 1)
    assert spec.model.layers[2].padding == ((1, 0), (0, 1))
    assert spec.train.class_weight == {"0": 2.0, "1": "balanced"}


def test_there_are_at_least_20_distinct_mistakes() -> None:
    assert len({expected for _, expected in MISTAKES.values()}) >= 20


def test_several_problems_are_listed_together() -> None:
    doc = copy.deepcopy(BASE)
    doc["train"]["epoch"] = 5
    doc["model"]["layers"][2]["units"] = 0
    with pytest.raises(SpecError) as info:
        validate_spec(doc, Path("mnist.toml"))
    lines = str(info.value).splitlines()
    assert lines[0] == "mnist.toml has 2 problems:"
    assert any(line.startswith("  model.layers[2].units: must be a positive integer") for line in lines)
    assert any(line.startswith("  train.epoch: unknown key") for line in lines)


def test_valid_base_spec_loads() -> None:
    spec = validate_spec(copy.deepcopy(BASE), Path("mnist.toml"))
    assert spec.train.optimizer.type == "rmsprop" and spec.model.layers[2].units == 512


@pytest.mark.parametrize("loss,blank", [("ctc", None), ({"type": "ctc", "blank": 10}, 10), ("mse", None)])
def test_a_loss_by_name_or_as_a_table_with_its_own_options(loss: Any, blank: int | None) -> None:
    doc = copy.deepcopy(BASE)
    doc["train"]["loss"] = loss
    spec = validate_spec(doc, Path("mnist.toml")).train.loss
    assert spec.type == (loss if isinstance(loss, str) else loss["type"]) and getattr(spec, "blank", None) == blank
    # the crossentropies and ctc take from_logits; Keras' regression losses have no such key, nor do ours
    assert getattr(spec, "from_logits", None) is (False if spec.type == "ctc" else None)


def test_a_stored_spec_with_from_logits_false_on_a_regression_loss_still_loads() -> None:
    # every loss took from_logits before, so checkpoints and run folders hold mse specs with from_logits = false
    doc = copy.deepcopy(BASE)
    doc["train"]["loss"] = {"type": "mean_squared_error", "from_logits": False}
    spec = validate_spec(doc, Path("spec.json"))
    assert spec.train.loss.model_dump() == {"type": "mean_squared_error"}


def test_broken_toml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[data\ndataset = "mnist"\n')
    with pytest.raises(SpecError, match=r"bad.toml: invalid TOML: .*line 2.*: \[data$"):
        load_spec(path)
    # a key given twice: tomllib says "Cannot overwrite a value" and the line's number; the line says which key
    path.write_text('name = "x"\n[train]\nepochs = 3\nbatch_size = 8\nepochs = 4\n')
    with pytest.raises(SpecError, match=r"bad.toml: invalid TOML: Cannot overwrite a value \(at line 5, column 11\): "
                                        r"epochs = 4$"):
        load_spec(path)


def test_missing_and_binary_spec_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SpecError, match="not UTF-8 text"):
        load_spec(tmp_path / "bin.toml")


def test_overrides_use_toml_values_and_are_validated(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE)
    apply_overrides(doc, ["train.epochs=3", "train.optimizer.learning_rate=3e-4", "model.layers[2].activation=tanh",
                          'train.metrics=["accuracy", "auc"]'])
    spec = validate_spec(doc, Path("m.toml"))
    assert spec.train.epochs == 3 and spec.train.optimizer.learning_rate == 3e-4
    assert spec.model.layers[2].activation == "tanh" and len(spec.train.metrics) == 2
    bad = copy.deepcopy(BASE)
    apply_overrides(bad, ["train.epochs=-1"])
    with pytest.raises(SpecError, match="train.epochs: must be a positive integer, got -1"):
        validate_spec(bad, Path("m.toml"))


@pytest.mark.parametrize("override,message", [
    ("train.epochs", "expected KEY=VALUE"),
    ("model.layers[9].units=3", "model.layers[9] does not exist"),
    ("train..epochs=3", "not a key path"),
    ("name.first=3", "name is not a table"),
])
def test_bad_overrides_are_spec_errors(override: str, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        apply_overrides(copy.deepcopy(BASE), [override])


def test_parse_helpers() -> None:
    assert parse_key("model.layers[2].units") == ["model", "layers", 2, "units"]
    assert parse_value("1e-3") == 1e-3 and parse_value("true") is True and parse_value("relu") == "relu"
    assert parse_value('{ type = "adam" }') == {"type": "adam"}


def test_relative_data_paths_resolve_against_the_spec_folder(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "s.toml").write_text(
        'name = "s"\n[data]\ntrain = "data/train.npz"\n[model]\ninput = { shape = [2] }\n'
        '[[model.layers]]\ntype = "dense"\nunits = 1\n[train]\nloss = "mse"\n')
    assert load_spec(folder / "s.toml").data.train == (folder / "data" / "train.npz").resolve()


def test_paths_given_by_set_are_relative_to_the_current_directory(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # as in any command-line tool; paths written in the spec file stay relative to the spec (the guide's
    # `dlcli train specs/cats_vs_dogs_convnet.toml --set data.train=photos/train`, run beside specs/ and photos/,
    # looked for specs/photos/train)
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "s.toml").write_text(
        'name = "s"\n[data]\ntrain = "data/train.npz"\ntest = "data/test.npz"\n[model]\ninput = { shape = [2] }\n'
        '[[model.layers]]\ntype = "dense"\nunits = 1\n[train]\nloss = "mse"\n')
    monkeypatch.chdir(tmp_path)
    spec = load_spec(Path("specs/s.toml"), ["data.train=photos/train", 'data.validation="photos/val"',
                                            "data.labels=photos/labels.csv", "model.init_from=runs/base"])
    assert spec.data.train == tmp_path / "photos" / "train"
    assert spec.data.validation == tmp_path / "photos" / "val"
    assert spec.data.labels == tmp_path / "photos" / "labels.csv"
    assert spec.data.test == folder / "data" / "test.npz"  # written in the file: relative to the file
    assert spec.model.init_from == Path("runs/base")  # read from the current directory, wherever it is written
    whole = load_spec(Path("specs/s.toml"), ['data={ train = "x.npz", labels = "inferred" }'])
    assert whole.data.train == tmp_path / "x.npz" and whole.data.labels == "inferred"
    assert load_spec(Path("specs/s.toml"), [f"data.train={tmp_path / 'abs.npz'}"]).data.train == tmp_path / "abs.npz"


@pytest.mark.parametrize("name", ["__import__('os').system", "os.system", "dlcli.cli.main.main", "eval"])
def test_names_in_a_spec_are_only_registry_keys(name: str) -> None:
    for path, value in (("model.layers[0].type", name), ("train.loss", name), ("train.optimizer", name),
                        ("model.layers[2].activation", name)):
        doc = copy.deepcopy(BASE)
        _set(path, value)(doc)
        with pytest.raises(SpecError, match="unknown"):
            validate_spec(doc, Path("evil.toml"))
