"""docs/reference.md: every key of a spec file and of every registered component, written from the code.

`dlcli schema --markdown > docs/reference.md` writes it; tests/spec/test_reference.py fails when the file in
the repository differs, so a new layer, loss or option reaches the documentation without anyone editing it.
Only the registries and the pydantic models are read, never a list of particular classes: whatever is
registered when the command runs (readers and datasets included, when the command line has loaded them)
is documented.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dlcli import registry
from dlcli.spec.keys import KeyDoc, describe_keys
from dlcli.spec.models import (NODE_SPECS, DataSpec, InputSpec, ModelSpec, OutputSpec, RunSpec, TimeseriesSpec,
                               TrainSpec)
from dlcli.spec.schema import registry_kinds, spec_model
from dlcli.spec.search_space import TuneSpec

REGENERATE = "dlcli schema --markdown > docs/reference.md"
_TAGS = ("type", "schedule")
_TITLES = {"layer": "Layers", "activation": "Activations", "initializer": "Initializers", "loss": "Losses",
           "optimizer": "Optimizers", "schedule": "Learning-rate schedules", "metric": "Metrics",
           "callback": "Callbacks", "logger": "Loggers", "reader": "Readers", "dataset": "Datasets"}
_WHERE = {"layer": "`[[model.layers]]` or `[model.nodes.NAME]`", "activation": "`activation = \"NAME\"`",
          "initializer": "`kernel_initializer = \"NAME\"` and the other `*_initializer` keys",
          "loss": '`loss = "NAME"` or `loss = { type = "NAME", ... }`',
          "optimizer": '`optimizer = "NAME"` or `optimizer = { type = "NAME", ... }`',
          "schedule": '`learning_rate = { schedule = "NAME", ... }`',
          "metric": '`metrics = ["NAME", { type = "NAME", ... }]`', "callback": "`[[train.callbacks]]`",
          "logger": '`[train] loggers = ["NAME", { type = "NAME", ... }]`',
          "dataset": '`[data] dataset = "NAME"`; options in `[data.options]`'}
_SPEC_TABLES: list[tuple[str, type[BaseModel], str]] = [
    ("Top level", RunSpec, "The keys outside any table."),
    ("[data]", DataSpec, "Where the examples come from: a registry dataset, or your own files."),
    ("[data.timeseries]", TimeseriesSpec, "Windows over the rows of a time-ordered table (`data.train`, a .csv or "
                                          ".parquet file), with Keras' `timeseries_dataset_from_array` options; "
                                          "the training, validation and test ranges are consecutive rows."),
    ("[model]", ModelSpec, "A sequential stack (`input` + `layers`) or a graph (`inputs` + `nodes` + `outputs`)."),
    ("model.input, model.inputs.NAME", InputSpec, "One model input: the shape of one example, without the "
                                                  "batch axis."),
    ("model.outputs.NAME", OutputSpec, "One output of a graph model: the node of that name, its loss and "
                                       "metrics. The training loss is the weighted sum of the outputs' losses."),
    ("[train]", TrainSpec, "How to train: loss and metrics (sequential models), optimizer, epochs, callbacks, "
                           "loggers."),
    ("[tune]", TuneSpec, "What `dlcli tune` searches, and how (its options win over these keys); `dlcli train` "
                         "ignores it. See [the command line](cli.md#tuning)."),
]


def render_reference() -> str:
    """The whole reference as Markdown, ending with one newline."""
    lines = ["# Spec reference", "",
             f"Generated from dlcli's registries and spec models by `{REGENERATE}`; do not edit it by hand.",
             "The same facts are in the terminal (`dlcli list layers dense`) and in your editor "
             "(`dlcli schema`, see [the guide](guide.md#editor-support)). A type such as `layer table` is a "
             "TOML table whose `type` names a layer; `activation name` is a string naming an activation.", ""]
    lines += ["## Spec file", ""]
    for title, model, text in _SPEC_TABLES:
        lines += [f"### {title}", "", text, "", *_key_table(describe_keys(model)), ""]
    lines += ["### Graph nodes", "", "A node in `[model.nodes.NAME]` is a layer table with one of these keys "
              "besides the layer's own; the node's name is its `NAME`.", "", *_key_table(_node_keys()), ""]
    for kind in registry_kinds():
        lines += _kind_section(kind)
    return "\n".join(lines).rstrip("\n") + "\n"


def _kind_section(kind: registry.Registry) -> list[str]:
    entries = sorted(kind, key=lambda e: e.name)
    if not entries:
        return []
    lines = [f"## {kind_title(kind)}", ""]
    if kind.kind in _WHERE:
        lines += [f"Named in {_WHERE[kind.kind]}.", ""]
    if all(spec_model(e) is None for e in entries):  # names only: one table for all of them
        options = [_options_of(e) for e in entries]
        extra = any(options)
        lines += ["| name | description |" + (" options |" if extra else ""),
                  "|---|---|" + ("---|" if extra else "")]
        lines += [f"| `{e.name}`{_aliases(kind, e)} | {_cell(e.doc)} |" + (f" {_cell(o)} |" if extra else "")
                  for e, o in zip(entries, options)]
        return [*lines, ""]
    for entry in entries:
        lines += [f"### {entry.name}", "", _cell(entry.doc) + _aliases_sentence(kind, entry), ""]
        model = spec_model(entry)
        rows = [row for row in describe_keys(model) if row.key not in _TAGS] if model is not None else []
        lines += [*_key_table(rows), ""] if rows else ["No options.", ""]
    return lines


def kind_title(kind: registry.Registry) -> str:
    """The heading of a kind's section: "Layers", "Learning-rate schedules"."""
    return _TITLES.get(kind.kind, kind.kind.capitalize() + "s")


def _node_keys() -> list[KeyDoc]:
    """The keys a graph node adds to its layer's (input, inputs)."""
    layer_spec, node_spec = next(iter(NODE_SPECS.items()))
    return [row for row in describe_keys(node_spec) if row.key not in layer_spec.model_fields]


def _options_of(entry: registry.Entry) -> str:
    return ", ".join(f"`{name}`" for name in declared_options(entry)) or "none"


def declared_options(entry: registry.Entry) -> tuple[str, ...]:
    """The option names a component without a spec model declares (a dataset's [data.options] keys)."""
    return tuple(getattr(getattr(entry.target, "info", None), "options", ()))


def _aliases(kind: registry.Registry, entry: registry.Entry) -> str:
    names = [n for n in kind.names(include_aliases=True) if kind.entry(n).alias_of == entry.name]
    return "".join(f", `{n}`" for n in names)


def _aliases_sentence(kind: registry.Registry, entry: registry.Entry) -> str:
    names = [n for n in kind.names(include_aliases=True) if kind.entry(n).alias_of == entry.name]
    return f" Also named {', '.join(f'`{n}`' for n in names)}." if names else ""


def _key_table(rows: list[KeyDoc]) -> list[str]:
    lines = ["| key | type | default | constraints | description |", "|---|---|---|---|---|"]
    return lines + [f"| `{r.key}` | {_cell(r.type)} | {_code(r.default)} | {_cell(r.constraints)} | {_cell(r.doc)} |"
                    for r in rows]


def _code(value: str) -> str:
    return value if value in ("required", "none") else f"`{value}`"


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")
