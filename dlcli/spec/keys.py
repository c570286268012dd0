"""Each key of a spec model as a person reads it: TOML type, default, constraints, one-line doc.

The types and constraints are read from the model's JSON Schema (the one `dlcli schema` writes), so the
reference, `dlcli list KIND NAME` and editors say the same thing; defaults and docs come from the pydantic
fields. Used by docs/reference.md (spec/reference.py) and by the command line.

A spec document as key paths (flatten_keys, spec_changes) is here too: resume's check of what changed,
`dlcli compare` and the loggers' parameters name keys the same way.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from dlcli.spec.schema import editor_json_schema, registry_kinds, table_tags

REQUIRED = "required"
_TAGS = ("type", "schedule")  # the key that names a registered component


class KeyDoc(NamedTuple):
    """One key of a spec table."""

    key: str
    type: str
    default: str
    constraints: str
    doc: str


def describe_keys(model: type[BaseModel]) -> list[KeyDoc]:
    """Every key `model` takes, in the order its fields are declared."""
    schema = editor_json_schema(model)
    definitions = schema.get("definitions", {})
    rows = []
    for key, field in model.model_fields.items():
        prop = schema.get("properties", {}).get(key, {})
        doc = field.description or prop.get("description") or ""
        if not doc and key in _TAGS:
            doc = "The registered name that selects this component."
        default = REQUIRED if field.is_required() else toml_value(field.get_default(call_default_factory=True))
        rows.append(KeyDoc(key, type_text(prop, definitions), default, constraints_text(prop, definitions),
                           " ".join(doc.split())))
    return rows


def type_text(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    """A JSON Schema in TOML words: `integer`, `"valid" or "same"`, `list of integer`, `layer name`, `table`."""
    if "const" in schema:
        return toml_value(schema["const"])
    if "enum" in schema:
        return _names_of(schema["enum"]) or " or ".join(toml_value(v) for v in schema["enum"])
    branches = [b for b in schema.get("anyOf", schema.get("oneOf", [])) if b.get("type") != "null"]
    if branches and not all("$ref" in b for b in branches):
        texts = list(dict.fromkeys(type_text(b, definitions) for b in branches))
        return texts[0] if len(texts) == 1 else " or ".join(texts)
    if branches or "$ref" in schema:  # a table, or a union of tables told apart by their `type`
        kind = _kind_of(table_tags(schema, definitions))
        return f"{kind} table" if kind else "table"
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items", {})
        if isinstance(items, list):
            return "[" + ", ".join(type_text(item, definitions) for item in items) + "]"
        return f"list of {_grouped(type_text(items, definitions))}"
    if kind == "object":
        values = schema.get("additionalProperties")
        return f"table of {_grouped(type_text(values, definitions))}" if isinstance(values, dict) and values \
            else "table"
    if kind == "string" and schema.get("format") == "path":
        return "path"
    return {"integer": "integer", "number": "number", "boolean": "boolean", "string": "string"}.get(kind, "any")


def _grouped(text: str) -> str:
    return f"({text})" if " or " in text else text


def constraints_text(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    """The limits a JSON Schema sets on a value (`> 0`, `< 1`, `at most 100 characters`), joined by commas."""
    found: list[str] = []
    for branch in [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]:
        items = branch.get("items")
        for part in [branch, *(items if isinstance(items, list) else [items] if isinstance(items, dict) else [])]:
            found += _limits(part)
    return ", ".join(dict.fromkeys(found))


def _limits(schema: dict[str, Any]) -> list[str]:
    words = {"exclusiveMinimum": "> {}", "minimum": ">= {}", "exclusiveMaximum": "< {}", "maximum": "<= {}",
             "minLength": "at least {} characters", "maxLength": "at most {} characters",
             "minItems": "at least {} item(s)", "pattern": "matches {}"}
    out = []
    for key, template in words.items():
        if key in schema and not (key == "minItems" and schema.get("maxItems") == schema[key]):
            out.append(template.format(_number(schema[key]) if key != "pattern" else f"`{schema[key]}`"))
    return out


def _names_of(names: list[Any]) -> str | None:
    """`activation name` when `names` are exactly one registry's names (aliases included)."""
    for kind in registry_kinds():
        if sorted(names) == kind.names(include_aliases=True):
            return f"{kind.kind} name"
    return None


def _kind_of(tags: list[str]) -> str | None:
    """The kind of component (`layer`, `schedule`) whose registry holds every one of `tags`."""
    for kind in registry_kinds():
        if tags and set(tags) <= set(kind.names(include_aliases=True)):
            return kind.kind
    return None


def _number(value: Any) -> str:
    if isinstance(value, int) and abs(value) >= 2**31:
        return f"2^{int(math.log2(value))}" if value & (value - 1) == 0 else str(value)
    return toml_value(value)


def toml_value(value: Any) -> str:
    """A value as a spec writes it: `true`, `0.001`, `"relu"`, `[1, 1]`, `{ type = "rmsprop" }`; None as `none`."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))
    if isinstance(value, BaseModel):
        return "{}"  # a table left out: every key at its default
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def flatten_keys(value: Any, prefix: str = "") -> dict[str, Any]:
    """A spec document as key paths, as error messages and --set write them: {"train.optimizer.learning_rate":
    0.001, "model.layers[1].units": 64, ...}; a list of plain values stays one value."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten_keys(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and any(isinstance(v, dict) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten_keys(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def key_differences(documents: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """(key path, each document's value or None) for every key path whose value is not the same in all of
    `documents`. A list of tables emptied in one document is named by its entries' keys alone: `[]` against the
    entries' keys would add a line saying the list was unset before."""
    flat = [flatten_keys(document) for document in documents]
    keys = sorted({key for each in flat for key in each})
    out = []
    for key in keys:
        values = [each.get(key) for each in flat]
        emptied = all(value in (None, []) for value in values) and any(other.startswith(f"{key}[") for other in keys)
        if any(value != values[0] for value in values[1:]) and not emptied:
            out.append((key, values))
    return out


def spec_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, saved value, new value) for every key path whose value differs (resume's check)."""
    return [(key, old, new) for key, (old, new) in key_differences([saved, current])]
