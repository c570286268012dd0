"""The dlcli command group and the one place that maps our errors to exit codes."""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

import click

from dlcli import __version__
from dlcli.errors import DlcliError


def report_error(message: str, exit_code: int, as_json: bool) -> None:
    """An error as one paragraph on stderr, or as a JSON object (also sent to stdout's event stream)."""
    if as_json:
        record = json.dumps({"event": "error", "exit_code": exit_code, "message": message})
        click.echo(record)
        click.echo(record, err=True)
    else:
        click.echo(f"error: {message}", err=True)


class DlcliGroup(click.Group):
    """The dlcli command group: runs a subcommand, turning our errors into a message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        ctx.ensure_object(dict)
        try:
            return super().invoke(ctx)
        except DlcliError as err:  # the user can fix this: a message, no traceback
            if ctx.obj.get("debug"):
                traceback.print_exc()
            report_error(str(err), err.exit_code, ctx.obj.get("json", False))
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            report_error("interrupted", 130, ctx.obj.get("json", False))
            ctx.exit(130)


@click.group(cls=DlcliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dlcli")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Train, evaluate and inspect deep-learning models described by TOML specs.

    Exit codes: 0 success, 1 internal error, 2 usage or spec error, 3 data error, 4 checkpoint error,
    5 training diverged, 130/143 interrupted.
    """
    ctx.ensure_object(dict)["debug"] = debug


def json_mode(as_json: bool) -> None:
    """Tell the group that errors of this command go out as JSON."""
    click.get_current_context().ensure_object(dict)["json"] = as_json


def main() -> None:
    """Console entry point."""
    from dlcli.cli import commands  # noqa: F401 - registers the subcommands on `cli`

    try:
        cli(prog_name="dlcli")
    except BrokenPipeError:  # `dlcli ... | head`: the reader left; that is not our error
        sys.exit(0)
