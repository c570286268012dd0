"""The user documentation (README.md, docs/): its spec examples are valid, its links lead somewhere, and it stands on
its own (a user who clones or installs dlcli has no ../shared/SPEC.md)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import click
import jsonschema
import numpy as np
import pytest

from dlcli.graph import build_model
from dlcli.spec.load import validate_spec
from dlcli.spec.schema import spec_json_schema

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SCHEMA = spec_json_schema()


def _toml_blocks(page: Path) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", page.read_text(), re.S)


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_documentation_pages_exist() -> None:
    assert {p.name for p in PAGES} >= {"README.md", "guide.md", "spec.md", "cli.md", "reference.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_toml_example_is_valid(page: Path) -> None:
    for block in _toml_blocks(page):
        document = tomllib.loads(block)
        if {"name", "data", "model"} <= set(document) and document["model"]:  # a whole spec: dlcli loads and builds it, and the editors' schema accepts it
            spec = validate_spec(document, REPO / "docs" / "example.toml")
            build_model(spec.model, np.random.default_rng(0), spec)
            jsonschema.validate(document, SCHEMA, cls=jsonschema.Draft7Validator)
            continue
        for table, value in document.items():  # an outline or a fragment: what it shows are real keys and values
            assert table in SCHEMA["properties"], (page.name, table)
            subschema = {**SCHEMA["properties"][table], "definitions": SCHEMA["definitions"]}
            jsonschema.validate(value, subschema, cls=jsonschema.Draft7Validator)


def test_the_examples_include_a_sequential_and_a_graph_spec() -> None:
    whole = [tomllib.loads(b) for p in PAGES for b in _toml_blocks(p) if "name" in tomllib.loads(b)
             and tomllib.loads(b).get("model")]
    assert any("layers" in d["model"] for d in whole) and any("nodes" in d["model"] for d in whole)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_lead_to_files_and_headings(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.is_file(), (page.name, target)
        if anchor:
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.M)
            assert anchor in {_slug(h) for h in headings}, (page.name, target)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_user_documentation_does_not_send_users_to_the_teams_contract(page: Path) -> None:
    text = page.read_text()
    assert "SPEC.md" not in text  # the contract lives beside the checkout, not in what users get
    # nor to the team's folders beside it (the shared dataset mirror and style guide, the main checkout)
    assert "../shared" not in text and "../main" not in text


def test_every_command_is_documented_in_cli_md() -> None:
    from dlcli.cli import commands  # noqa: F401 - adds the subcommands to the group
    from dlcli.cli.main import cli

    page = (REPO / "docs" / "cli.md").read_text()
    assert set(cli.commands) >= {"datasets", "eval", "list", "predict", "schema", "summary", "train", "validate"}
    for name, command in cli.commands.items():
        assert f"\ndlcli {name} " in page, f"docs/cli.md does not show `dlcli {name}`"
        for option in (p for p in command.params if isinstance(p, click.Option)):
            assert any(flag in page for flag in option.opts if flag != "-h"), f"dlcli {name} {option.opts[0]}"
    assert "dlcli --version" in page and "dlcli --debug" in page


def test_the_synopsis_of_cli_md_shows_every_option_of_each_command() -> None:
    # an option found elsewhere on the page was enough: predict's --checkpoint and --batch-size (eval's are there),
    # lr-find's --set and tune's --quiet were in no synopsis
    from dlcli.cli import commands  # noqa: F401 - adds the subcommands to the group
    from dlcli.cli.main import cli

    synopsis = re.search(r"```\n(dlcli train .*?)```", (REPO / "docs" / "cli.md").read_text(), re.S)[1]
    entries: dict[str, str] = {}
    for line in synopsis.splitlines():  # an entry: its `dlcli NAME` line and the indented lines after it
        name = line.split()[1] if line.startswith("dlcli ") else name
        entries[name] = entries.get(name, "") + line.split("  #")[0] + "\n"
    for name, command in cli.commands.items():
        options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
        for sub in getattr(command, "commands", {}).values():  # dlcli debug data
            options += [p for p in sub.params if isinstance(p, click.Option) and not p.hidden]
        missing = [o.opts[0] for o in options if not any(f"{flag} " in entries[name] or f"{flag}]" in entries[name]
                                                          for flag in o.opts if flag != "-h")]
        assert missing == [], f"docs/cli.md's synopsis of dlcli {name} lacks {missing}"
