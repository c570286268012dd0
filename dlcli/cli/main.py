"""The dlcli command group and the one place that maps our errors to exit codes."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import click

from dlcli import __version__
from dlcli.cli.distributed import abort_job, wait_for_leader_abort
from dlcli.cli.entry import INTERRUPTED, INTERRUPTED_EXIT_CODE, asks_for_json
from dlcli.errors import DlcliError, RunInterruptedError
from dlcli.output_text import json_line
from dlcli.train.environment import apply_environment
from dlcli.train.launcher import launcher_rank, pin_threads, under_mpi_launcher


def report_error(message: str, exit_code: int, as_json: bool) -> None:
    """An error as one paragraph on stderr, or as a JSON object (also sent to stdout's event stream)."""
    if as_json:
        record = json_line({"event": "error", "exit_code": exit_code, "message": message})
        try:
            click.echo(record)
        except OSError:  # stdout is gone (it may be why we are here): stderr still gets the record
            from dlcli.report.stream import point_at_devnull

            point_at_devnull(sys.stdout)  # so the interpreter's last flush of the record fails silently
        click.echo(record, err=True)
    else:
        click.echo(f"error: {message}", err=True)


class JsonUsageError(click.ClickException):
    """A usage error (bad option value, missing argument, unknown option) of a command run with --json.

    click shows it by calling `show()`: here that writes the same one JSON error event as any other error.
    """

    def __init__(self, error: click.UsageError) -> None:
        command = error.ctx.command_path if error.ctx is not None else "dlcli"
        message = error.format_message().strip()
        super().__init__(f"{message}{'' if message.endswith(('.', '?', '!')) else '.'} See '{command} --help'.")
        self.exit_code = error.exit_code

    def show(self, file: Any = None) -> None:
        """The error event on stdout and on stderr, as report_error writes it."""
        report_error(self.message, self.exit_code, True)


class CommandInterrupted(click.ClickException):
    """A Ctrl-C while click parses the command line or the group sets up the command: exit 130 with the one-line
    error, instead of click's "Aborted!" and exit 1 (a Ctrl-C in a command is a KeyboardInterrupt reported the same
    way; in training it stops at a checkpoint, see RunInterruptedError).

    click shows it by calling `show()`, then exits with `exit_code`.
    """

    exit_code = INTERRUPTED_EXIT_CODE

    def __init__(self, as_json: bool) -> None:
        super().__init__(INTERRUPTED)
        self.as_json = as_json

    def show(self, file: Any = None) -> None:
        """The error as report_error writes it."""
        report_error(self.message, self.exit_code, self.as_json)


@contextlib.contextmanager
def _usage_errors_as_json(as_json: bool) -> Iterator[None]:
    """click's usage errors as JSON events when --json was asked for (they may come before json_mode runs)."""
    try:
        yield
    except click.UsageError as err:
        if not as_json:
            raise
        raise JsonUsageError(err) from None


_ASKS_FOR_JSON = "dlcli.asks_for_json"


def _reports_json(ctx: click.Context) -> bool:
    """Whether errors go out as JSON: as the command's json_mode() said, else whether --json was given."""
    return bool(ctx.obj.get("json", ctx.meta.get(_ASKS_FOR_JSON, False)))


class DlcliGroup(click.Group):
    """The dlcli command group: runs a subcommand, turning our errors into a message and an exit code."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        """The group's context; a usage error in the group's own options is a JSON event under --json. The group's
        eager options (--help, --version) print here, before invoke guards stdout: a failed write of theirs
        (`dlcli --help > /dev/full`) is one line too, not a traceback."""
        as_json = asks_for_json(args)
        try:
            with _usage_errors_as_json(as_json):
                ctx = super().make_context(info_name, args, parent=parent, **extra)
        except KeyboardInterrupt:
            raise CommandInterrupted(as_json) from None
        except OSError as err:  # only click's echo writes here; dlcli.report (NumPy) is loaded on this path alone
            from dlcli.report.stream import point_at_devnull

            point_at_devnull(sys.stdout)  # so the interpreter's last flush of the help fails silently
            raise click.exceptions.Exit(_output_gone(err, as_json)) from None
        ctx.meta[_ASKS_FOR_JSON] = as_json
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand: its usage errors, our errors and a lost stdout become one message and an exit code.

        The command runs with stdout behind a strict GuardedStream, with NumPy's floating-point warnings
        off, and with a retired name in the spec noted in one line: see _guarded_stdout, _quiet_floating_point
        and _retired_names_as_notes. A Ctrl-C, in the command or while these are set up, is exit 130.
        """
        ctx.ensure_object(dict)
        try:
            with _usage_errors_as_json(ctx.meta.get(_ASKS_FOR_JSON, False)), _guarded_stdout(), \
                    _quiet_floating_point(), _retired_names_as_notes():
                return self._invoke_reporting_errors(ctx)
        except KeyboardInterrupt:
            raise CommandInterrupted(_reports_json(ctx)) from None

    def _invoke_reporting_errors(self, ctx: click.Context) -> Any:
        from dlcli.report.stream import OutputGoneError

        try:
            return super().invoke(ctx)
        except DlcliError as err:  # the user can fix this: a message, no traceback
            if ctx.obj.get("debug"):
                traceback.print_exc()
            rank = launcher_rank()
            if isinstance(err, RunInterruptedError):  # every rank stops at the same step: rank 0 alone says it
                if rank == 0:
                    report_error(str(err), err.exit_code, _reports_json(ctx))
                if under_mpi_launcher():  # all ranks exit together; mpiexec passes 130/143 on
                    ctx.exit(err.exit_code)
                from dlcli.train.interrupts import die_by_signal

                with contextlib.suppress(OSError):  # a stdout that is gone has nothing left to flush
                    sys.stdout.flush()
                die_by_signal(err.exit_code - 128)  # checkpoint written: now die by the signal, as asked
            if rank:  # most errors are every rank's (the same spec, data, checkpoint): rank 0 says them
                wait_for_leader_abort()  # and ends the job; back here only if this rank's error is its own
            report_error(f"rank {rank}: {err}" if rank else str(err), err.exit_code, _reports_json(ctx))
            abort_job(err.exit_code)  # under MPI: this rank's failure ends every rank, not a hang
            ctx.exit(err.exit_code)
        except OutputGoneError as err:  # stdout was this command's result, and it could not be written
            ctx.exit(_output_gone(err, _reports_json(ctx)))


def _output_gone(err: OSError, as_json: bool) -> int:
    """The exit code of a command whose result could not be written to stdout, reported: 0 for a reader that
    left (`dlcli list | head` got what it wanted), else 1 with one message."""
    if err.errno == errno.EPIPE:
        return 0
    report_error(f"cannot write the output: stdout is not writable ({err.strerror})", 1, as_json)
    return 1


@contextlib.contextmanager
def _guarded_stdout() -> Iterator[None]:
    """Run a command with sys.stdout behind a strict GuardedStream, put back afterwards.

    A failed write to stdout (EPIPE, ENOSPC, EIO, a closed descriptor) raises OutputGoneError once and
    then the stream goes quiet, so the interpreter's last flush prints no "Exception ignored". A command
    whose stdout is its result stops there (exit 0 for a reader that left, else 1 with one message);
    `train` writes through a reporter, whose own lenient guard turns the failure into one note on stderr
    and lets training finish its run directory (dlcli.report.stream).
    """
    from dlcli.report.stream import GuardedStream

    original = sys.stdout
    if isinstance(original, GuardedStream):
        yield
        return
    sys.stdout = GuardedStream(original, strict=True)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout = original


@contextlib.contextmanager
def _quiet_floating_point() -> Iterator[None]:
    """NumPy floating-point errors neither warn nor raise while a command runs.

    A diverging run overflows in matmul, exp and friends, in training, validation, the divergence
    diagnosis, metrics, eval and predict alike; what the user must hear about it is said once by our own
    checks (the non-finite loss check exits 5; non-finite metrics are reported as nan and inf). np.errstate
    here, around the whole command, is the one place that covers every one of those paths, and it stops
    NumPy from making warnings at all instead of filtering them afterwards; it is context-local, so a test
    or a library caller outside the command line keeps NumPy's defaults (dlcli runs no compute threads).
    """
    import numpy as np  # here, not at the top: `dlcli --help` loads no NumPy

    with np.errstate(all="ignore"):
        yield


@contextlib.contextmanager
def _retired_names_as_notes() -> Iterator[None]:
    """A retired name in the spec (registry.RetiredNameWarning) as one line on stderr, "warning: ...", instead of
    Python's report with a file, a line number and source code; every other warning shows as before."""
    from dlcli.registry import RetiredNameWarning

    shown = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *where: Any, **more: Any) -> None:
        if issubclass(category, RetiredNameWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            shown(message, category, *where, **more)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


@click.group(cls=DlcliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dlcli")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Train, evaluate and inspect deep-learning models described by TOML specs.

    Exit codes: 0 success, 1 internal error (or a failed result check of export or reproduce, or a result that
    could not be written to stdout), 2 usage or spec error, 3 data error, 4 checkpoint error, 5 training
    diverged, 130/143 interrupted, 128+n a --workers rank killed by signal n.
    """
    ctx.ensure_object(dict)["debug"] = debug
    if not debug and not under_mpi_launcher():  # under MPI, _mpi_excepthook says it and ends every rank
        sys.excepthook = functools.partial(_internal_error_excepthook, False)


def json_mode(as_json: bool) -> None:
    """Tell the group that errors of this command go out as JSON, internal errors (exit 1) included."""
    context = click.get_current_context().ensure_object(dict)
    context["json"] = as_json
    if as_json and not context.get("debug"):
        sys.excepthook = functools.partial(_internal_error_excepthook, True)


def internal_error_message(kind: type[BaseException], error: BaseException) -> str:
    """What an unexpected exception (a bug) tells the user instead of its traceback."""
    return f"internal error ({kind.__name__}: {error}); rerun with --debug for the traceback and report it"


def _internal_error_excepthook(as_json: bool, kind: type[BaseException], error: BaseException, tb: Any) -> None:
    """An unexpected exception, without --debug: one paragraph on stderr, or exactly one JSON object, and exit 1,
    as SPEC.md asks of every error (a bug: --debug shows its traceback). The command's own clean-up has run: the
    exception came out through it."""
    report_error(internal_error_message(kind, error), 1, as_json)
    abort_job(1)
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    os._exit(1)


def main() -> None:
    """The command line: the console entry point (dlcli.cli.entry.main) runs it, answering a Ctrl-C in its imports."""
    _open_missing_standard_descriptors()  # before anything opens a file
    try:
        apply_environment()  # before anything loads Numba
    except DlcliError as err:  # a variable dlcli cannot use: named, before any command runs
        report_error(str(err), err.exit_code, asks_for_json(sys.argv[1:]))
        sys.exit(err.exit_code)
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
    report_error(f"rank {rank}: {internal_error_message(kind, error)}", 1, "--json" in sys.argv)
    abort_job(1)
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    os._exit(1)


def _open_missing_standard_descriptors() -> None:
    """Point closed descriptors 0, 1, 2 (`dlcli train spec.toml >&-`) at /dev/null.

    Python makes sys.stdout None for a closed descriptor 1; but the next file the run opens would get
    descriptor 1, and anything that writes to it (a C library's message) would land in that checkpoint.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
