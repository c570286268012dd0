"""docs/reference.md is generated from the registries and models; `dlcli list KIND NAME` prints the same keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dlcli import registry
from dlcli.cli import commands  # noqa: F401 - adds the subcommands to the group
from dlcli.cli.main import cli
from dlcli.spec.keys import describe_keys
from dlcli.spec.reference import REGENERATE, kind_title
from dlcli.spec.schema import registry_kinds, spec_json_schema, spec_model

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "reference.md"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def generated() -> str:
    code, out, err = _run("schema", "--markdown")
    assert code == 0, err
    return out


def test_the_committed_reference_is_current(generated: str) -> None:
    assert REGENERATE == "dlcli schema --markdown > docs/reference.md"
    assert REFERENCE.read_text() == generated, f"docs/reference.md is out of date: run `{REGENERATE}` and commit it"


def test_every_registered_component_has_a_section_with_each_of_its_keys(generated: str) -> None:
    kinds = [kind.kind for kind in registry_kinds()]
    assert kinds[:8] == ["layer", "activation", "initializer", "loss", "optimizer", "schedule", "metric", "callback"]
    assert "dataset" in kinds  # the command loads the data catalog too
    for kind in registry_kinds():
        part = generated.split(f"\n## {kind_title(kind)}\n", 1)[1].split("\n## ", 1)[0]
        sections = {chunk.split("\n", 1)[0]: chunk for chunk in part.split("\n### ")[1:]}
        for entry in kind:
            model = spec_model(entry)
            if model is None:  # names only: a row of the kind's table
                assert f"| `{entry.name}`" in part, (kind.kind, entry.name)
                continue
            assert entry.name in sections, (kind.kind, entry.name)
            for row in describe_keys(model):
                if row.key not in ("type", "schedule"):
                    assert f"| `{row.key}` | {row.type} |" in sections[entry.name], (entry.name, row.key)


def test_every_key_of_every_component_has_a_one_line_doc() -> None:
    undocumented = [f"{kind.kind} {entry.name}: {row.key}" for kind in registry_kinds() for entry in kind
                    if (model := spec_model(entry)) is not None for row in describe_keys(model) if not row.doc]
    assert undocumented == [], "add description= to these fields:\n" + "\n".join(undocumented)


def test_spec_tables_show_types_defaults_limits_and_docs(generated: str) -> None:
    assert ("| `batch_size` | integer | `32` | > 0 | Examples per step; with MPI the global batch, shared out "
            "among the ranks. |") in generated
    assert "| `optimizer` | optimizer name or optimizer table | `{ type = \"rmsprop\" }` |" in generated
    assert "| `validation_split` | number | `0.0` | >= 0.0, < 1.0 |" in generated
    assert "| `layers` | list of layer table | none |" in generated
    assert "| `kernel_size` | integer or [integer, integer] | required | > 0 | Window size: 3 or [3, 3]. |" in generated
    assert "| `learning_rate` | number or schedule table | `0.01` |" in generated  # sgd's own default
    assert "| `uniform`, `random_uniform` |" in generated  # an alias beside its name


def test_list_kind_name_prints_one_components_keys() -> None:
    code, out, _ = _run("list", "layers", "dense")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "dense: Fully connected layer: activation(x @ W + b) over the last axis."
    assert lines[1].split() == ["key", "type", "default", "constraints", "description"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == ["name", "trainable", "units", "activation", "use_bias", "kernel_initializer", "bias_initializer"]
    assert rows["units"].split(None, 4) == ["units", "integer", "required", ">", "0          Output width."]
    assert rows["activation"].split()[:4] == ["activation", "activation", "name", '"linear"']


def test_list_kind_name_resolves_aliases_and_options_free_components() -> None:
    code, out, _ = _run("list", "metrics", "acc")
    assert code == 0 and out.splitlines()[:2] == [
        f"accuracy: {registry.metrics.entry('accuracy').doc}", "(acc is another name for accuracy)"]
    code, out, _ = _run("list", "activations", "relu")
    assert code == 0 and out.splitlines() == ["relu: Rectified linear unit: max(x, 0).", "It takes no options."]


def test_list_takes_every_kind_the_reference_has_a_section_for() -> None:
    # reference.md says the same facts are in the terminal; `dlcli list readers` and `datasets` were refused
    for kind in registry_kinds():
        plural = next(name for name in dir(registry) if getattr(registry, name) is kind)  # registry.losses
        code, out, err = _run("list", plural)
        assert code == 0, (plural, err)
        assert out.splitlines()[0] == f"{plural}:" and len(out.splitlines()) == 1 + len(list(kind)), plural
    code, out, _ = _run("list", "datasets", "imdb")
    assert code == 0 and out.splitlines()[0] == f"imdb: {registry.datasets.entry('imdb').doc}"
    assert out.splitlines()[1] == ("Options in [data.options]: num_words, skip_top, maxlen, seed, start_char, "
                                   "oov_char, index_from, sequence_length")
    code, out, _ = _run("list", "readers", "csv")
    assert code == 0 and out.splitlines()[1:] == ["It takes no options."]


def test_list_kind_with_an_unknown_name_is_a_usage_error() -> None:
    code, _, err = _run("list", "layers", "dens")
    assert code == 2
    assert err.startswith("error: unknown layer 'dens' (did you mean dense?); known layers: activation, add")


def test_schema_command_prints_the_json_schema() -> None:
    code, out, _ = _run("schema")
    assert code == 0 and json.loads(out) == spec_json_schema() and out.endswith("}\n")
