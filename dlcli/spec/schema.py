"""The spec's JSON Schema, for TOML editors (Taplo, Even Better TOML): completion, hover docs, inline checks.

Written from the pydantic models (`dlcli schema`), so it names every key the registries add. It is a
draft-07 schema because that is the newest draft Taplo's validator reads; pydantic writes 2020-12, so the
definitions move from `$defs` to `definitions` and tuples from `prefixItems` to `items`. The schema checks
what a single key can say (names, types, ranges, unknown keys); checks across keys (exactly one data source,
a graph's wiring, shapes) stay with `dlcli validate`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from dlcli import registry
from dlcli.spec.models import RunSpec

DRAFT = "http://json-schema.org/draft-07/schema#"
SCHEMA_FILE = "dlcli-spec.schema.json"  # the name the shipped specs' `#:schema` header points at
_SHORTHAND = "x-dlcli-name-shorthand"  # marks a string branch whose names are filled in once refs resolve
_PROBE = "name"


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file (the document that tomllib reads from it)."""
    schema = editor_json_schema(RunSpec)
    return {"$schema": DRAFT, "title": "dlcli spec", **{k: v for k, v in schema.items() if k != "title"}}


def editor_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The draft-07 JSON Schema of one spec model (a whole spec, or one component's options)."""
    schema = model.model_json_schema(ref_template="#/definitions/{model}", schema_generator=_EditorSchema)
    definitions = schema.pop("$defs", {})
    if definitions:
        schema["definitions"] = definitions
    return _draft7(_fill_shorthands(schema, definitions))


def schema_text() -> str:
    """spec_json_schema() as the file `dlcli schema` writes: stable key order, one trailing newline."""
    return json.dumps(spec_json_schema(), indent=2, ensure_ascii=False) + "\n"


class _EditorSchema(GenerateJsonSchema):
    """pydantic's generator, plus what a spec accepts beyond its models' fields: a name for { type = NAME }."""

    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema) -> JsonSchemaValue:
        """A validator that turns `"adam"` into `{ type = "adam" }` also accepts the bare name."""
        inner = super().function_before_schema(schema)
        if not _expands_a_name(schema):
            return inner
        return {"anyOf": [{"type": "string", _SHORTHAND: True, "description": "A name alone is short for "
                           "{ type = NAME } with every option at its default."}, inner]}

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        """A registered component's model is described by its one-line doc, as `dlcli list` shows it."""
        json_schema = super().model_schema(schema)
        doc = registered_doc(schema["cls"])
        if doc is not None:
            json_schema["description"] = doc
        return json_schema


def registered_doc(model: type) -> str | None:
    """'NAME: one-line doc' of the registry entry whose spec model is `model` (or a base of it) and whose name
    is the model's tag (`type`, or `schedule`); None for a model no registry names."""
    tag = next((field.default for key, field in model.model_fields.items() if key in ("type", "schedule")
                and isinstance(field.default, str)), None)  # type: ignore[attr-defined]
    if tag is None:
        return None
    for kind in registry_kinds():
        entry = next((e for e in kind if e.name == tag), None)
        spec = spec_model(entry) if entry is not None else None
        if spec is not None and issubclass(model, spec):
            return f"{entry.name}: {entry.doc}"  # type: ignore[union-attr]
    return None


def registry_kinds() -> list[registry.Registry]:
    """Every registry of components a spec can name, those that exist in this version (readers may not)."""
    names = ("layers", "activations", "initializers", "losses", "optimizers", "schedules", "metrics", "callbacks",
             "loggers", "readers", "datasets")
    return [getattr(registry, name) for name in names if isinstance(getattr(registry, name, None), registry.Registry)]


def spec_model(entry: registry.Entry) -> type | None:
    """The pydantic model of an entry's options: its `spec`, or the registered class itself when that is one."""
    for candidate in (entry.spec, entry.target):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _expands_a_name(schema: core_schema.BeforeValidatorFunctionSchema) -> bool:
    """Whether the validator turns a registered name into `{type = NAME}` (called with one: validators are
    pure); a validator that only sharpens messages (bidirectional's) passes the name on unchanged."""
    inner = schema["schema"]
    names = list(inner["choices"]) if inner.get("type") == "tagged-union" else [_PROBE]
    function = schema["function"]["function"]
    try:
        expanded = function(names[0]) if schema["function"]["type"] == "no-info" else None
    except ValueError:
        return False
    return expanded == {"type": names[0]}


def _fill_shorthands(node: Any, definitions: dict[str, Any]) -> Any:
    """Give each name shorthand the names its table accepts: the union's tags, or its `type` key's names."""
    if isinstance(node, list):
        return [_fill_shorthands(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _fill_shorthands(value, definitions) for key, value in node.items()}
    branches = node.get("anyOf", [])  # [shorthand, table], or with a null branch when the key is optional
    for shorthand in [b for b in branches if isinstance(b, dict) and b.pop(_SHORTHAND, False)]:
        names = [name for b in branches if b is not shorthand for name in table_tags(b, definitions)]
        if names:
            shorthand["enum"] = names
    return node


def table_tags(table: dict[str, Any], definitions: dict[str, Any]) -> list[str]:
    """The names a table schema accepts as its `type` (or `schedule`): each union member's constant, or the
    key's enum; [] for a table that names no component."""
    if "$ref" in table:
        table = definitions[table["$ref"].rsplit("/", 1)[-1]]
    members = table.get("oneOf") or table.get("anyOf")
    if members:
        return [name for member in members for name in table_tags(member, definitions)]
    properties = table.get("properties", {})
    tag = properties.get("type", properties.get("schedule", {}))
    return [tag["const"]] if "const" in tag else list(tag.get("enum", []))


def _draft7(node: Any) -> Any:
    """pydantic's 2020-12 keywords as draft 7 says them; the OpenAPI `discriminator` hint dropped."""
    if isinstance(node, list):
        return [_draft7(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "discriminator":
            continue  # not JSON Schema: oneOf with a `const` per member already says it
        if key == "$ref" and isinstance(value, str):
            value = value.replace("#/$defs/", "#/definitions/")
        out["items" if key == "prefixItems" else key] = _draft7(value)
    return out
