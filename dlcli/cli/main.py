"""The dlcli command group and the one place that maps our errors to exit codes."""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import click

from dlcli import __version__
from dlcli.cli.distributed import abort_job, wait_for_leader_abort
from dlcli.errors import DistributedError, DivergedError, DlcliError, RunInterruptedError
from dlcli.train.launcher import launcher_rank, pin_threads, under_mpi_launcher


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
            rank = launcher_rank()
            interrupted = isinstance(err, RunInterruptedError)
            # these stop every rank at the same step with the same words: rank 0 alone says them
            agreed = isinstance(err, (RunInterruptedError, DistributedError, DivergedError))
            if rank == 0 or not agreed:
                report_error(f"rank {rank}: {err}" if rank else str(err), err.exit_code, ctx.obj.get("json", False))
            if interrupted and under_mpi_launcher():  # all ranks exit together; mpiexec passes 130/143 on
                ctx.exit(err.exit_code)
            if interrupted:  # checkpoint written: now die by the signal, as asked
                from dlcli.train.interrupts import die_by_signal

                sys.stdout.flush()
                die_by_signal(err.exit_code - 128)
            if rank and agreed:  # rank 0 says it and ends the job: an abort from here could beat its message
                wait_for_leader_abort()
            abort_job(err.exit_code)  # under MPI: this rank's failure ends every rank, not a hang
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            report_error("interrupted", 130, ctx.obj.get("json", False))
            ctx.exit(130)
        except BrokenPipeError:  # click would exit 1 on EPIPE; the reader just got what it wanted
            ctx.exit(_reader_left())


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
    """Tell the group that errors of this command go out as JSON, internal errors (exit 1) included."""
    context = click.get_current_context().ensure_object(dict)
    context["json"] = as_json
    if as_json and not context.get("debug"):
        sys.excepthook = _json_excepthook


def _json_excepthook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
    """An unexpected exception in --json mode: still exactly one JSON object, exit 1 (a bug: --debug shows it)."""
    message = f"internal error ({kind.__name__}: {error}); rerun with --debug for the traceback and report it"
    report_error(message, 1, True)
    abort_job(1)
    sys.stdout.flush()
    os._exit(1)


def main() -> None:
    """Console entry point."""
    pin_threads()  # before anything loads NumPy
    if under_mpi_launcher():
        sys.excepthook = _mpi_excepthook
    from dlcli.cli import commands  # noqa: F401 - registers the subcommands on `cli`

    cli(prog_name="dlcli")


def _mpi_excepthook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
    """An unexpected exception on one MPI rank: report it, then end the whole job instead of leaving it hung."""
    rank = launcher_rank()
    if "--debug" in sys.argv:
        traceback.print_exception(kind, error, tb)
    report_error(f"rank {rank}: internal error ({kind.__name__}: {error}); rerun with --debug for the traceback "
                 "and report it", 1, "--json" in sys.argv)
    abort_job(1)
    sys.stdout.flush()
    os._exit(1)


def _reader_left() -> int:
    """`dlcli ... | head`: the reader got what it wanted; point stdout at /dev/null so no final flush fails."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
