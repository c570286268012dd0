"""Property-based: any mutation of a shipped spec is either still valid or a clean exit 2 naming the key (or a
clean exit 3 when the spec now names data that does not fit its model, as train says)."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcli.cli.main import cli
from dlcli.cli import commands  # noqa: F401 - registers the subcommands
from tests.spec_data import init_from_checkpoint, spec_data_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted((REPO / "specs").glob("*.toml"))


def _load(spec: Path) -> dict[str, Any]:
    """A shipped spec as a document, its data files made absolute."""
    doc = tomllib.loads(spec.read_text())
    for key in ("train", "test", "validation"):
        if key in doc.get("data", {}):
            doc["data"][key] = str(spec_data_path(doc["data"][key]))
    if "init_from" in doc["model"]:  # validate reads the other run's checkpoint, as train does
        doc["model"]["init_from"] = str(init_from_checkpoint(doc["model"]["init_from"]))
    return doc
WRONG_VALUES = ["x", -3, 0, 10**12, -1.5, True, [1, "a"], {"nested": 1}, "frobnicate"]


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    """Every key path in a TOML document (tables, list items and values)."""
    found = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _leaves(value, (*path, i))
    return found


def _display(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _key(key: str) -> str:
    """A key as TOML writes it: bare, or quoted when it holds anything else ([tune.params]' key paths)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _dump(key)


def _dump(value: Any) -> str:
    """A small TOML writer, so mutated documents go back to text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\\\", "\\\\\\\\").replace('"', '\\\\"') + '"'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_dump(v) for v in value) + "]"
    return "{ " + ", ".join(f"{_key(k)} = {_dump(v)}" for k, v in value.items()) + " }"


def _to_toml(doc: dict[str, Any]) -> str:
    return "\n".join(f"{_key(key)} = {_dump(value)}" for key, value in doc.items()) + "\n"


def _run(tmp: Path, text: str) -> Any:
    path = tmp / "fuzzed.toml"
    path.write_text(text)
    return CliRunner().invoke(cli, ["validate", str(path)], catch_exceptions=True)


def _mutated(doc: dict[str, Any], path: tuple, kind: str, value: Any = None) -> dict[str, Any]:
    mutated = copy.deepcopy(doc)
    parent = mutated
    for part in path[:-1]:
        parent = parent[part]
    if kind == "delete":
        del parent[path[-1]]
    elif kind == "replace":
        parent[path[-1]] = value
    else:  # wrong nesting: the value moves one table down
        parent[path[-1]] = {"value": parent[path[-1]]}
    return mutated


def _check(result: Any, path: tuple | None) -> None:
    """Exit 0 (the mutation happened to be valid) or exit 2 with one paragraph naming the key, no traceback; or
    exit 3, one paragraph, when the mutated spec now names data that does not fit its model: a data error, as
    train gives it; or exit 4 naming model.init_from when it names no checkpoint (a mutated init_from, or a
    syntax mutation, whose text keeps the shipped spec's relative runs/ path)."""
    if result.exit_code == 4:
        assert path is None or path[:2] == ("model", "init_from"), (path, result.output)
        assert result.output.startswith("error: model.init_from: "), result.output
    assert result.exit_code in (0, 2, 3, 4), (path, result.exit_code, result.output, result.exception)
    if result.exit_code in (2, 3):
        output = result.output
        assert output.startswith("error: ") and "Traceback" not in output, output
        message = output.removeprefix("error: ")
        assert message.count("\n") <= 1 + message.count("\n  "), output  # one paragraph, or a problem list
        if result.exit_code == 2 and path is not None and "invalid TOML" not in message:
            prefixes = [_display(path[:n]) for n in range(1, len(path) + 1)]
            assert any(p in message for p in prefixes), (path, message)


@st.composite
def mutations(draw: Any) -> tuple[str, dict[str, Any] | None, tuple | None, str]:
    spec = draw(st.sampled_from(SPECS))
    doc = _load(spec)
    kind = draw(st.sampled_from(["delete", "replace", "wrap", "syntax"]))
    if kind == "syntax":
        text = spec.read_text()
        at = draw(st.integers(0, len(text) - 1))
        broken = text[:at] + draw(st.sampled_from(["[", "]", '"', "= =", "\n[[", "{"])) + text[at:]
        return kind, None, None, broken
    path = draw(st.sampled_from(_leaves(doc)))
    mutated = _mutated(doc, path, kind, draw(st.sampled_from(WRONG_VALUES)) if kind == "replace" else None)
    return kind, mutated, path, _to_toml(mutated)


def test_every_shipped_spec_validates(tmp_path: Path) -> None:
    for spec in SPECS:
        result = _run(tmp_path, _to_toml(_load(spec)))
        assert result.exit_code == 0, (spec.name, result.output)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(mutation=mutations())
def test_a_mutated_spec_is_valid_or_a_clean_exit_2(mutation: tuple, tmp_path_factory: Any) -> None:
    kind, _, path, text = mutation
    _check(_run(tmp_path_factory.mktemp("fuzz"), text), path)


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_single_mutation_of_every_key_is_valid_or_a_clean_exit_2(spec: Path, tmp_path: Path) -> None:
    """The whole space the hypothesis test samples from, except broken syntax: each key deleted, moved one
    table down, or replaced by each wrong value (about 5,000 cases in all, a few seconds)."""
    doc = _load(spec)
    for path in _leaves(doc):
        for kind, value in [("delete", None), ("wrap", None)] + [("replace", v) for v in WRONG_VALUES]:
            _check(_run(tmp_path, _to_toml(_mutated(doc, path, kind, value))), path)
