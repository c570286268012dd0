"""dlcli schema: the spec's JSON Schema for editors, or (--markdown) the spec reference for people."""

from __future__ import annotations

import click


@click.command("schema")
@click.option("--markdown", is_flag=True, help="Print the spec reference (docs/reference.md) instead.")
def schema_command(markdown: bool) -> None:
    """Print the JSON Schema of spec files, for TOML editors: dlcli schema > dlcli-spec.schema.json.

    Put `#:schema ./dlcli-spec.schema.json` on a spec's first line and Taplo (Even Better TOML) completes
    keys and names, shows each key's doc and flags mistakes as you type.
    """
    fill_registries()
    if markdown:
        from dlcli.spec.reference import render_reference

        click.echo(render_reference(), nl=False)
    else:
        from dlcli.spec.schema import schema_text

        click.echo(schema_text(), nl=False)


def fill_registries() -> None:
    """Import everything that registers a component a spec can name, data readers and datasets included."""
    import dlcli.data.catalog  # noqa: F401 - registers the datasets
    import dlcli.data.readers  # noqa: F401 - registers the file readers (where they are registered)
    import dlcli.spec.models  # noqa: F401 - registers layers, losses, ..., callbacks
