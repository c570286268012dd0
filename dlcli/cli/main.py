"""The dlcli command group and the one place that maps our errors to exit codes."""

from __future__ import annotations

from typing import Any

import click

from dlcli import __version__
from dlcli.errors import DlcliError


class DlcliGroup(click.Group):
    """The dlcli command group: runs a subcommand, turning our errors into a message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DlcliError as err:  # the user can fix this: a message, no traceback
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)


@click.group(cls=DlcliGroup)
@click.version_option(__version__, prog_name="dlcli")
def cli() -> None:
    """Train, evaluate and inspect deep-learning models described by TOML specs."""


KINDS = ("layers", "activations", "initializers", "losses", "optimizers", "schedules", "metrics")


@cli.command("list")
@click.argument("kind", type=click.Choice(KINDS), required=False)
def list_command(kind: str | None) -> None:
    """List registered names with their one-line docs (all kinds, or one)."""
    from dlcli import registry
    from dlcli.components import load_all

    load_all()
    for name in (kind,) if kind else KINDS:
        reg = getattr(registry, name)
        click.echo(f"{name}:")
        for entry in sorted(reg, key=lambda e: e.name):
            click.echo(f"  {entry.name:<36} {entry.doc}")


def main() -> None:
    """Console entry point."""
    cli(prog_name="dlcli")
