"""dlcli debug: look into what a run would read, in the spirit of spaCy's `debug data`."""

from __future__ import annotations

from pathlib import Path

import click

from dlcli.cli.inspect import validate_command


@click.group("debug")
def debug_command() -> None:
    """Look into what a run would read before training it."""


@debug_command.command("data")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec key, as in train.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (with the data report) instead.")
@click.pass_context
def debug_data_command(context: click.Context, spec_path: Path, overrides: tuple[str, ...], as_json: bool) -> None:
    """The data report of SPEC, exactly as `dlcli validate SPEC --data-report` prints it."""
    context.invoke(validate_command, spec_path=spec_path, overrides=overrides, data_report=True, as_json=as_json)
