"""The JSON Schema for editors: the shipped specs pass it, mistakes fail it, and the committed copy is current."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dlcli.spec.schema import DRAFT, SCHEMA_FILE, schema_text, spec_json_schema

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted((REPO / "specs").glob("*.toml"))
SCHEMA = spec_json_schema()
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)  # the draft Taplo's validator reads


def _spec(name: str) -> dict[str, Any]:
    """A shipped spec as an editor's TOML plugin hands it to the schema: the document tomllib reads."""
    return tomllib.loads((REPO / "specs" / name).read_text())


def _problems(document: dict[str, Any]) -> list[tuple[list[Any], str]]:
    """(path, message) of every schema error, in a stable order."""
    errors = VALIDATOR.iter_errors(document)
    return sorted(((list(e.absolute_path), e.message) for e in errors), key=str)


def test_the_schema_is_a_valid_draft_7_schema_without_newer_keywords() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == DRAFT == "http://json-schema.org/draft-07/schema#"
    text = json.dumps(SCHEMA)
    # Taplo validates with draft 7: a 2020-12 keyword there would be silently ignored
    for newer in ('"$defs"', '"prefixItems"', '"discriminator"', "#/$defs/"):
        assert newer not in text, newer
    assert SCHEMA["additionalProperties"] is False and set(SCHEMA["required"]) == {"name", "data", "model"}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_shipped_spec_validates_against_the_schema(path: Path) -> None:
    assert _problems(tomllib.loads(path.read_text())) == []


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_shipped_spec_names_the_schema_file_beside_it(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    # Taplo's header directive: first in the file (only comments may precede it), a path relative to the file
    assert first == f"#:schema ./{SCHEMA_FILE}"
    assert (path.parent / SCHEMA_FILE).is_file()


def test_the_committed_schema_file_is_current() -> None:
    committed = (REPO / "specs" / SCHEMA_FILE).read_text()
    assert committed == schema_text(), (f"specs/{SCHEMA_FILE} is out of date: run "
                                        f"`dlcli schema > specs/{SCHEMA_FILE}` and commit it")


def test_a_misspelt_key_fails_where_it_is() -> None:
    document = _spec("digits_mlp.toml")
    document["train"]["epoch"] = document["train"].pop("epochs", 5)
    layer = document["model"]["layers"][1]
    layer["unit"] = layer.pop("units")
    problems = _problems(document)
    assert (["train"], "Additional properties are not allowed ('epoch' was unexpected)") in problems
    assert [path for path, _ in problems] == [["model", "layers"], ["train"]]
    # the layers' error is that no layer table fits; among the reasons, the dense table names the misspelt key
    reasons = _reasons(next(e for e in VALIDATOR.iter_errors(document) if list(e.absolute_path)[:1] == ["model"]))
    assert (["model", "layers", 1], "Additional properties are not allowed ('unit' was unexpected)") in reasons
    assert (["model", "layers", 1], "'units' is a required property") in reasons


def _reasons(error: jsonschema.ValidationError) -> list[tuple[list[Any], str]]:
    """The error and every error under it (the branches of an anyOf or oneOf that failed)."""
    found = [(list(error.absolute_path), error.message)]
    for sub in error.context or []:
        found += _reasons(sub)
    return found


@pytest.mark.parametrize(("where", "value"), [
    (("model", "layers", 1, "activation"), "relux"),  # not a registered activation
    (("model", "layers", 1, "units"), 0),  # units > 0
    (("model", "layers", 1, "units"), True),  # a boolean is no number (as the spec loader says)
    (("train", "optimizer"), "adamm"),
    (("train", "optimizer"), {"type": "adam", "beta_1": 1.0}),  # beta_1 < 1
    (("train", "loss"), "mean_squared_erorr"),
    (("train", "metrics"), ["acuracy"]),
    (("data", "validation_split"), 1.0),
    (("name",), "my run"),  # a run name is a folder name
])
def test_values_dlcli_rejects_fail_the_schema(where: tuple[Any, ...], value: Any) -> None:
    document = _set(_spec("digits_mlp.toml"), where, value)
    assert _problems(document) != []


@pytest.mark.parametrize(("where", "value"), [
    (("train", "optimizer"), "adam"),  # a name alone is short for { type = "adam" }
    (("train", "optimizer"), {"type": "sgd", "learning_rate": {"schedule": "cosine_decay", "initial": 0.1,
                                                               "decay_steps": 100}}),
    (("train", "loss"), "mse"),  # an alias
    (("train", "loss"), {"type": "sparse_categorical_crossentropy", "from_logits": True}),
    (("train", "metrics"), ["acc", {"type": "sparse_top_k_categorical_accuracy", "k": 3}]),
    (("train", "callbacks"), ["early_stopping", {"type": "reduce_lr_on_plateau", "factor": 0.5}]),
    (("model", "layers", 1), {"type": "dense", "units": 4, "activation": "relu", "kernel_initializer": "he_normal"}),
])
def test_what_dlcli_accepts_passes_the_schema(where: tuple[Any, ...], value: Any) -> None:
    assert _problems(_set(_spec("digits_mlp.toml"), where, value)) == []


def test_convolution_sizes_pass_as_a_number_or_a_list() -> None:
    document = _spec("mnist_convnet.toml")
    conv = next(i for i, layer in enumerate(document["model"]["layers"]) if layer["type"] == "conv2d")
    for size, problems in ((3, 0), ([3, 3], 0), ([3, 3, 3], 1), (0, 1), ([3], 1)):
        found = _problems(_set(document, ("model", "layers", conv, "kernel_size"), size))
        assert len(found) == problems, (size, found)


def test_shorthands_list_the_registered_names() -> None:
    train = SCHEMA["definitions"]["TrainSpec"]["properties"]
    optimizer_names = next(b for b in train["optimizer"]["anyOf"] if b.get("type") == "string")["enum"]
    assert optimizer_names == ["sgd", "rmsprop", "adagrad", "adam", "adamw"]
    loss_names = next(b for b in train["loss"]["anyOf"] if b.get("type") == "string")["enum"]
    assert {"mse", "mae", "ctc", "binary_crossentropy"} <= set(loss_names)
    dense = SCHEMA["definitions"]["DenseSpec"]
    assert dense["description"].startswith("dense: Fully connected layer")  # the registry's one-line doc
    assert dense["properties"]["units"]["description"] == "Output width."


def _set(document: dict[str, Any], where: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A copy of `document` with the key at `where` set to `value`."""
    changed = copy.deepcopy(document)
    node: Any = changed
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = value
    return changed
